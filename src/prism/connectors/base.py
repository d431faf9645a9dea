"""The adapter contract: the registry of adapter types and the base classes.

Stable interface, which every adapter module builds on:

- `ADAPTER_TYPES` maps an adapter type (the `type:` key in profile.yml) to
  "module:Class". `adapter_class(type)` imports the module on first use.
- Importing an adapter module must not import its driver. Drivers are imported with
  `import_driver()` when the adapter is first used, so `prism run` stays fast and a
  missing driver fails only the projects that use it.
- Each adapter class sets `settings_model`, a subclass of `AdapterSettings`
  (pydantic, unknown keys rejected, with a `type` field). It also sets `extra`, the
  pip extra that installs the driver, and `driver_modules`, the modules that extra
  provides. The profile loader checks those modules with
  `importlib.util.find_spec` before any task runs, and then calls the class
  method `check(settings, context)`, which may raise ConfigError for settings
  that pydantic cannot judge alone (a folder without its file).
- An adapter is created as `cls(name, settings, context)` when a task first uses it,
  never at start-up. `close()` must be idempotent and safe to call from any thread,
  because `Hooks.close()` calls it from the main thread at the end of every run.
- `Adapter.hook_attributes(settings)` lists the names an adapter exposes as
  `hooks.<name>` (the pyspark adapter exposes its `alias`), and
  `Adapter.hook_attribute(name)` returns the value, built on first use. `Hooks`
  then stores the value as an instance attribute, so `vars(hooks)` contains it.
- `SqlAdapter` subclasses implement `connect()` (one driver connection, called once
  per worker thread) and may override `fetch()`, `read_pandas()`, `read_arrow()`,
  `commit()`, `rollback()` and `cancel()`. Everything else (per-thread
  connections, a cursor per call, rollback on error, return types) is shared.
- The dbt adapter implements `ref(target_1, target_2, target_version)`, see
  `RefAdapter`.
- Values of settings rendered from the environment, and of keys such as
  `password`, are registered with `prism.console.secrets.register_secret()` by
  the profile loader, so every renderer masks them. Adapters pass driver error
  text through `scrub()` before putting it in a message.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr

from prism.errors import ConfigError, TaskError

__all__ = [
    "ADAPTER_TYPES",
    "Adapter",
    "AdapterContext",
    "AdapterSettings",
    "ConnectionFailedError",
    "DriverMissingError",
    "QueryError",
    "RETURN_TYPES",
    "Params",
    "RefAdapter",
    "Secret",
    "SqlAdapter",
    "SqlSettings",
    "Text",
    "adapter_class",
    "execute",
    "import_driver",
    "install_hint",
    "rows_to_arrow",
    "scrub",
]

# Adapter type to "module:Class". Modules are imported only when an adapter of that
# type appears in the selected profile.
ADAPTER_TYPES: dict[str, str] = {
    "postgres": "prism.connectors.postgres:PostgresAdapter",
    "redshift": "prism.connectors.postgres:RedshiftAdapter",
    "sqlite": "prism.connectors.sqlite:SqliteAdapter",
    "duckdb": "prism.connectors.duckdb:DuckDBAdapter",
    "sqlalchemy": "prism.connectors.sqlalchemy:SqlAlchemyAdapter",
    "snowflake": "prism.connectors.snowflake:SnowflakeAdapter",
    "bigquery": "prism.connectors.bigquery:BigQueryAdapter",
    "trino": "prism.connectors.trino:TrinoAdapter",
    "presto": "prism.connectors.trino:PrestoAdapter",
    "pyspark": "prism.connectors.pyspark:PySparkAdapter",
    "dbt": "prism.connectors.dbt:DbtAdapter",
}

RETURN_TYPES = (None, "pandas", "arrow", "polars", "records")

DEFAULT_CONNECT_TIMEOUT = 10.0


class ConnectionFailedError(TaskError):
    """An adapter could not connect to its database (the task fails, exit 1)."""


class DriverMissingError(ConfigError):
    """The driver of an adapter type is not installed."""


class QueryError(TaskError):
    """`hooks.sql` was called with an invalid argument (the task fails, exit 1)."""


@dataclass(frozen=True)
class AdapterContext:
    """The origin of an adapter's settings, for messages and relative paths.

    `key_path` is the adapter's place in the file, e.g. "dev.adapters.warehouse",
    and `file_label` is how messages name the file (e.g. "profile.yml").
    """

    profile_path: Path
    file_label: str
    key_path: str

    @property
    def folder(self) -> Path:
        """The folder of the profile file, against which relative paths resolve."""
        return self.profile_path.parent


class AdapterSettings(BaseModel):
    """The settings of one adapter in profile.yml; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str


