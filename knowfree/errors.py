"""Errors a user can act on: each names what is wrong, where, and how to fix it.

A hint names options in the terms the user typed them: a command line sets :func:`spelled`
(``--on-overlap drop``), while Python callers read the keyword (``on_overlap='drop'``).
"""
import contextlib
import contextvars


class KnowfreeError(Exception):
    """Base class: the CLI prints these as one clear message instead of a traceback."""


class InputError(KnowfreeError):
    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        msg = what if where is None else f"{where}: {what}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)


class ConfigError(KnowfreeError):
    pass


class DataNotFound(KnowfreeError):
    pass


def int_at_least(minimum: int, maximum: int | None = None):
    """An argparse ``type``: an integer >= ``minimum`` (and <= ``maximum``), so that a flag such
    as ``--batch-size 0``, ``--stop-after -1`` or ``--port 99999`` is refused where it is typed
    instead of misbehaving later."""
    import argparse

    want = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {want}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected an integer {want}, got {value}")
        return value
    return parse


def path_given(text: str) -> str:
    """An argparse ``type`` for a path flag whose absence means a default (stdin, stdout, a
    results folder): an empty value, as a shell gives for an unset variable, is refused rather
    than taken for that default."""
    import argparse

    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def nonnegative_seconds(text: str) -> float:
    """An argparse ``type``: a finite number of seconds >= 0 (not nan, not inf)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def shown(value, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters: a message quotes a bad value or line
    so that it can be found, and must stay readable when the line is 8 KB of NUL bytes."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


_SPELLING: contextvars.ContextVar[dict] = contextvars.ContextVar("knowfree_spelling", default={})


@contextlib.contextmanager
def spelled(forms: dict[str, str]):
    """Within this block :func:`option` names options as a command's user types them: ``forms``
    maps an option to its spelling, ``{}`` standing for the value (``{"on_overlap":
    "--on-overlap {}"}``), or to a function of the value."""
    token = _SPELLING.set(forms)
    try:
        yield
    finally:
        _SPELLING.reset(token)


def option(name: str, value, python: str | None = None) -> str:
    """How to set option ``name`` to ``value`` where the error is read: the running command's
    flag or config key, else the Python keyword (``python``, default ``name=value``)."""
    form = _SPELLING.get().get(name)
    if callable(form):
        return form(value)
    if form is not None:
        return form.format(value)
    return python or f"{name}={value!r}"
