"""The `hooks` API in process, on SQLite and DuckDB: return types, parameters,
transactions, per-thread connections, closing, and `load_hooks()`."""

from __future__ import annotations

import sqlite3
import textwrap
import threading
from pathlib import Path

import pytest

from prism.connectors.hooks import AdapterNotConfiguredError, Hooks
from prism.errors import ConfigError
from prism.infra.hooks import load_hooks

PROFILE = """\
dev:
  adapters:
    lite:
      type: sqlite
      database: data.sqlite
    duck:
      type: duckdb
      database: ":memory:"
    memory:
      type: sqlite
      database: ":memory:"
"""


@pytest.fixture
def hooks(tmp_path: Path) -> Hooks:
    path = tmp_path / "profile.yml"
    path.write_text(PROFILE)
    created = Hooks(path, "dev", root=tmp_path)
    yield created
    created.close()


def test_default_return_is_list_of_tuples(hooks):
    hooks.sql("lite", "CREATE TABLE t (id INTEGER, name TEXT)")
    hooks.sql("lite", "INSERT INTO t VALUES (1, 'a'), (2, 'b')")

    rows = hooks.sql("lite", "SELECT id, name FROM t ORDER BY id")

    assert rows == [(1, "a"), (2, "b")]


def test_records_are_dicts_by_column(hooks):
    rows = hooks.sql("duck", "SELECT 1 AS id, 'x' AS name", return_type="records")

    assert rows == [{"id": 1, "name": "x"}]


def test_pandas_return_type(hooks):
    frame = hooks.sql("lite", "SELECT 1 AS a, 2.5 AS b", return_type="pandas")

    assert list(frame.columns) == ["a", "b"]
    assert frame.to_dict("records") == [{"a": 1, "b": 2.5}]


def test_arrow_and_polars_return_types(hooks):
    for adapter in ("lite", "duck"):
        table = hooks.sql(adapter, "SELECT 7 AS n", return_type="arrow")
        frame = hooks.sql(adapter, "SELECT 7 AS n", return_type="polars")

        assert type(table).__module__.startswith("pyarrow"), adapter
        assert table.column_names == ["n"], adapter
        assert table.to_pylist() == [{"n": 7}], adapter
        assert type(frame).__module__.startswith("polars"), adapter
        assert frame.to_dicts() == [{"n": 7}], adapter


def test_params_bind_in_driver_style(hooks):
    by_position = hooks.sql("lite", "SELECT ? + ?", params=(2, 3))
    by_name = hooks.sql("lite", "SELECT :a * :b", params={"a": 4, "b": 5})
    duck = hooks.sql("duck", "SELECT ?::INTEGER * 2", params=[21])

    assert by_position == [(5,)]
    assert by_name == [(20,)]
    assert duck == [(42,)]


def test_params_keep_injection_as_data(hooks):
    hooks.sql("lite", "CREATE TABLE names (name TEXT)")
    hostile = "x'); DROP TABLE names; --"

    hooks.sql("lite", "INSERT INTO names VALUES (?)", params=(hostile,))

    assert hooks.sql("lite", "SELECT name FROM names") == [(hostile,)]


def test_invalid_return_type_is_rejected(hooks):
    with pytest.raises(Exception, match="invalid return_type 'excel'"):
        hooks.sql("lite", "SELECT 1", return_type="excel")


def test_statement_without_rows_returns_empty(hooks):
    assert hooks.sql("lite", "CREATE TABLE empty (a INTEGER)") == []


def test_failed_query_is_rolled_back(hooks):
    hooks.sql("lite", "CREATE TABLE t (id INTEGER PRIMARY KEY)")
    hooks.sql("lite", "INSERT INTO t VALUES (1)")

    with pytest.raises(sqlite3.IntegrityError):
        hooks.sql("lite", "INSERT INTO t VALUES (2), (1)")

    assert hooks.sql("lite", "SELECT id FROM t") == [(1,)]
    hooks.sql("lite", "INSERT INTO t VALUES (3)")
    assert hooks.sql("lite", "SELECT count(*) FROM t") == [(2,)]


