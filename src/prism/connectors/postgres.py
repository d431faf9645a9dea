"""PostgreSQL and Amazon Redshift adapters, through psycopg2 (extra `postgres`)."""

from __future__ import annotations

import io
import math
import re
from types import ModuleType
from typing import Any, ClassVar

from prism.connectors.base import (
    AdapterSettings,
    ConnectionFailedError,
    Params,
    Secret,
    SqlAdapter,
    SqlSettings,
    Text,
    execute,
    import_driver,
    rows_to_arrow,
    scrub,
)

__all__ = ["PostgresAdapter", "PostgresSettings", "RedshiftAdapter", "RedshiftSettings"]


class PostgresSettings(SqlSettings):
    """The keys of a postgres adapter: those of Prism 0.2.x and `connect_timeout`."""

    type: str = "postgres"
    user: Text
    password: Secret
    host: Text
    port: int
    database: Text
    autocommit: bool = True


class RedshiftSettings(PostgresSettings):
    """The keys of a redshift adapter, which are those of a postgres adapter."""

    type: str = "redshift"


class PostgresAdapter(SqlAdapter):
    """A PostgreSQL database; `autocommit` is on unless the profile turns it off."""

    settings_model: ClassVar[type[AdapterSettings]] = PostgresSettings
    extra: ClassVar[str | None] = "postgres"
    driver_modules: ClassVar[tuple[str, ...]] = ("psycopg2",)
    product: ClassVar[str] = "PostgreSQL"

    def connect(self) -> Any:
        settings = self.settings
        assert isinstance(settings, PostgresSettings)
        psycopg2 = import_driver("psycopg2", self.extra, settings.type)
        try:
            connection = psycopg2.connect(
                dbname=settings.database,
                host=settings.host,
                port=settings.port,
                user=settings.user,
                password=settings.password.get_secret_value(),
                # libpq takes whole seconds and treats values below 2 as 2.
                connect_timeout=max(2, math.ceil(settings.connect_timeout)),
                application_name="prism",
            )
        except psycopg2.Error as error:
            raise ConnectionFailedError(
                f"{self.where}: could not connect to {self.product}: "
                f"{scrub(_driver_message(error), settings.password)}",
                hint="Check the host, port, user and password of the adapter, and "
                "that the server accepts connections.",
            ) from None
        connection.autocommit = settings.autocommit
        return connection

    def commit(self, connection: Any) -> None:
        if not connection.autocommit:
            connection.commit()

    def cancel(self, connection: Any) -> None:
        connection.cancel()

    def read_arrow(self, query: str, params: Params) -> Any:
        """Return the result as a pyarrow Table, through `COPY ... TO STDOUT`.

        The server writes CSV, which pyarrow parses in C with the column types
        taken from the query's result description, so no Python object is made
        per value. Queries that are not a plain SELECT, or have a column type
        without an exact CSV form (json, arrays, uuid, ...), take the row path.
        """
        pyarrow = import_driver("pyarrow", "arrow", "arrow return type")
        with self.transaction() as cursor:
            text = _bound_query(cursor, query, params)
            schema = _copy_schema(pyarrow, cursor, text) if text else None
            if schema is None:
                execute(cursor, query, params)
                if cursor.description is None:
                    return pyarrow.table({})
                names = [column[0] for column in cursor.description]
                return rows_to_arrow(pyarrow, names, cursor.fetchall())
            buffer = io.BytesIO()
            cursor.copy_expert(f"COPY ({text}) TO STDOUT WITH (FORMAT csv)", buffer)
        buffer.seek(0)
        try:
            return _parse_csv(buffer, schema)
        except pyarrow.ArrowInvalid:
            # Text pyarrow cannot read, such as the timestamp 'infinity', which
            # psycopg2 turns into datetime.max: take the row path instead.
            return super().read_arrow(query, params)


class RedshiftAdapter(PostgresAdapter):
    """An Amazon Redshift cluster, reached over the PostgreSQL protocol."""

    settings_model: ClassVar[type[AdapterSettings]] = RedshiftSettings
    product: ClassVar[str] = "Redshift"


def _driver_message(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines) if lines else type(error).__name__


_SELECT = re.compile(
    r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(select|with|values)\b", re.I | re.S
)

# PostgreSQL type OIDs whose CSV text pyarrow parses to the same value psycopg2
# would return.
_ARROW_TYPES = {
    16: "bool_",
    20: "int64",
    21: "int16",
    23: "int32",
    700: "float32",
    701: "float64",
    25: "string",
    1043: "string",
    1042: "string",
    19: "string",
    1082: "date32",
}
_TIMESTAMP = 1114
_TIMESTAMPTZ = 1184
_NUMERIC = 1700


def _bound_query(cursor: Any, query: str, params: Params) -> str | None:
    """Return `query` with `params` bound, without a final `;`, if it is a SELECT."""
    if not _SELECT.match(query):
        return None
    text = query
    if params is not None:
        from psycopg2.extensions import encodings

        encoding = encodings.get(cursor.connection.encoding, "utf-8")
        text = cursor.mogrify(query, params).decode(encoding)
    return text.strip().rstrip(";").strip() or None


def _copy_schema(pyarrow: ModuleType, cursor: Any, text: str) -> Any:
    """Return the arrow schema of `text`'s result, or None if COPY cannot give it."""
    savepoint = not cursor.connection.autocommit
    if savepoint:
        cursor.execute("SAVEPOINT prism_describe")
    try:
        cursor.execute(f"SELECT * FROM ({text}) AS prism_describe LIMIT 0")
        description = cursor.description
    except Exception:
        if not savepoint:
            return None
        cursor.execute("ROLLBACK TO SAVEPOINT prism_describe")
        description = None
    if savepoint:
        cursor.execute("RELEASE SAVEPOINT prism_describe")
    if description is None:
        return None
    names = [column.name for column in description]
    if len(set(names)) != len(names):
        return None
    fields = []
    for column in description:
        arrow_type = _arrow_type(pyarrow, column)
        if arrow_type is None:
            return None
        fields.append(pyarrow.field(column.name, arrow_type))
    return pyarrow.schema(fields)


def _arrow_type(pyarrow: ModuleType, column: Any) -> Any:
    code = column.type_code
    if code in _ARROW_TYPES:
        return getattr(pyarrow, _ARROW_TYPES[code])()
    if code == _TIMESTAMP:
        return pyarrow.timestamp("us")
    if code == _TIMESTAMPTZ:
        return pyarrow.timestamp("us", tz="UTC")
    if code == _NUMERIC and column.precision and column.precision <= 38:
        return pyarrow.decimal128(column.precision, column.scale or 0)
    return None


def _parse_csv(buffer: io.BytesIO, schema: Any) -> Any:
    from pyarrow import csv

    # COPY writes NULL as an empty unquoted field and an empty string as "".
    return csv.read_csv(
        buffer,
        read_options=csv.ReadOptions(
            column_names=schema.names, block_size=16 * 1024 * 1024
        ),
        parse_options=csv.ParseOptions(newlines_in_values=True),
        convert_options=csv.ConvertOptions(
            column_types=schema,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