class SqlSettings(AdapterSettings):
    """Settings every SQL adapter accepts besides its own."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT


class Adapter(ABC):
    """One adapter of the selected profile, created when a task first uses it."""

    settings_model: ClassVar[type[AdapterSettings]] = AdapterSettings
    extra: ClassVar[str | None] = None
    driver_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, name: str, settings: AdapterSettings, context: AdapterContext
    ) -> None:
        self.name = name
        self.settings = settings
        self.context = context

    @classmethod
    def check(cls, settings: AdapterSettings, context: AdapterContext) -> None:
        """Raise ConfigError for settings that are invalid beyond their types."""
        return None

    @classmethod
    def hook_attributes(cls, settings: AdapterSettings) -> tuple[str, ...]:
        """Return the names this adapter exposes as `hooks.<name>`."""
        return ()

    def hook_attribute(self, name: str) -> Any:
        """Return the value of `hooks.<name>` for a name from `hook_attributes`."""
        raise AttributeError(name)

    @abstractmethod
    def close(self) -> None:
        """Release every connection or session; safe to call twice, from any thread."""


@runtime_checkable
class RefAdapter(Protocol):
    """An adapter that can read a dbt model, as `hooks.dbt_ref` needs."""

    def ref(
        self,
        target_1: str,
        target_2: str | None = None,
        target_version: int | None = None,
    ) -> Any:
        """Return the model as a pandas DataFrame."""


def adapter_class(adapter_type: str) -> type[Adapter]:
    """Import and return the adapter class for `adapter_type` from ADAPTER_TYPES."""
    module_name, _, class_name = ADAPTER_TYPES[adapter_type].partition(":")
    cls: type[Adapter] = getattr(importlib.import_module(module_name), class_name)
    return cls


def install_hint(extra: str) -> str:
    """Return the pip command that installs the driver extra `extra`."""
    return f"pip install 'prism-pipelines[{extra}]'"


def import_driver(module: str, extra: str | None, adapter_type: str) -> ModuleType:
    """Import a driver module, or raise DriverMissingError naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        hint = f"Install it with: {install_hint(extra)}" if extra else None
        raise DriverMissingError(
            f"the {adapter_type} adapter needs the Python package that provides "
            f"{module!r}, which is not installed ({error.name or module} not found)",
            hint=hint,
        ) from None


