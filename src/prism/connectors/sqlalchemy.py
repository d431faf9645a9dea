"""SQLAlchemy adapter (`prism-pipelines[sqlalchemy]`): any database with a URL.

`hooks.get_connection` returns a SQLAlchemy `Connection` (which pandas.read_sql
accepts); `hooks.get_cursor` returns a cursor of the driver underneath.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from prism.connectors.base import (
    AdapterSettings,
    ConnectionFailedError,
    Params,
    Secret,
    SqlAdapter,
    SqlSettings,
    import_driver,
    scrub,
)

__all__ = ["SqlAlchemyAdapter", "SqlAlchemySettings"]

# The connect() argument that limits connection set-up, per dialect.
_TIMEOUT_ARGUMENTS = {
    "postgresql": "connect_timeout",
    "mysql": "connect_timeout",
    "mariadb": "connect_timeout",
    "sqlite": "timeout",
}


class SqlAlchemySettings(SqlSettings):
    """`url` is a SQLAlchemy database URL; `connect_args` go to the driver."""

    type: str = "sqlalchemy"
    url: Secret
    connect_args: dict[str, Any] = {}
    engine_args: dict[str, Any] = {}


class SqlAlchemyAdapter(SqlAdapter):
    """A database reached through a SQLAlchemy engine, created on first use."""

    settings_model: ClassVar[type[AdapterSettings]] = SqlAlchemySettings
    extra: ClassVar[str | None] = "sqlalchemy"
    driver_modules: ClassVar[tuple[str, ...]] = ("sqlalchemy",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._engine: Any = None
        self._engine_lock = threading.Lock()

    @property
    def engine(self) -> Any:
        """The SQLAlchemy Engine, created on first use."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = self._create_engine()
            return self._engine

    def _create_engine(self) -> Any:
        settings = self.settings
        assert isinstance(settings, SqlAlchemySettings)
        sqlalchemy = import_driver("sqlalchemy", self.extra, "sqlalchemy")
        url_text = settings.url.get_secret_value()
        try:
            url = sqlalchemy.engine.make_url(url_text)
        except sqlalchemy.exc.ArgumentError:
            raise ConnectionFailedError(
                f"{self.where}.url: not a valid SQLAlchemy URL",
                hint="Write it as dialect+driver://user:password@host:port/database.",
            ) from None
        connect_args = dict(settings.connect_args)
        timeout = _TIMEOUT_ARGUMENTS.get(url.get_backend_name())
        if timeout is not None:
            value = settings.connect_timeout
            connect_args.setdefault(timeout, max(2, int(value)))
        try:
            return sqlalchemy.create_engine(
                url, connect_args=connect_args, **settings.engine_args
            )
        except ImportError as error:
            raise ConnectionFailedError(
                f"{self.where}.url: the driver for {url.drivername!r} is not "
                f"installed ({error.name or error})",
                hint="Install the database driver the URL names, e.g. psycopg2-binary.",
            ) from None
        except Exception as error:
            raise ConnectionFailedError(
                f"{self.where}: could not create the engine: "
                f"{scrub(str(error), url.password)}"
            ) from None

    def connect(self) -> Any:
        settings = self.settings
        assert isinstance(settings, SqlAlchemySettings)
        engine = self.engine
        sqlalchemy = import_driver("sqlalchemy", self.extra, "sqlalchemy")
        try:
            return engine.connect()
        except sqlalchemy.exc.DBAPIError as error:
            detail = str(error.orig).strip() if error.orig is not None else str(error)
            raise ConnectionFailedError(
                f"{self.where}: could not connect: "
                f"{scrub(' '.join(detail.split()), engine.url.password)}"
            ) from None

    def open_cursor(self, connection: Any) -> Any:
        return connection

    def close_cursor(self, cursor: Any) -> None:
        return None

    def cursor(self) -> Any:
        return self.connection().connection.cursor()

    def fetch(self, query: str, params: Params) -> tuple[list[str], list[Any]]:
        with self.transaction() as connection:
            if params is None:
                result = connection.exec_driver_sql(query)
            else:
                result = connection.exec_driver_sql(query, params)
            if not result.returns_rows:
                return [], []
            names = list(result.keys())
            rows = [tuple(row) for row in result.fetchall()]
        return names, rows

    def cancel(self, connection: Any) -> None:
        raw = getattr(connection.connection, "dbapi_connection", None)
        for method in ("cancel", "interrupt"):
            stop = getattr(raw, method, None)
            if callable(stop):
                stop()
                return

    def close(self) -> None:
        super().close()
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()
