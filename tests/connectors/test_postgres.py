"""PostgreSQL (and DuckDB) end to end through `prism run`, on a live server.

The session's server comes from the `postgres` fixture (tests/connectors/
conftest.py). Each test gets its own database, so `pg_stat_activity` for that
database shows only the sessions Prism opened.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import events, finished_by_task, of_type, prism_env
from tests.connectors.postgres_server import PostgresServer, free_port

JSON = ("--log-format", "json")
PASSWORD_VARIABLE = "PRISM_TEST_PG_PASSWORD"

PROJECT = """\
from pathlib import Path

THREADS = {threads}
PROFILE = "dev"
PROFILE_YML_PATH = Path(__file__).parent / "profile.yml"
"""


def pg_profile(
    server: PostgresServer,
    database: str,
    *,
    adapter_type: str = "postgres",
    autocommit: bool = True,
    extra: str = "",
) -> str:
    """Return a 0.2.x-shaped profile whose adapter `pg` reaches `database`."""
    return f"""\
dev:
  adapters:
    pg:
      type: {adapter_type}
      host: {server.host}
      port: {server.port}
      database: {database}
      user: {server.user}
      password: "{{{{ env('{PASSWORD_VARIABLE}') }}}}"
      autocommit: {str(autocommit).lower()}
    duck:
      type: duckdb
      database: warehouse.duckdb
{extra}"""


def make_pg_project(make_project, profile: str, tasks: dict[str, str], threads=1):
    return make_project(
        {**tasks, "profile.yml": profile},
        prism_project=PROJECT.format(threads=threads),
    )


def pg_env(server: PostgresServer, password: str | None = None) -> dict[str, str]:
    return {PASSWORD_VARIABLE: server.password if password is None else password}


def wait_until_no_sessions(server: PostgresServer, database: str) -> list:
    """Return the sessions left on `database` once they are gone or after 5 s.

    The server ends a backend a moment after its client closed the socket.
    """
    deadline = time.monotonic() + 5
    sessions = server.sessions(database)
    while sessions and time.monotonic() < deadline:
        time.sleep(0.1)
        sessions = server.sessions(database)
    return sessions


ETL_TASKS = {
    "tasks/load.py": """
        from prism.decorators import task

        @task()
        def load(tasks, hooks):
            hooks.sql("pg", "CREATE TABLE orders (id INTEGER, amount NUMERIC(8, 2))")
            for order_id, amount in ((1, 9.5), (2, 20), (3, 30.25)):
                hooks.sql(
                    "pg",
                    "INSERT INTO orders VALUES (%s, %s)",
                    params=(order_id, amount),
                )
            return "loaded"
    """,
    "tasks/copy.py": """
        from prism.decorators import task

        @task()
        def copy(tasks, hooks):
            tasks.ref("load")
            frame = hooks.sql(
                "pg",
                "SELECT id, amount::float AS amount FROM orders ORDER BY id",
                return_type="pandas",
            )
            duck = hooks.get_connection("duck")
            duck.register("frame", frame)
            duck.execute("CREATE TABLE orders AS SELECT * FROM frame")
            return len(frame)
    """,
    "tasks/report.py": """
        import json
        from pathlib import Path

        from prism.decorators import task

        @task()
        def report(tasks, hooks):
            tasks.ref("copy")
            total = hooks.sql("duck", "SELECT sum(amount) FROM orders")[0][0]
            arrow = hooks.sql("pg", "SELECT id FROM orders", return_type="arrow")
            polars = hooks.sql(
                "pg", "SELECT id, amount FROM orders WHERE id > %(min)s",
                return_type="polars", params={"min": 1},
            )
            records = hooks.sql("pg", "SELECT id FROM orders WHERE id = 1",
                                return_type="records")
            Path("report.json").write_text(json.dumps({
                "total": total,
                "arrow_ids": sorted(arrow.column("id").to_pylist()),
                "polars_rows": polars.height,
                "records": records,
            }))
            return total
    """,
}


def test_tasks_read_and_write_postgres_and_duckdb(
    make_project, run_prism, postgres, pg_database
):
    import json

    project = make_pg_project(
        make_project, pg_profile(postgres, pg_database), ETL_TASKS, threads=2
    )

    result = run_prism("run", *JSON, cwd=project, env=pg_env(postgres))

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((project / "report.json").read_text())
    assert report == {
        "total": 59.75,
        "arrow_ids": [1, 2, 3],
        "polars_rows": 2,
        "records": [{"id": 1}],
    }
    assert postgres.query("SELECT count(*) FROM orders", pg_database) == [(3,)]
    assert wait_until_no_sessions(postgres, pg_database) == []


def test_failed_query_then_good_query_same_run(
    make_project, run_prism, postgres, pg_database
):
    tasks = {
        "tasks/first.py": """
            import psycopg2
            from prism.decorators import task

            @task()
            def first(tasks, hooks):
                try:
                    hooks.sql("pg", "SELECT * FROM no_such_table")
                except psycopg2.errors.UndefinedTable:
                    pass
                hooks.sql("pg", "CREATE TABLE seen (id INTEGER)")
                hooks.sql("pg", "INSERT INTO seen VALUES (1)")
                return hooks.sql("pg", "SELECT count(*) FROM seen")[0][0]
        """,
        "tasks/broken.py": """
            from prism.decorators import task

            @task()
            def broken(tasks, hooks):
                tasks.ref("first")
                return hooks.sql("pg", "SELECT 1/0")
        """,
        "tasks/later.py": """
            from prism.decorators import task

            @task()
            def later(tasks, hooks):
                tasks.ref("first")
                hooks.sql("pg", "INSERT INTO seen VALUES (2)")
                return hooks.sql("pg", "SELECT count(*) FROM seen")[0][0]
        """,
    }
    profile = pg_profile(postgres, pg_database, autocommit=False)
    project = make_pg_project(make_project, profile, tasks)

    result = run_prism("run", *JSON, cwd=project, env=pg_env(postgres))

    finished = finished_by_task(events(result.stdout))
    assert result.returncode == 1, result.stdout + result.stderr
    assert finished["first.first"]["status"] == "done"
    assert finished["broken.broken"]["status"] == "failed"
    assert "division by zero" in finished["broken.broken"]["error"]["message"]
    assert finished["later.later"]["status"] == "done"
    assert postgres.query("SELECT id FROM seen ORDER BY id", pg_database) == [
        (1,),
        (2,),
    ]
    assert wait_until_no_sessions(postgres, pg_database) == []


def test_connections_are_per_thread_not_per_task(
    make_project, run_prism, postgres, pg_database
):
    tasks = {
        f"tasks/t{i:02d}.py": f"""
            from prism.decorators import task

            @task()
            def t{i:02d}(tasks, hooks):
                return hooks.sql("pg", "SELECT pg_backend_pid()")[0][0]
        """
        for i in range(20)
    }
    tasks["tasks/collect.py"] = (
        "from prism.decorators import task\n"
        "from pathlib import Path\n\n"
        "@task()\n"
        "def collect(tasks, hooks):\n"
        + "".join(f"    tasks.ref('t{i:02d}')\n" for i in range(20))
        + "    pids = {"
        + ", ".join(f"tasks.ref('t{i:02d}')" for i in range(20))
        + "}\n"
        "    Path('pids.txt').write_text(str(len(pids)))\n"
    )
    project = make_pg_project(
        make_project, pg_profile(postgres, pg_database), tasks, threads=3
    )

    result = run_prism("run", cwd=project, env=pg_env(postgres))

    assert result.returncode == 0, result.stdout + result.stderr
    assert 1 <= int((project / "pids.txt").read_text()) <= 3


def test_unused_unreachable_adapter_does_not_fail(make_project, run_prism, postgres):
    closed_port = free_port()
    extra = f"""\
    unreachable:
      type: postgres
      host: 127.0.0.1
      port: {closed_port}
      database: nothing
      user: nobody
      password: nothing
