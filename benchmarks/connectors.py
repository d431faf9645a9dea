"""Benchmark the SQL connectors against a throwaway PostgreSQL server.

Two parts, both in one run against one server (see benchmarks/README.md):

1. Reading a table of --rows rows (1,000,000 by default) in process:
   `hooks.sql(..., return_type="pandas")` against `pandas.read_sql` on a plain
   psycopg2 connection, and the "arrow" and "polars" return types against
   "pandas". Repeats are interleaved, so drift in machine load hits all alike.
2. `prism run` of a generated project of --tasks tasks that each run one small
   query, with --threads worker threads. Every task records the PostgreSQL
   backend pid it used, so the number of distinct pids is the number of
   connections Prism opened. The same project whose tasks each open their own
   psycopg2 connection is timed alongside, to show what a connection per task costs.

The server is started as in the test suite (tests/connectors/postgres_server.py:
Debian's postgresql, run as the postgres user, on 127.0.0.1 and a free port).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_DIR))

from tests.connectors.postgres_server import (  # noqa: E402
    PostgresServer,
    find_binaries,
    running_server,
)

DATABASE = "bench"
PASSWORD_VARIABLE = "PRISM_BENCH_PG_PASSWORD"
TABLE_SQL = """
CREATE TABLE readings AS
SELECT i AS id,
       random() * 1000 AS value,
       md5(i::text) AS label,
       timestamp '2024-01-01' + i * interval '1 second' AS created_at
FROM generate_series(1, {rows}) AS i
"""
QUERY = "SELECT id, value, label, created_at FROM readings"


def main() -> int:
    args = parse_args()
    binaries = find_binaries()
    if binaries is None:
        message = "PostgreSQL is not installed: apt-get install postgresql"
        print(message, file=sys.stderr)
        return 1
    with running_server(binaries) as server:
        server.create_database(DATABASE)
        print(header(args))
        print(read_benchmark(server, args.rows, args.repeat))
        print(tasks_benchmark(server, args.tasks, args.threads, args.repeat))
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--threads", type=int, default=4)
    return parser.parse_args()


def header(args: argparse.Namespace) -> str:
    import pandas
    import polars
    import psycopg2
    import pyarrow

    return (
        f"# Connectors benchmark\n\n"
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"psycopg2 {psycopg2.__version__.split()[0]}, pandas {pandas.__version__}, "
        f"pyarrow {pyarrow.__version__}, polars {polars.__version__}; "
        f"--rows {args.rows} --repeat {args.repeat} --tasks {args.tasks} "
        f"--threads {args.threads}\n"
    )


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def read_benchmark(server: PostgresServer, rows: int, repeat: int) -> str:
    import pandas
    import psycopg2

    from prism.connectors.hooks import Hooks

    server.query(TABLE_SQL.format(rows=rows), DATABASE)
    server.query("VACUUM ANALYZE readings", DATABASE)
    folder = Path(tempfile.mkdtemp(prefix="prism-bench-"))
    (folder / "profile.yml").write_text(profile_text(server, server.password))
    hooks = Hooks(folder / "profile.yml", "bench", root=folder)
    hooks.get_connection("pg")
    plain = psycopg2.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        dbname=DATABASE,
    )
    times: dict[str, list[float]] = {
        "pandas.read_sql": [],
        "pandas": [],
        "arrow": [],
        "polars": [],
    }
    try:
        for _ in range(repeat):
            with warnings.catch_warnings():
                # pandas warns that it supports only SQLAlchemy connectables.
                warnings.simplefilter("ignore", UserWarning)
                seconds, frame = timed(lambda: pandas.read_sql(QUERY, plain))
            check_rows(frame, rows, "pandas.read_sql")
            times["pandas.read_sql"].append(seconds)
            for kind in ("pandas", "arrow", "polars"):
                seconds, result = timed(
                    lambda kind=kind: hooks.sql("pg", QUERY, return_type=kind)
                )
                check_rows(result, rows, kind)
                times[kind].append(seconds)
            del frame, result
    finally:
        plain.close()
        hooks.close()
        shutil.rmtree(folder, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    lines = [
        f"## Reading {rows:,} rows (4 columns: int, float, text, timestamp)\n",
        "| path | median s | best s | ratio |",
        "|---|---|---|---|",
    ]
    ratios = {
        "pandas.read_sql": "1.00 (baseline)",
        "pandas": f"{median['pandas'] / median['pandas.read_sql']:.2f} of read_sql",
        "arrow": f"{median['arrow'] / median['pandas']:.2f} of pandas",
        "polars": f"{median['polars'] / median['pandas']:.2f} of pandas",
    }
    labels = {
        "pandas.read_sql": "`pandas.read_sql` on a plain psycopg2 connection",
        "pandas": '`hooks.sql(..., return_type="pandas")`',
        "arrow": '`hooks.sql(..., return_type="arrow")`',
        "polars": '`hooks.sql(..., return_type="polars")`',
    }
    for name, values in times.items():
        lines.append(
            f"| {labels[name]} | {median[name]:.2f} | {min(values):.2f} | "
            f"{ratios[name]} |"
        )
    return "\n".join(lines) + "\n"


def check_rows(result: Any, rows: int, name: str) -> None:
    count = result.num_rows if hasattr(result, "num_rows") else len(result)
    if count != rows:
        raise SystemExit(f"{name} returned {count} rows, expected {rows}")


def profile_text(server: PostgresServer, password: str) -> str:
    return (
        "bench:\n  adapters:\n    pg:\n      type: postgres\n"
        f"      host: {server.host}\n      port: {server.port}\n"
        f"      database: {DATABASE}\n      user: {server.user}\n"
        f'      password: "{password}"\n'
    )


HOOKS_TASK = """\
from prism.decorators import task


