"""User-facing errors: one line that says what is wrong and where, turned into exit code 2 by the
CLI and the stage scripts (`exit_on_user_error`)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)
USER_ERROR_EXIT_CODE = 2


class FairaugError(Exception):
    """An error caused by the user's input (data, params, arguments), not by a bug in fairaug."""


class DataError(FairaugError):
    """Bad input data. The message names the file, and the row and column when there is one."""

    def __init__(self, message: str, *, file: object = None, row: int | None = None, column: str | None = None):
        self.file, self.row, self.column, self.reason = file, row, column, message
        where = [str(file)] if file is not None else []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ConfigError(FairaugError):
    """Invalid params.yaml / profile: the message names the key."""


def exit_on_user_error(func: F) -> F:
    """Turn a FairaugError into one line on stderr and exit code 2: bad input is not a crash."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FairaugError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(USER_ERROR_EXIT_CODE) from None

    return wrapper  # type: ignore[return-value]
