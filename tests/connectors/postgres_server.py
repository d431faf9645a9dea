"""A throwaway PostgreSQL server for the connector tests, from Debian's package.

`initdb` and `pg_ctl` run as the `postgres` user (through `runuser` when the tests
run as root). The server listens on 127.0.0.1 at a free port and on a socket in a
temporary folder, and is stopped by its process id.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"
PASSWORD = "pg-test-S3cret-9f41"
INSTALL_COMMAND = "apt-get install -y postgresql"
PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and how to log in as the superuser."""

    host: str
    port: int
    socket_dir: Path
    user: str
    password: str
    pid: int

    def connect(self, database: str = "postgres", **kwargs: Any) -> Any:
        """Return a psycopg2 connection in autocommit mode."""
        import psycopg2

        connection = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            **kwargs,
        )
        connection.autocommit = True
        return connection

    def query(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run `sql` on a fresh connection and return its rows."""
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def create_database(self, name: str) -> None:
        """Create the database `name`, dropping an older one of that name first."""
        self.query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.query(f'CREATE DATABASE "{name}"')

    def sessions(self, database: str) -> list[tuple[Any, ...]]:
        """Return (pid, application_name, state) of each session on `database`."""
        return self.query(
            "SELECT pid, application_name, state FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )


def find_binaries() -> Path | None:
    """Return the bin folder of the newest installed PostgreSQL, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_server(binaries: Path) -> Iterator[PostgresServer]:
    """Start a server in a temporary folder; stop it and remove the folder after."""
    folder = Path(tempfile.mkdtemp(prefix="prism-postgres-"))
    data = folder / "data"
    sockets = folder / "sockets"
    sockets.mkdir()
    password_file = folder / "password"
    password_file.write_text(PASSWORD + "\n")
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(folder, SUPERUSER)
        shutil.chown(sockets, SUPERUSER)
        shutil.chown(password_file, SUPERUSER)
    pid = 0
    try:
        _run(
            binaries / "initdb",
            "-D", str(data),
            "-U", SUPERUSER,
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--no-sync",
            as_root=as_root,
        )  # fmt: skip
        port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        with _adopting_orphans():
            _run(
                binaries / "pg_ctl",
                "-D", str(data),
                "-l", str(folder / "server.log"),
                "-o", options,
                "-w", "-t", "60",
                "start",
                as_root=as_root,
            )  # fmt: skip
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield PostgresServer(
            host="127.0.0.1",
            port=port,
            socket_dir=sockets,
            user=SUPERUSER,
            password=PASSWORD,
            pid=pid,
        )
    finally:
        if pid:
            _stop(pid)
        shutil.rmtree(folder, ignore_errors=True)


def _run(program: Path, *args: str, as_root: bool) -> None:
    command = [str(program), *args]
    if as_root:
        command = ["runuser", "-u", SUPERUSER, "--", *command]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd="/"
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{program.name} failed ({result.returncode}): "
            f"{result.stdout}{result.stderr}"
        )


@contextlib.contextmanager
def _adopting_orphans() -> Iterator[None]:
    # pg_ctl starts the server in the background and exits. As a "child
    # subreaper" (Linux prctl) this process becomes the server's parent, so it
    # can reap the server after stopping it instead of leaving a zombie behind
    # where PID 1 does not reap.
    libc = _libc()
    if libc is not None:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        if libc is not None:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _libc() -> Any:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def _stop(pid: int) -> None:
    # SIGINT is PostgreSQL's "fast" shutdown: sessions are ended, nothing waits.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _alive(pid: int) -> bool:
    # The server is not our child, so once it exits it may stay a zombie until
    # PID 1 reaps it; a zombie counts as stopped.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