@task()
def task_{index:03d}(tasks, hooks):
    return hooks.sql("pg", "SELECT pg_backend_pid()")[0][0]
"""

OWN_CONNECTION_TASK = """\
import os

import psycopg2
from prism.decorators import task


@task()
def task_{index:03d}(tasks, hooks):
    connection = psycopg2.connect(
        host="{host}", port={port}, user="{user}", dbname="{database}",
        password=os.environ["{variable}"],
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]
    finally:
        connection.close()
"""

COLLECT_TASK = """\
from pathlib import Path

from prism.decorators import task


@task()
def collect(tasks, hooks):
{refs}
    pids = {{{values}}}
    Path("pids.txt").write_text(str(len(pids)))
"""


def make_project(
    folder: Path, server: PostgresServer, tasks: int, threads: int, own: bool
) -> Path:
    root = folder / ("own-connection" if own else "hooks")
    (root / "tasks").mkdir(parents=True)
    (root / "prism_project.py").write_text(f"THREADS = {threads}\nPROFILE = 'bench'\n")
    (root / "profile.yml").write_text(
        profile_text(server, f"{{{{ env('{PASSWORD_VARIABLE}') }}}}")
    )
    template = OWN_CONNECTION_TASK if own else HOOKS_TASK
    for index in range(tasks):
        (root / "tasks" / f"task_{index:03d}.py").write_text(
            template.format(
                index=index,
                host=server.host,
                port=server.port,
                user=server.user,
                database=DATABASE,
                variable=PASSWORD_VARIABLE,
            )
        )
    names = [f"task_{index:03d}" for index in range(tasks)]
    (root / "tasks" / "collect.py").write_text(
        COLLECT_TASK.format(
            refs="\n".join(f"    tasks.ref({name!r})" for name in names),
            values=", ".join(f"tasks.ref({name!r})" for name in names),
        )
    )
    return root


def run_project(root: Path, server: PostgresServer) -> tuple[float, int]:
    env = {**os.environ, PASSWORD_VARIABLE: server.password}
    started = time.perf_counter()
    result = subprocess.run(
        [str(REPO_DIR / ".venv" / "bin" / "prism"), "run"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"prism run failed in {root}:\n{result.stdout}{result.stderr}")
    return seconds, int((root / "pids.txt").read_text())


def tasks_benchmark(
    server: PostgresServer, tasks: int, threads: int, repeat: int
) -> str:
    folder = Path(tempfile.mkdtemp(prefix="prism-bench-"))
    projects = {
        "hooks": make_project(folder, server, tasks, threads, own=False),
        "own": make_project(folder, server, tasks, threads, own=True),
    }
    times: dict[str, list[float]] = {"hooks": [], "own": []}
    connections: dict[str, set[int]] = {"hooks": set(), "own": set()}
    try:
        for root in projects.values():
            run_project(root, server)
        for _ in range(repeat):
            for name, root in projects.items():
                seconds, count = run_project(root, server)
                times[name].append(seconds)
                connections[name].add(count)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    labels = {
        "hooks": "`hooks.sql` (Prism's connection per thread)",
        "own": "each task opens its own psycopg2 connection",
    }
    lines = [
        f"## `prism run`: {tasks} tasks, one small query each, THREADS = {threads}\n",
        "| tasks use | connections opened | median s | best s |",
        "|---|---|---|---|",
    ]
    for name in ("hooks", "own"):
        counts = "/".join(str(count) for count in sorted(connections[name]))
        lines.append(
            f"| {labels[name]} | {counts} | {statistics.median(times[name]):.2f} | "
            f"{min(times[name]):.2f} |"
        )
    lines.append(
        f"\nConnections opened = distinct backend pids seen by the {tasks} tasks; "
        f"with hooks it is at most the number of worker threads ({threads}). "
        "Times are whole `prism run` processes, start-up included."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