def test_writes_are_committed_for_other_connections(hooks, tmp_path):
    hooks.sql("lite", "CREATE TABLE t (id INTEGER)")
    hooks.sql("lite", "INSERT INTO t VALUES (1)")

    other = sqlite3.connect(tmp_path / "data.sqlite")
    try:
        assert other.execute("SELECT id FROM t").fetchall() == [(1,)]
    finally:
        other.close()


def test_relative_database_path_is_beside_profile(hooks, tmp_path):
    hooks.sql("lite", "CREATE TABLE t (id INTEGER)")

    assert (tmp_path / "data.sqlite").is_file()


def test_connection_is_per_thread(hooks):
    seen: dict[str, object] = {}
    # Threads stay alive until all have connected, so none reuses another's id.
    barrier = threading.Barrier(3)

    def grab(name: str) -> None:
        seen[name] = hooks.get_connection("lite")
        barrier.wait(timeout=10)

    threads = [threading.Thread(target=grab, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    main = hooks.get_connection("lite")

    assert len({id(connection) for connection in seen.values()} | {id(main)}) == 4
    assert hooks.get_connection("lite") is main
    assert hooks.adapter("lite").connects == 4


def test_memory_databases_are_shared_by_threads(hooks):
    hooks.sql("memory", "CREATE TABLE t (id INTEGER)")
    hooks.sql("duck", "CREATE TABLE t (id INTEGER)")
    results: list[object] = []

    def write() -> None:
        hooks.sql("memory", "INSERT INTO t VALUES (1)")
        hooks.sql("duck", "INSERT INTO t VALUES (1)")
        results.append(hooks.sql("memory", "SELECT count(*) FROM t"))

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()

    assert results == [[(1,)]]
    assert hooks.sql("memory", "SELECT count(*) FROM t") == [(1,)]
    assert hooks.sql("duck", "SELECT count(*) FROM t") == [(1,)]


def test_get_cursor_is_new_each_call(hooks):
    first = hooks.get_cursor("lite")
    second = hooks.get_cursor("lite")

    assert first is not second
    assert first.execute("SELECT 1").fetchall() == [(1,)]


def test_nothing_connects_before_first_use(hooks):
    assert hooks._adapters == {}

    hooks.sql("duck", "SELECT 1")

    assert set(hooks._adapters) == {"duck"}


def test_close_closes_every_connection(hooks):
    connection = hooks.get_connection("lite")
    hooks.sql("duck", "SELECT 1")

    hooks.close()

    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")
    assert hooks._adapters == {}
    assert hooks.sql("lite", "SELECT 2") == [(2,)]


def test_unknown_adapter_names_profile(hooks):
    with pytest.raises(AdapterNotConfiguredError) as caught:
        hooks.sql("lit", "SELECT 1")

    assert "profile.yml has no adapter 'lit'" in str(caught.value)
    assert "Did you mean 'lite'?" in str(caught.value)


def test_hooks_without_profile_file_need_no_adapter(tmp_path):
    hooks = Hooks(tmp_path / "profile.yml", "dev", root=tmp_path)

    with pytest.raises(AdapterNotConfiguredError, match="no profile file"):
        hooks.get_connection("warehouse")


def test_unknown_attribute_is_attribute_error(hooks):
    with pytest.raises(AttributeError, match="no adapter in profile.yml"):
        hooks.spark  # noqa: B018


def test_load_hooks_reads_project_profile(tmp_path, monkeypatch):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "profile.yml").write_text(PROFILE)
    (tmp_path / "prism_project.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            PROFILE = "other"
            PROFILE_YML_PATH = Path(__file__).parent / "profile.yml"
            """
        )
    )
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ConfigError, match="no profile named 'other'"):
        load_hooks()
    hooks = load_hooks(overrides={"PROFILE": "dev"})

    assert hooks.sql("duck", "SELECT 3") == [(3,)]
    hooks.close()
