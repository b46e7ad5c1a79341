"""Errors a user can act on: each names what is wrong, where, and how to fix it."""


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
