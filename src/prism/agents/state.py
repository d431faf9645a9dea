"""The project's agent state: `.prism/state.db`, a small SQLite database.

It records each agent, the resources it created (a venv folder, an image), its
runs, and agent-file settings that passed validation. It never stores `env`
values.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AgentRecord", "Resource", "RunRecord", "State"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    file TEXT NOT NULL,
    fingerprint TEXT,
    applied_at REAL
);
CREATE TABLE IF NOT EXISTS resources (
    agent TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    PRIMARY KEY (agent, kind, id)
);
CREATE TABLE IF NOT EXISTS validated_settings (
    digest TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    exit_code INTEGER,
    command TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class AgentRecord:
    """An agent the project has applied."""

    name: str
    type: str
    file: str
    fingerprint: str | None
    applied_at: float | None


@dataclass(frozen=True)
class Resource:
    """Something an agent created, such as a virtual environment or an image."""

    agent: str
    kind: str
    id: str
    details: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class RunRecord:
    """One `prism agent run`."""

    id: int
    agent: str
    started_at: float
    finished_at: float | None
    exit_code: int | None
    command: str


class State:
    """Access to `.prism/state.db` of one project."""

    def __init__(self, project_root: Path) -> None:
        self.folder = project_root / ".prism"
        self.path = self.folder / "state.db"
        self._connection: sqlite3.Connection | None = None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per State, opened on first use; each block is one
        # transaction. WAL keeps concurrent readers (status during a run) cheap.
        if self._connection is None:
            self.folder.mkdir(exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            self._connection = connection
        with self._connection:
            yield self._connection

    def agents(self) -> list[AgentRecord]:
        if not self.path.exists():
            return []
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, type, file, fingerprint, applied_at FROM agents "
                "ORDER BY name"
            ).fetchall()
        return [AgentRecord(*row) for row in rows]

    def agent(self, name: str) -> AgentRecord | None:
        return next((record for record in self.agents() if record.name == name), None)

    def save_agent(self, name: str, type_: str, file: str, fingerprint: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO agents (name, type, file, fingerprint, applied_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "type=excluded.type, file=excluded.file, "
                "fingerprint=excluded.fingerprint, applied_at=excluded.applied_at",
                (name, type_, file, fingerprint, time.time()),
            )

    def forget_agent(self, name: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM agents WHERE name = ?", (name,))
            db.execute("DELETE FROM resources WHERE agent = ?", (name,))

    def add_resource(
        self, agent: str, kind: str, id_: str, details: dict[str, Any] | None = None
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO resources (agent, kind, id, details, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (agent, kind, id_, json.dumps(details or {}), time.time()),
            )

    def remove_resource(self, agent: str, kind: str, id_: str) -> None:
        with self._connect() as db:
            db.execute(
                "DELETE FROM resources WHERE agent = ? AND kind = ? AND id = ?",
                (agent, kind, id_),
            )

    def resources(self, agent: str) -> list[Resource]:
        if not self.path.exists():
            return []
        with self._connect() as db:
            rows = db.execute(
                "SELECT agent, kind, id, details, created_at FROM resources "
                "WHERE agent = ? ORDER BY created_at",
                (agent,),
            ).fetchall()
        return [
            Resource(row[0], row[1], row[2], json.loads(row[3]), row[4]) for row in rows
        ]

    def validated_settings(self, digest: str) -> dict[str, Any] | None:
        """Return the settings stored for an agent file's digest, if any."""
        if not self.path.exists():
            return None
        with self._connect() as db:
            row = db.execute(
                "SELECT settings FROM validated_settings WHERE digest = ?", (digest,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def save_validated_settings(self, digest: str, settings: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO validated_settings (digest, settings) "
                "VALUES (?, ?)",
                (digest, json.dumps(settings)),
            )

    def start_run(self, agent: str, command: str) -> int:
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO runs (agent, started_at, command) VALUES (?, ?, ?)",
                (agent, time.time(), command),
            )
            return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, exit_code: int) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ? WHERE id = ?",
                (time.time(), exit_code, run_id),
            )

    def last_run(self, agent: str) -> RunRecord | None:
        if not self.path.exists():
            return None
        with self._connect() as db:
            row = db.execute(
                "SELECT id, agent, started_at, finished_at, exit_code, command "
                "FROM runs WHERE agent = ? ORDER BY id DESC LIMIT 1",
                (agent,),
            ).fetchone()
        return RunRecord(*row) if row else None