"""
    tasks = {
        "tasks/a.py": """
            from prism.decorators import task

            @task()
            def a(tasks, hooks):
                return hooks.sql("duck", "SELECT 1")[0][0]
        """
    }
    profile = pg_profile(postgres, "postgres", extra=extra)
    project = make_pg_project(make_project, profile, tasks)

    result = run_prism("run", cwd=project, env=pg_env(postgres))

    assert result.returncode == 0, result.stdout + result.stderr


def test_connect_timeout_is_configurable(make_project, run_prism, postgres):
    """A socket on 127.0.0.1 that accepts connections and never sends a byte."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    port = silent.getsockname()[1]
    extra = f"""\
    silent:
      type: postgres
      host: 127.0.0.1
      port: {port}
      database: nothing
      user: nobody
      password: nothing
      connect_timeout: 2
"""
    tasks = {
        "tasks/a.py": """
            from prism.decorators import task

            @task()
            def a(tasks, hooks):
                return hooks.sql("silent", "SELECT 1")
        """
    }
    project = make_pg_project(
        make_project, pg_profile(postgres, "postgres", extra=extra), tasks
    )

    started = time.monotonic()
    try:
        result = run_prism("run", *JSON, cwd=project, env=pg_env(postgres))
    finally:
        silent.close()
    elapsed = time.monotonic() - started

    error = finished_by_task(events(result.stdout))["a.a"]["error"]
    assert result.returncode == 1
    assert elapsed < 15
    assert "profile.yml: dev.adapters.silent: could not connect" in error["message"]
    assert "timeout" in error["message"]


