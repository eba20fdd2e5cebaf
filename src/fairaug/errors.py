"""User-facing errors: one line that says what is wrong and where, turned into exit code 2 by the CLI."""

from __future__ import annotations


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