class SqlAdapter(Adapter):
    """A database adapter: one connection per worker thread, opened on first use.

    Subclasses implement `connect()`. They may override `fetch()` (the rows of one
    query), `read_pandas()` and `read_arrow()` where the driver has a faster
    path, `commit()` and `rollback()`, and `cancel()`, which stops a running
    query from another thread.
    """

    settings_model: ClassVar[type[AdapterSettings]] = SqlSettings

    def __init__(
        self, name: str, settings: AdapterSettings, context: AdapterContext
    ) -> None:
        super().__init__(name, settings, context)
        self._connections: dict[int, Any] = {}
        self._busy: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.connects = 0

    @abstractmethod
    def connect(self) -> Any:
        """Open and return one new connection; drivers are imported here.

        Raises:
            ConnectionFailedError: the database cannot be reached or rejected the
                login; the message must not contain any secret setting.
            DriverMissingError: the driver is not installed.
        """

    @property
    def where(self) -> str:
        """The adapter's place in the profile file, for messages."""
        return f"{self.context.file_label}: {self.context.key_path}"

    def connection(self) -> Any:
        """Return the calling thread's connection, opening it on first use."""
        ident = threading.get_ident()
        connection = self._connections.get(ident)
        if connection is not None:
            return connection
        connection = self.connect()
        with self._lock:
            self.connects += 1
            self._connections[ident] = connection
        return connection

    def cursor(self) -> Any:
        """Return a new cursor on the calling thread's connection."""
        return self.connection().cursor()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """Yield a new cursor; commit after, roll back and re-raise on error.

        While the block runs, the connection counts as busy: `close()` from
        another thread cancels its query first, and on the main thread Ctrl-C
        cancels it (see `interrupts`).
        """
        connection = self.connection()
        cursor = self.open_cursor(connection)
        ident = threading.get_ident()
        with self._lock:
            self._busy[ident] = connection
        try:
            with interrupts.cancelling(self, connection):
                yield cursor
        except BaseException:
            self.rollback(connection)
            raise
        else:
            self.commit(connection)
        finally:
            with self._lock:
                self._busy.pop(ident, None)
            self.close_cursor(cursor)

    def open_cursor(self, connection: Any) -> Any:
        """Return what `transaction()` yields: a new DB-API cursor by default."""
        return connection.cursor()

    def close_cursor(self, cursor: Any) -> None:
        """Release what `open_cursor()` returned."""
        _close_quietly(cursor)

    def commit(self, connection: Any) -> None:
        """Commit the current transaction (a no-op in autocommit mode)."""
        connection.commit()

    def rollback(self, connection: Any) -> None:
        """Roll back the current transaction so later queries on the thread work."""
        try:
            connection.rollback()
        except Exception:
            # A connection that broke mid-query cannot roll back; drop it so the
            # thread's next call opens a new one.
            self._forget(connection)

    def cancel(self, connection: Any) -> None:
        """Stop the query running on `connection`, if the driver can; from any
        thread."""
        interrupt = getattr(connection, "interrupt", None)
        if callable(interrupt):
            interrupt()

    def sql(
        self,
        query: str,
        return_type: str | None = None,
        params: Params = None,
    ) -> Any:
        """Run `query` in its own cursor and return its rows as `return_type`."""
        if return_type not in RETURN_TYPES:
            choices = ", ".join(repr(choice) for choice in RETURN_TYPES)
            raise QueryError(
                f"hooks.sql: invalid return_type {return_type!r}; use one of {choices}"
            )
        if return_type == "pandas":
            return self.read_pandas(query, params)
        if return_type == "arrow":
            return self.read_arrow(query, params)
        if return_type == "polars":
            return self.read_polars(query, params)
        names, rows = self.fetch(query, params)
        if return_type == "records":
            return [dict(zip(names, row, strict=True)) for row in rows]
        return rows

    def fetch(self, query: str, params: Params) -> tuple[list[str], list[Any]]:
        """Return the column names and the rows (tuples) of `query`.

        A statement without a result, such as an INSERT, gives no names and no
        rows.
        """
        with self.transaction() as cursor:
            execute(cursor, query, params)
            if cursor.description is None:
                return [], []
            names = [column[0] for column in cursor.description]
            rows = cursor.fetchall()
        if rows and not isinstance(rows[0], tuple):
            rows = [tuple(row) for row in rows]
        return names, rows

    def read_pandas(self, query: str, params: Params) -> Any:
        """Return the result of `query` as a pandas DataFrame."""
        pandas = import_driver("pandas", "pandas", "pandas return type")
        names, rows = self.fetch(query, params)
        return pandas.DataFrame(data=rows, columns=names)

    def read_arrow(self, query: str, params: Params) -> Any:
        """Return the result of `query` as a pyarrow Table."""
        pyarrow = import_driver("pyarrow", "arrow", "arrow return type")
        names, rows = self.fetch(query, params)
        return rows_to_arrow(pyarrow, names, rows)

    def read_polars(self, query: str, params: Params) -> Any:
        """Return the result of `query` as a polars DataFrame."""
        polars = import_driver("polars", "polars", "polars return type")
        return polars.from_arrow(self.read_arrow(query, params))

    def close(self) -> None:
        """Close every thread's connection, cancelling running queries first."""
        with self._lock:
            connections = list(self._connections.values())
            busy = list(self._busy.values())
            self._connections.clear()
            self._busy.clear()
        for connection in busy:
            try:
                self.cancel(connection)
            except Exception:
                pass
        for connection in connections:
            self.close_connection(connection)

    def close_connection(self, connection: Any) -> None:
        """Close one connection; errors are ignored, as it may already be broken."""
        _close_quietly(connection)

    def _forget(self, connection: Any) -> None:
        with self._lock:
            for ident, known in list(self._connections.items()):
                if known is connection:
                    del self._connections[ident]
        self.close_connection(connection)


