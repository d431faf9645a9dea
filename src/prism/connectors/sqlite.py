"""SQLite adapter, through Python's own sqlite3 module (no extra needed)."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any, ClassVar

from prism.connectors.base import (
    AdapterSettings,
    ConnectionFailedError,
    SqlAdapter,
    SqlSettings,
    Text,
)

__all__ = ["SqliteAdapter", "SqliteSettings"]

MEMORY = ":memory:"

_memory_names = itertools.count(1)


class SqliteSettings(SqlSettings):
    """`database` is a file path, relative to the profile's folder, or `:memory:`.

    `connect_timeout` is how long a query waits for another connection's lock.
    """

    type: str = "sqlite"
    database: Text


class SqliteAdapter(SqlAdapter):
    """A SQLite database file. `:memory:` is one database shared by all threads."""

    settings_model: ClassVar[type[AdapterSettings]] = SqliteSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.settings
        assert isinstance(settings, SqliteSettings)
        if settings.database == MEMORY:
            # A named in-memory database with a shared cache lets every thread's
            # connection see the same tables, as a file would.
            self._target = f"file:prism-{id(self)}-{next(_memory_names)}"
            self._target += "?mode=memory&cache=shared"
            self._uri = True
        else:
            path = Path(settings.database).expanduser()
            if not path.is_absolute():
                path = self.context.folder / path
            self._target = str(path)
            self._uri = False

    def connect(self) -> Any:
        settings = self.settings
        assert isinstance(settings, SqliteSettings)
        try:
            return sqlite3.connect(
                self._target,
                timeout=settings.connect_timeout,
                uri=self._uri,
                check_same_thread=False,
            )
        except sqlite3.Error as error:
            raise ConnectionFailedError(
                f"{self.where}: could not open the SQLite database: {error}"
            ) from None
