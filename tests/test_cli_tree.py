"""`python -m knowfree`: one argparse tree (knowfree/__main__.py) whose commands are filled in by
their modules' `add_arguments`; these are the invariants that keep it the only one."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from knowfree.__main__ import COMMANDS, CommandParser, build_parser

PACKAGE = Path(__file__).resolve().parents[1] / "knowfree"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str | None, argparse.ArgumentParser]]:
    """name -> (help, parser) of a parser's subcommands, the parser filled first."""
    if isinstance(parser, CommandParser):
        parser.fill()
    for action in parser._actions:
        if action.nargs == argparse.PARSER:
            helps = {a.dest: a.help for a in action._get_subactions()}
            return {name: (helps.get(name), sub) for name, sub in action.choices.items()}
    return {}


def every_command() -> list[tuple[list[str], str | None, argparse.ArgumentParser]]:
    """(path, help, parser) of every command and subcommand in the tree, depth first."""
    found, todo = [], [([], build_parser())]
    while todo:
        path, parser = todo.pop()
        for name, (help_text, sub) in subcommands(parser).items():
            found.append((path + [name], help_text, sub))
            todo.append((path + [name], sub))
    return found


def test_the_tree_has_every_command_of_the_table_with_its_help():
    top = subcommands(build_parser())
    assert {name: h for name, (h, _) in top.items()} == {name: doc for name, (_, doc) in COMMANDS.items()}


def test_every_command_and_subcommand_has_help_text_and_a_knowfree_prog():
    commands = every_command()
    assert len(commands) > len(COMMANDS)  # the nested ones (data stats, llm serve, ...) are walked too
    for path, help_text, parser in commands:
        assert help_text and help_text.strip(), f"{' '.join(path)} has no help text"
        assert parser.prog.startswith("python -m knowfree"), (path, parser.prog)


@pytest.mark.parametrize("path", [p for p, _, _ in every_command()], ids=" ".join)
def test_help_of_every_command_exits_0(path, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([*path, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m knowfree")


def test_every_command_module_fills_its_parser_and_runs_the_namespace():
    import importlib

    for name, (module, _) in COMMANDS.items():
        m = importlib.import_module(module)
        assert callable(getattr(m, "add_arguments", None)) and callable(getattr(m, "run", None)), module


def test_the_tree_is_the_only_parser():
    """No module builds a parser of its own: each command's arguments are defined once, in its
    add_arguments (a command called in-process goes through knowfree.__main__.call)."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "__main__.py" or path.parent != PACKAGE:
            assert "ArgumentParser(" not in text, path


def test_augment_config_or_pack_or_table():
    """`augment CONFIG` stands for `augment build CONFIG` beside `augment pack` and `augment table`."""
    parse = build_parser().parse_args
    assert parse(["augment", "a.yaml", "--set", "k=5"]).action == "build"
    args = parse(["augment", "--no-progress", "a.yaml"])
    assert (args.action, args.config, args.no_progress) == ("build", "a.yaml", True)
    assert parse(["augment", "pack", "run"]).run_dir == "run"
    assert parse(["augment", "table", "s.json"]).stats == ["s.json"]


@pytest.mark.parametrize("argv, prog", [(["eval", "g", "p", "--bogus"], "python -m knowfree eval"),
                                        (["augment", "a.yaml", "--bogus"], "python -m knowfree augment"),
                                        (["data", "stats", "x", "--bogus"], "python -m knowfree data stats")])
def test_an_unrecognized_argument_is_refused_with_the_commands_own_usage(argv, prog, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(f"usage: {prog} ")
    assert f"{prog}: error: unrecognized arguments: --bogus" in err


def knowfree(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "knowfree", *argv],
                          capture_output=True, text=True, cwd=PACKAGE.parent)


def test_help_and_the_bare_command_list_the_commands_without_importing_torch():
    for argv in (["--help"], []):
        done = knowfree(*argv)
        assert done.returncode == 0
        assert all(name in done.stdout for name in COMMANDS)
        # -X importtime writes one stderr line per imported module
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
        assert not imported & {"torch", "transformers"}


def test_an_unknown_command_exits_2_naming_it_and_the_commands():
    done = knowfree("trian")
    assert done.returncode == 2
    error = [line for line in done.stderr.splitlines() if "error:" in line]
    assert error and "'trian'" in error[0] and all(repr(name) in error[0] for name in COMMANDS)
