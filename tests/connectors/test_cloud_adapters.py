"""Snowflake, BigQuery, Trino and Presto adapters without their services.

No server for these can run here, so each test replaces the driver's own connect
function (a third-party function, never Prism's code) with a fake that records
its arguments and returns a fake DB-API connection. What is tested: the settings,
the arguments given to the driver, the SQL path, and error messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prism.connectors.base import ConnectionFailedError
from prism.connectors.hooks import Hooks
from prism.errors import ConfigError

PASSWORD = "cl0ud-Pa55word-zz"


class FakeCursor:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.description: list[tuple[str, ...]] | None = None
        self.closed = False

    def execute(self, query: str, params: Any = None) -> None:
        self.connection.queries.append((query, params))
        self.description = [("answer",)]

    def fetchall(self) -> list[tuple[int]]:
        return [(42,)]

    def fetch_pandas_all(self) -> str:
        return "pandas from snowflake"

    def close(self) -> None:
        self.closed = True


class FakeConnection:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.queries: list[tuple[str, Any]] = []
        self.closed = False
        self.rollbacks = 0

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        self.closed = True


class Recorder:
    """A stand-in for a driver's connect function."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.connections: list[FakeConnection] = []
        self.error = error

    def __call__(self, *args: Any, **kwargs: Any) -> FakeConnection:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        connection = FakeConnection(**kwargs)
        self.connections.append(connection)
        return connection


def make_hooks(tmp_path: Path, adapter: str) -> Hooks:
    path = tmp_path / "profile.yml"
    path.write_text("dev:\n  adapters:\n    remote:\n" + adapter)
    return Hooks(path, "dev", root=tmp_path)


SNOWFLAKE = f"""\
      type: snowflake
      account: acme-xy12345
      user: loader
      password: {PASSWORD}
      role: transformer
      warehouse: compute_wh
      database: analytics
      schema: public
"""


def test_snowflake_connect_arguments(tmp_path, monkeypatch):
    connector = pytest.importorskip("snowflake.connector")
    recorder = Recorder()
    monkeypatch.setattr(connector, "connect", recorder)
    hooks = make_hooks(tmp_path, SNOWFLAKE)

    rows = hooks.sql("remote", "SELECT 42")
    frame = hooks.sql("remote", "SELECT 42", return_type="pandas")
    hooks.close()

    assert rows == [(42,)]
    assert frame == "pandas from snowflake"
    assert recorder.calls == [
        {
            "account": "acme-xy12345",
            "user": "loader",
            "password": PASSWORD,
            "database": "analytics",
            "schema": "public",
            "warehouse": "compute_wh",
            "role": "transformer",
            "login_timeout": 10.0,
        }
    ]
    assert recorder.connections[0].closed


def test_snowflake_missing_key_named(tmp_path):
    pytest.importorskip("snowflake.connector")

    with pytest.raises(ConfigError, match=r"dev\.adapters\.remote\.schema: missing"):
        make_hooks(tmp_path, SNOWFLAKE.replace("      schema: public\n", ""))


def test_snowflake_login_error_hides_password(tmp_path, monkeypatch):
    connector = pytest.importorskip("snowflake.connector")
    error = connector.errors.DatabaseError(
        f"250001: Incorrect username or password was specified ({PASSWORD})"
    )
    monkeypatch.setattr(connector, "connect", Recorder(error))
    hooks = make_hooks(tmp_path, SNOWFLAKE)

    with pytest.raises(ConnectionFailedError) as caught:
        hooks.sql("remote", "SELECT 1")

    assert "profile.yml: dev.adapters.remote: could not connect" in str(caught.value)
    assert "Incorrect username or password" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None


TRINO = f"""\
      type: trino
      host: 127.0.0.1
      port: 8080
      http_scheme: http
      user: analyst
      password: {PASSWORD}
      catalog: hive
      schema: sales
      connect_timeout: 3
"""


