"""Fixtures of the connector tests.

SQL connectors: `postgres` starts one PostgreSQL server for the whole session
(see tests/connectors/postgres_server.py); `pg_database` gives each test a new
database on it.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator

import pytest

from tests.connectors.postgres_server import (
    INSTALL_COMMAND,
    PostgresServer,
    find_binaries,
    running_server,
)
from tests.integration import require


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    """Start PostgreSQL once per session, or yield None when it cannot run here."""
    binaries = find_binaries()
    if binaries is None or importlib.util.find_spec("psycopg2") is None:
        yield None
        return
    with running_server(binaries) as server:
        yield server


@pytest.fixture
def postgres(postgres_server: PostgresServer | None) -> PostgresServer:
    """The session's PostgreSQL server; skips (or fails in CI) without one."""
    require(
        find_binaries() is not None,
        f"PostgreSQL is not installed: run `{INSTALL_COMMAND}`",
    )
    require(
        importlib.util.find_spec("psycopg2") is not None,
        "psycopg2 is not installed: pip install -e '.[test]'",
    )
    assert postgres_server is not None
    return postgres_server


@pytest.fixture
def pg_database(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """Create a database named after the test and return its name."""
    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    postgres.create_database(name)
    return name
