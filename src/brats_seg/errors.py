"""Errors a user can act on: the CLI prints them as one line and exits non-zero, never as a
traceback."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message ("" when it has none), for one-line reports."""
    text = str(err)
    return text.splitlines()[0] if text else ""


class BratsSegError(Exception):
    """Base class for every error caused by the user's data, files or options."""


class DataError(BratsSegError):
    """A case or file on disk is missing, unreadable or inconsistent."""


class ConfigError(BratsSegError):
    """An option has a value that cannot work (the message names the option)."""


class RunError(BratsSegError):
    """A run folder is missing, incomplete or belongs to a different configuration."""


class TrainingFailed(BratsSegError):
    """Training stopped abnormally (for example the loss became NaN)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a command cleans up as after Ctrl-C: temporary
    folders removed, worker processes ended, a training run recorded as interrupted."""