def test_wrong_password_error_hides_password(
    make_project, run_prism, postgres, pg_database
):
    wrong = "Wr0ng-pa55word-xyz"
    tasks = {
        "tasks/a.py": """
            from prism.decorators import task

            @task()
            def a(tasks, hooks):
                return hooks.sql("pg", "SELECT 1")
        """
    }
    project = make_pg_project(make_project, pg_profile(postgres, pg_database), tasks)

    result = run_prism(
        "run", "--full-tb", *JSON, cwd=project, env=pg_env(postgres, wrong)
    )

    error = finished_by_task(events(result.stdout))["a.a"]["error"]
    assert result.returncode == 1
    assert "password authentication failed" in error["message"]
    assert "profile.yml: dev.adapters.pg" in error["message"]
    assert wrong not in result.stdout + result.stderr
    assert wrong not in (project / "logs.log").read_text()


def test_redshift_type_uses_postgres_protocol(
    make_project, run_prism, postgres, pg_database
):
    tasks = {
        "tasks/a.py": """
            from pathlib import Path
            from prism.decorators import task

            @task()
            def a(tasks, hooks):
                connection = hooks.get_connection("pg")
                Path("kind.txt").write_text(type(connection).__module__)
                return hooks.sql("pg", "SELECT 41 + 1")[0][0]
        """
    }
    profile = pg_profile(postgres, pg_database, adapter_type="redshift")
    project = make_pg_project(make_project, profile, tasks)

    result = run_prism("run", cwd=project, env=pg_env(postgres))

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "kind.txt").read_text().startswith("psycopg2")


def test_sqlalchemy_url_reaches_postgres(
    make_project, run_prism, postgres, pg_database
):
    extra = f"""\
    alchemy:
      type: sqlalchemy
      url: "postgresql+psycopg2://{postgres.user}:{{{{ env('{PASSWORD_VARIABLE}') }}}}@{postgres.host}:{postgres.port}/{pg_database}"
"""  # noqa: E501
    tasks = {
        "tasks/a.py": """
            import pandas
            from pathlib import Path
            from prism.decorators import task

            @task()
            def a(tasks, hooks):
                hooks.sql("alchemy", "CREATE TABLE t (id INTEGER)")
                hooks.sql("alchemy", "INSERT INTO t VALUES (%s), (%s)", params=(1, 2))
                frame = pandas.read_sql("SELECT id FROM t", hooks.get_connection("alchemy"))
                Path("ids.txt").write_text(str(sorted(frame["id"])))
                return hooks.sql("alchemy", "SELECT count(*) FROM t")[0][0]
        """  # noqa: E501
    }
    project = make_pg_project(
        make_project, pg_profile(postgres, pg_database, extra=extra), tasks
    )

    result = run_prism("run", cwd=project, env=pg_env(postgres))

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "ids.txt").read_text() == "[1, 2]"
    assert postgres.password not in result.stdout + result.stderr
    assert wait_until_no_sessions(postgres, pg_database) == []


