"""`python -m knowfree <command> ...`: each command lives in the module of its stage."""
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


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        asked = not argv or argv[0] in ("-h", "--help")
        out = sys.stdout if asked else sys.stderr  # an unknown command is an error, said as one
        if not asked:
            print(f"error: unknown command {argv[0]!r}", file=out)
        print("usage: python -m knowfree <command> [args]\n\ncommands:", file=out)
        for name, (_, doc) in COMMANDS.items():
            print(f"  {name:10s} {doc}", file=out)
        return 0 if asked else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        return int(module.cli_main(argv[1:]) or 0)
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