Params = Sequence[Any] | Mapping[str, Any] | None


def execute(cursor: Any, query: str, params: Params) -> None:
    """Run `query` on `cursor`, passing `params` only when given.

    Drivers differ on `execute(query, None)`: psycopg2 then leaves `%` alone,
    sqlite3 rejects it. So no parameters means no second argument.
    """
    if params is None:
        cursor.execute(query)
    else:
        cursor.execute(query, params)


def rows_to_arrow(pyarrow: ModuleType, names: list[str], rows: list[Any]) -> Any:
    """Build a pyarrow Table from DB-API rows, one column at a time."""
    if not names:
        return pyarrow.table({})
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [pyarrow.array(column) for column in columns]
    return pyarrow.Table.from_arrays(arrays, names=_unique(names))


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name}_{count}")
    return unique


def scrub(text: str, *values: object) -> str:
    """Return `text` with `values` and every registered secret masked."""
    from prism.console.secrets import MASK, MIN_SECRET_LENGTH, mask

    for value in values:
        if value is None:
            continue
        raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if len(raw) >= MIN_SECRET_LENGTH:
            text = text.replace(raw, MASK)
    return mask(text)


def _close_quietly(resource: Any) -> None:
    try:
        resource.close()
    except Exception:
        pass


def _to_text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


# Settings types. YAML reads `password: 1234` as a number, so numbers are turned
# back into text for text settings.
Text = Annotated[str, BeforeValidator(_to_text)]
Secret = Annotated[SecretStr, BeforeValidator(_to_text)]


class _Interrupts:
    """Cancels the main thread's running query when SIGINT or SIGTERM arrives.

    With THREADS = 1, tasks run on the main thread. A driver blocked in C code
    there keeps Python's signal handler from running until the query ends. So
    while a query runs on the main thread, `signal.set_wakeup_fd` has the
    interpreter's C-level handler write to a pipe, and a helper thread reading
    it cancels the query; the Python handler then raises KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[tuple[SqlAdapter, Any]] = []
        self._reader: int | None = None

    @contextmanager
    def cancelling(self, adapter: SqlAdapter, connection: Any) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._install()
        entry = (adapter, connection)
        with self._lock:
            self._active.append(entry)
        try:
            yield
        finally:
            with self._lock:
                self._active.remove(entry)

    def _install(self) -> None:
        if self._reader is not None:
            return
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        try:
            previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        except ValueError:
            os.close(read_end)
            os.close(write_end)
            return
        if previous != -1:
            # Someone else (an event loop) watches signals this way; leave it.
            signal.set_wakeup_fd(previous)
            os.close(read_end)
            os.close(write_end)
            return
        self._reader = read_end
        threading.Thread(
            target=self._watch,
            args=(read_end,),
            name="prism-sql-interrupts",
            daemon=True,
        ).start()

    def _watch(self, read_end: int) -> None:
        wanted = {int(signal.SIGINT), int(signal.SIGTERM)}
        while True:
            try:
                data = os.read(read_end, 64)
            except OSError:
                return
            if not data:
                return
            if wanted.isdisjoint(data):
                continue
            with self._lock:
                active = list(self._active)
            for adapter, connection in active:
                try:
                    adapter.cancel(connection)
                except Exception:
                    pass


interrupts = _Interrupts()