def test_closed_after_failed_run(make_project, run_prism, postgres, pg_database):
    tasks = {
        "tasks/a.py": """
            from prism.decorators import task

            @task()
            def a(tasks, hooks):
                hooks.sql("pg", "SELECT 1")
                raise RuntimeError("task failed on purpose")
        """
    }
    project = make_pg_project(make_project, pg_profile(postgres, pg_database), tasks)

    result = run_prism("run", cwd=project, env=pg_env(postgres))

    assert result.returncode == 1
    assert wait_until_no_sessions(postgres, pg_database) == []


SLEEP_TASK = """
from prism.decorators import task

@task()
def sleepy(tasks, hooks):
    hooks.sql("pg", "SELECT pg_sleep(60)")
    return "woke"
"""


def interrupt_during_query(project: Path, server: PostgresServer, database: str):
    """Start `prism run`, send SIGINT to its group once pg_sleep runs; return the
    exit code, seconds from the signal to exit, and the output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "prism", "run", *JSON],
        cwd=project,
        env=prism_env(pg_env(server)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(state == "active" for _, _, state in server.sessions(database)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the query never started"
            time.sleep(0.05)
        time.sleep(0.2)
        signalled = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
        return process.returncode, time.monotonic() - signalled, stdout, stderr
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def test_ctrl_c_cancels_query_on_main_thread(make_project, postgres, pg_database):
    project = make_pg_project(
        make_project,
        pg_profile(postgres, pg_database),
        {"tasks/sleepy.py": SLEEP_TASK},
        threads=1,
    )

    code, seconds, stdout, stderr = interrupt_during_query(
        project, postgres, pg_database
    )

    assert code == 130, stdout + stderr
    assert seconds < 10
    assert of_type(events(stdout), "run_finished")[0]["exit_code"] == 130
    assert wait_until_no_sessions(postgres, pg_database) == []


def test_ctrl_c_closes_worker_connections(make_project, postgres, pg_database):
    project = make_pg_project(
        make_project,
        pg_profile(postgres, pg_database),
        {"tasks/sleepy.py": SLEEP_TASK, "tasks/other.py": SLEEP_TASK},
        threads=2,
    )

    code, seconds, stdout, stderr = interrupt_during_query(
        project, postgres, pg_database
    )

    assert code == 130, stdout + stderr
    assert seconds < 10
    assert wait_until_no_sessions(postgres, pg_database) == []


def test_legacy_profile_with_jinja_and_two_profiles(
    make_project, run_prism, postgres, pg_database
):
    profile = f"""\
jinja:
  - "{{% set PG_HOST = '{postgres.host}' %}}"
  - "{{% set PG_PORT = {postgres.port} %}}"

dev:
  adapters:
    postgres_adapter_name_here: # change this!
      type: postgres
      autocommit: True
      host: "{{{{ PG_HOST }}}}"
      port: "{{{{ PG_PORT }}}}"
      database: {pg_database}
      user: {postgres.user}
      password: "{{{{ env('{PASSWORD_VARIABLE}') }}}}"

prod:
  adapters:
    postgres_adapter_name_here:
      type: redshift
      autocommit: False
      host: "{{{{ PG_HOST }}}}"
      port: "{{{{ PG_PORT }}}}"
      database: {pg_database}
      user: {postgres.user}
      password: "{{{{ env('{PASSWORD_VARIABLE}') }}}}"
"""
    tasks = {
        "tasks/a.py": """
            import prism.task

            class A(prism.task.PrismTask):
                def run(self, tasks, hooks):
                    hooks.sql(
                        "postgres_adapter_name_here",
                        "CREATE TABLE IF NOT EXISTS runs (profile TEXT)",
                    )
                    import prism_project
                    hooks.sql(
                        "postgres_adapter_name_here",
                        "INSERT INTO runs VALUES (%s)",
                        params=[prism_project.PROFILE],
                    )
                    return hooks.sql("postgres_adapter_name_here", "SELECT 1")
        """
    }
    project = make_pg_project(make_project, profile, tasks)

    dev = run_prism("run", cwd=project, env=pg_env(postgres))
    prod = run_prism("run", "-v", "PROFILE=prod", cwd=project, env=pg_env(postgres))

    assert dev.returncode == 0, dev.stdout + dev.stderr
    assert prod.returncode == 0, prod.stdout + prod.stderr
    assert postgres.query("SELECT profile FROM runs ORDER BY 1", pg_database) == [
        ("dev",),
        ("prod",),
    ]
