"""`python -m knowfree <command> ...`: one argparse tree, each command's arguments filled in
by the `add_arguments(parser)` of its stage's module and carried out by its `run(args)`."""
import argparse
import importlib
import sys

from knowfree.errors import KnowfreeError

COMMANDS = {
    "data": ("knowfree.data.cli", "dataset statistics and format conversion"),
    "init": ("knowfree.data.project", "your own labelled data as a local dataset, with train/augment/params files"),
    "eval": ("knowfree.metrics", "span-level P/R/F1 of a prediction file against gold"),
    "train": ("knowfree.train", "train a model from a YAML config"),
    "cv": ("knowfree.crossval", "without a dev set: choose the epochs by k-fold cross-validation, then train on all"),
    "config": ("knowfree.config", "the trainer's config keys: `config show` (defaults), `config check FILE`"),
    "sweep": ("knowfree.sweep", "run many trainings of one config in parallel (seeds, heads, K)"),
    "predict": ("knowfree.predict", "predict spans for raw text with a trained run"),
    "export": ("knowfree.export", "export a trained run as a standalone folder (hf or onnx)"),
    "augment": ("knowfree.knowledge.pipeline", "build fusion / syn_fusion sets with LLM or tagger knowledge"),
    "llm": ("knowfree.knowledge.server", "assemble the offline GGUF model and run a local llama.cpp server"),
    "encoder": ("knowfree.encoder", "build and verify the offline encoders"),
    "reproduce": ("knowfree.reproduce", "run the numbered notebooks with papermill under a params file"),
}


class CommandParser(argparse.ArgumentParser):
    """The parser of one command (and of its own subcommands).

    A command's module is imported, and its `add_arguments` fills this parser, only when the
    command is parsed or its help shown: several modules import torch at their top, and
    `python -m knowfree --help` or `python -m knowfree eval ...` should not wait for it."""

    def __init__(self, *args, module: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._module = module  # None once filled, and for a subcommand's parser
        self._default_subcommand = None

    def fill(self) -> None:
        if self._module is not None:
            module, self._module = self._module, None
            importlib.import_module(module).add_arguments(self)

    def set_default_subcommand(self, name: str) -> None:
        """`augment CONFIG` beside `augment pack RUN_DIR`: argparse cannot put a positional
        argument and subcommands in one place, so a first argument that names no subcommand
        (and asks no help) is read as the start of subcommand `name`'s arguments."""
        self._default_subcommand = name

    def parse_known_args(self, args=None, namespace=None):
        self.fill()
        args = list(sys.argv[1:] if args is None else args)
        if self._default_subcommand is not None:
            names = next(a.choices for a in self._actions if a.nargs == argparse.PARSER)
            if not args or args[0] not in names and args[0] not in ("-h", "--help"):
                args.insert(0, self._default_subcommand)
        namespace, extras = super().parse_known_args(args, namespace)
        # said here, not by the top-level parser the extras would reach: the usage printed with
        # "unrecognized arguments" is then the command's own
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def format_help(self) -> str:
        self.fill()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The one parser of every command line; its commands are filled in when used."""
    parser = argparse.ArgumentParser(prog="python -m knowfree")
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="<command>",
                                     parser_class=CommandParser)
    for name, (module, doc) in COMMANDS.items():
        commands.add_parser(name, help=doc, module=module)
    return parser


def call(argv: list[str]) -> int:
    """`python -m knowfree ARGV` in this process, its errors raised rather than printed (as the
    tests call a command)."""
    args = build_parser().parse_args(list(argv))
    return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        if not argv:  # the bare command asks what there is: the help, not a usage error
            parser.print_help()
            return 0
        # argparse exits 0 after a help, 2 on a usage error (an unknown command included)
        return call(argv)
    except KnowfreeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C is the user's choice, not a failure to explain with a traceback; every file
        # is written atomically, so nothing is left half-written
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `python -m knowfree data stats weibo | head` closes the pipe early: not an error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
