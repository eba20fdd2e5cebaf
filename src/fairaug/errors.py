"""User-facing errors: one line that says what is wrong and where, turned into exit code 2 by the
CLI and the stage scripts (`exit_on_user_error`)."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)
USER_ERROR_EXIT_CODE = 2
ENVIRONMENT_ERROR_EXIT_CODE = 1
# the machine, not the code: a full disk, a read-only or unwritable place, a file where a directory
# is expected (and the reverse); one line naming the path, not a traceback
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                      errno.EISDIR, errno.EEXIST}  # fmt: skip


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


def environment_error(err: OSError) -> str | None:
    """One line for an OSError caused by the machine (``ENVIRONMENT_ERRNOS``; pyarrow's and others'
    errors that only say "No space left on device" in their text too), None for any other."""
    paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    if err.errno in (errno.EEXIST, errno.ENOTDIR) and err.filename is not None and os.path.isfile(err.filename):
        return f"{err.filename} is a file where a directory is expected"
    if err.errno in ENVIRONMENT_ERRNOS:
        return f"{paths}: {err.strerror or os.strerror(err.errno)}" if paths else f"{err.strerror or err}"
    if os.strerror(errno.ENOSPC) in str(err):
        return f"{os.strerror(errno.ENOSPC)} ({str(err).strip().splitlines()[0][:200]})"
    return None


def exit_on_user_error(func: F) -> F:
    """Turn a FairaugError into one line on stderr and exit code 2: bad input is not a crash."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FairaugError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(USER_ERROR_EXIT_CODE) from None
        except OSError as err:
            if (line := environment_error(err)) is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            raise SystemExit(ENVIRONMENT_ERROR_EXIT_CODE) from None

    return wrapper  # type: ignore[return-value]
