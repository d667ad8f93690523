"""User-facing errors: each carries one line that names the problem and the fix."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class SerError(Exception):
    """A problem with the user's input or configuration, reported as one line without traceback."""


class AudioError(SerError):
    """An audio file that cannot be used (unreadable, empty, silent, NaN, ...)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def find_user_error(error: BaseException | None) -> SerError | None:
    """The SerError behind `error`, looking through wrappers such as Hydra's
    InstantiationException (raised `from` the original error)."""
    while error is not None:
        if isinstance(error, SerError):
            return error
        error = error.__cause__
    return None


def _is_multirun_config(arg: object) -> bool:
    """Whether `arg` is the config of a job of a Hydra multirun (`-m`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig

    return (
        isinstance(arg, DictConfig)
        and HydraConfig.initialized()
        and HydraConfig.get().mode == RunMode.MULTIRUN
    )


def exit_on_user_error(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a SerError raised by a command-line entry point into one `error:` line and exit 2
    (in a job of a sweep, raise it: the sweeper reports the job's error)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except Exception as err:
            user_error = find_user_error(err)
            # A job of a sweep (a task function, given its config) raises: the error is that
            # job's, which the sweeper reports before it goes on with the other jobs.
            if user_error is None or (args and _is_multirun_config(args[0])):
                raise
            print(f"error: {user_error}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
