"""DuckDB adapter (`prism-pipelines[duckdb]`): a database file or `:memory:`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

from prism.connectors.base import (
    AdapterSettings,
    ConnectionFailedError,
    Params,
    QueryError,
    SqlAdapter,
    SqlSettings,
    Text,
    import_driver,
)

__all__ = ["DuckDBAdapter", "DuckDBSettings"]

MEMORY = ":memory:"


class DuckDBSettings(SqlSettings):
    """`database` is a file path, relative to the profile's folder, or `:memory:`.

    `config` is passed to `duckdb.connect` (e.g. `threads`, `memory_limit`).
    """

    type: str = "duckdb"
    database: Text = MEMORY
    read_only: bool = False
    config: dict[str, Any] = {}


class DuckDBAdapter(SqlAdapter):
    """A DuckDB database, opened once; each thread gets its own connection to it.

    The per-thread connections are `cursor()`s of the first one, which is how
    DuckDB shares one database between threads, `:memory:` included.
    """

    settings_model: ClassVar[type[AdapterSettings]] = DuckDBSettings
    extra: ClassVar[str | None] = "duckdb"
    driver_modules: ClassVar[tuple[str, ...]] = ("duckdb",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._database: Any = None
        self._open_lock = threading.Lock()

    def connect(self) -> Any:
        with self._open_lock:
            if self._database is None:
                self._database = self._open()
            return self._database.cursor()

    def _open(self) -> Any:
        settings = self.settings
        assert isinstance(settings, DuckDBSettings)
        duckdb = import_driver("duckdb", self.extra, "duckdb")
        database = settings.database
        if database != MEMORY:
            path = Path(database).expanduser()
            database = str(path if path.is_absolute() else self.context.folder / path)
        try:
            return duckdb.connect(
                database, read_only=settings.read_only, config=dict(settings.config)
            )
        except duckdb.Error as error:
            raise ConnectionFailedError(
                f"{self.where}: could not open the DuckDB database: {error}"
            ) from None

    def commit(self, connection: Any) -> None:
        # DuckDB commits each statement unless the task began a transaction
        # itself, which it then ends itself.
        return None

    def rollback(self, connection: Any) -> None:
        try:
            connection.rollback()
        except Exception:
            # "no transaction is active": the failed statement left nothing open.
            return

    def read_pandas(self, query: str, params: Params) -> Any:
        with self.transaction() as cursor:
            return _result(cursor, query, params, "df")

    def read_arrow(self, query: str, params: Params) -> Any:
        with self.transaction() as cursor:
            return _result(cursor, query, params, "to_arrow_table", "arrow")

    def read_polars(self, query: str, params: Params) -> Any:
        with self.transaction() as cursor:
            return _result(cursor, query, params, "pl")

    def close(self) -> None:
        super().close()
        with self._open_lock:
            database, self._database = self._database, None
        if database is not None:
            database.close()


def _result(cursor: Any, query: str, params: Params, *methods: str) -> Any:
    relation = cursor.sql(query, params=params)
    if relation is None:
        raise QueryError(
            "hooks.sql: the statement returns no rows to convert; run it with "
            "return_type=None"
        )
    for method in methods:
        convert = getattr(relation, method, None)
        if convert is not None:
            return convert()
    raise AttributeError(f"this duckdb version has none of {', '.join(methods)}")