@pytest.mark.parametrize(
    ("adapter_type", "module_name"), [("trino", "trino"), ("presto", "prestodb")]
)
def test_http_scheme_is_honoured(tmp_path, monkeypatch, adapter_type, module_name):
    driver = pytest.importorskip(module_name)
    import importlib

    dbapi = importlib.import_module(f"{module_name}.dbapi")
    recorder = Recorder()
    monkeypatch.setattr(dbapi, "connect", recorder)
    hooks = make_hooks(tmp_path, TRINO.replace("type: trino", f"type: {adapter_type}"))

    rows = hooks.sql("remote", "SELECT 42")
    hooks.close()

    call = recorder.calls[0]
    assert rows == [(42,)]
    assert call["http_scheme"] == "http"
    assert call["host"] == "127.0.0.1"
    assert call["port"] == 8080
    assert call["user"] == "analyst"
    assert call["catalog"] == "hive"
    assert call["schema"] == "sales"
    assert call["request_timeout"] == 3.0
    assert isinstance(call["auth"], driver.auth.BasicAuthentication)


@pytest.mark.parametrize("adapter_type", ["trino", "presto"])
def test_http_scheme_defaults_to_https(tmp_path, monkeypatch, adapter_type):
    module_name = "trino" if adapter_type == "trino" else "prestodb"
    pytest.importorskip(module_name)
    import importlib

    dbapi = importlib.import_module(f"{module_name}.dbapi")
    recorder = Recorder()
    monkeypatch.setattr(dbapi, "connect", recorder)
    adapter = (
        TRINO.replace("type: trino", f"type: {adapter_type}")
        .replace("      http_scheme: http\n", "")
        .replace(f"      password: {PASSWORD}\n", "")
    )
    hooks = make_hooks(tmp_path, adapter)

    hooks.sql("remote", "SELECT 1")
    hooks.close()

    assert recorder.calls[0]["http_scheme"] == "https"
    assert recorder.calls[0]["auth"] is None


def test_trino_schema_needs_catalog(tmp_path):
    pytest.importorskip("trino")

    with pytest.raises(ConfigError, match="schema is set but catalog is not"):
        make_hooks(tmp_path, TRINO.replace("      catalog: hive\n", ""))


def test_trino_bad_scheme_rejected(tmp_path):
    pytest.importorskip("trino")

    with pytest.raises(ConfigError, match=r"dev\.adapters\.remote\.http_scheme"):
        make_hooks(tmp_path, TRINO.replace("http_scheme: http", "http_scheme: ftp"))


class FakeJob:
    def __init__(self, query: str) -> None:
        self.query = query

    def result(self) -> FakeJob:
        return self

    def to_dataframe(self) -> str:
        return f"frame of {self.query}"

    def to_arrow(self) -> str:
        return f"arrow of {self.query}"


class FakeClient:
    instances: list[FakeClient] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.closed = False
        FakeClient.instances.append(self)

    def query(self, query: str, timeout: float | None = None) -> FakeJob:
        self.timeout = timeout
        return FakeJob(query)

    def close(self) -> None:
        self.closed = True


class FakeCredentials:
    project_id = "key-project"

    @classmethod
    def from_service_account_file(cls, path: str) -> FakeCredentials:
        cls.path = path
        return cls()


def test_bigquery_client_from_key_file(tmp_path, monkeypatch):
    bigquery = pytest.importorskip("google.cloud.bigquery")
    from google.oauth2 import service_account

    FakeClient.instances = []
    monkeypatch.setattr(bigquery, "Client", FakeClient)
    monkeypatch.setattr(service_account, "Credentials", FakeCredentials)
    hooks = make_hooks(tmp_path, "      type: bigquery\n      creds: keys/sa.json\n")

    client = hooks.get_connection("remote")
    frame = hooks.sql("remote", "SELECT 1", return_type="pandas")
    table = hooks.sql("remote", "SELECT 2", return_type="arrow")
    hooks.close()

    assert client is FakeClient.instances[0]
    assert client.kwargs["project"] == "key-project"
    assert isinstance(client.kwargs["credentials"], FakeCredentials)
    assert FakeCredentials.path == str(tmp_path / "keys" / "sa.json")
    assert frame == "frame of SELECT 1"
    assert table == "arrow of SELECT 2"
    assert client.closed


def test_bigquery_missing_key_file_named(tmp_path):
    pytest.importorskip("google.cloud.bigquery")
    hooks = make_hooks(tmp_path, "      type: bigquery\n      creds: missing.json\n")

    with pytest.raises(ConnectionFailedError) as caught:
        hooks.get_connection("remote")

    assert "profile.yml: dev.adapters.remote.creds" in str(caught.value)
    assert "missing.json" in str(caught.value)
