"""Result conversion from a live PostgreSQL, in process: every return type gives
the same values, whichever path (rows or COPY) builds it."""

from __future__ import annotations

import datetime
import decimal
from pathlib import Path

import pytest

from prism.connectors.hooks import Hooks
from tests.connectors.postgres_server import PostgresServer

MIXED = """
    SELECT i AS id,
           (i * 1.5)::float8 AS value,
           CASE WHEN i = 2 THEN NULL WHEN i = 3 THEN '' ELSE 'row ' || i END AS label,
           (i % 2 = 0) AS flag,
           (i / 7.0)::numeric(10, 3) AS amount,
           date '2024-02-28' + i AS day,
           timestamp '2024-01-01 12:00:00.5' + i * interval '1 hour' AS at,
           timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute' AS at_utc,
           E'line one\\nline "two", three' AS awkward
    FROM generate_series(1, 4) AS i
    ORDER BY i
"""


@pytest.fixture
def pg_hooks(tmp_path: Path, postgres: PostgresServer, pg_database: str) -> Hooks:
    profile = tmp_path / "profile.yml"
    profile.write_text(
        "dev:\n  adapters:\n"
        + "".join(
            f"    {name}:\n      type: postgres\n      host: {postgres.host}\n"
            f"      port: {postgres.port}\n      database: {pg_database}\n"
            f"      user: {postgres.user}\n      password: {postgres.password}\n"
            f"      autocommit: {autocommit}\n"
            for name, autocommit in (("pg", "true"), ("tx", "false"))
        )
    )
    hooks = Hooks(profile, "dev", root=tmp_path)
    yield hooks
    hooks.close()


def test_arrow_matches_rows(pg_hooks):
    rows = pg_hooks.sql("pg", MIXED, return_type="records")

    table = pg_hooks.sql("pg", MIXED, return_type="arrow")

    assert table.to_pylist() == rows


def test_arrow_keeps_null_apart_from_empty(pg_hooks):
    table = pg_hooks.sql("pg", MIXED, return_type="arrow")

    assert table.column("label").to_pylist() == ["row 1", None, "", "row 4"]


def test_arrow_column_types(pg_hooks):
    table = pg_hooks.sql("pg", MIXED, return_type="arrow")

    types = {field.name: str(field.type) for field in table.schema}
    assert types == {
        "id": "int32",
        "value": "double",
        "label": "string",
        "flag": "bool",
        "amount": "decimal128(10, 3)",
        "day": "date32[day]",
        "at": "timestamp[us]",
        "at_utc": "timestamp[us, tz=UTC]",
        "awkward": "string",
    }


def test_polars_matches_rows(pg_hooks):
    frame = pg_hooks.sql("pg", MIXED, return_type="polars")

    assert frame["label"].to_list() == ["row 1", None, "", "row 4"]
    assert frame["amount"].to_list()[0] == decimal.Decimal("0.143")
    assert frame["at"].to_list()[0] == datetime.datetime(2024, 1, 1, 13, 0, 0, 500000)


def test_pandas_matches_rows(pg_hooks):
    frame = pg_hooks.sql("pg", MIXED, return_type="pandas")

    assert list(frame.columns) == [
        "id", "value", "label", "flag", "amount", "day", "at", "at_utc", "awkward"
    ]  # fmt: skip
    assert frame["id"].tolist() == [1, 2, 3, 4]
    assert frame["label"].tolist()[2] == ""


def test_arrow_with_params_and_semicolon(pg_hooks):
    table = pg_hooks.sql(
        "pg",
        "SELECT %(n)s::int AS n, %(s)s::text AS s;",
        return_type="arrow",
        params={"n": 5, "s": "it's"},
    )

    assert table.to_pylist() == [{"n": 5, "s": "it's"}]


def test_arrow_falls_back_for_other_types(pg_hooks):
    query = (
        "SELECT '{\"a\": 1}'::json AS doc, ARRAY[1, 2] AS items, "
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid::text AS id"
    )

    table = pg_hooks.sql("pg", query, return_type="arrow")

    assert table.to_pylist() == [
        {"doc": {"a": 1}, "items": [1, 2], "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}
    ]


def test_arrow_from_insert_returning(pg_hooks):
    pg_hooks.sql("pg", "CREATE TABLE t (id INTEGER)")

    table = pg_hooks.sql(
        "pg", "INSERT INTO t VALUES (1), (2) RETURNING id", return_type="arrow"
    )

    assert table.column("id").to_pylist() == [1, 2]
    assert pg_hooks.sql("pg", "SELECT count(*) FROM t") == [(2,)]


def test_arrow_inside_transaction_sees_own_writes(pg_hooks):
    pg_hooks.sql("tx", "CREATE TABLE t (id INTEGER)")
    connection = pg_hooks.get_connection("tx")
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (7)")

    table = pg_hooks.sql("tx", "SELECT id FROM t", return_type="arrow")

    assert table.column("id").to_pylist() == [7]


def test_arrow_error_rolls_back_transaction(pg_hooks):
    with pytest.raises(Exception, match="no_such_table"):
        pg_hooks.sql("tx", "SELECT * FROM no_such_table", return_type="arrow")

    assert pg_hooks.sql("tx", "SELECT 1") == [(1,)]


def test_arrow_falls_back_on_unparsed_text(pg_hooks):
    query = "SELECT 'infinity'::timestamp AS at"

    table = pg_hooks.sql("pg", query, return_type="arrow")

    assert table.column("at").to_pylist() == [datetime.datetime.max]
