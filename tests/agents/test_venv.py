"""The venv agent: runs in its own virtual environment under `.prism/agents/`."""

from __future__ import annotations

import importlib.util
import subprocess
import time
from pathlib import Path

from tests.agents.conftest import (
    SECRET,
    SECRET_ENV,
    AppliedProject,
    Result,
    files_containing,
    output_of,
    prism,
    unique_name,
    write_project,
)
from tests.conftest import events, finished_by_task, of_type

AGENT_FILE = "local.venv.yml"
AGENT = "local"

PROJECT_FILES = {
    AGENT_FILE: """
        agent:
          type: venv
          requirements: requirements.txt
          env:
            GREETING: hello-from-env
            MODE: "${PRISM_TEST_UNSET_VARIABLE:-fallback-mode}"
            TOKEN: "${PRISM_TEST_SECRET}"
    """,
    "requirements.txt": "six\n",
    "tasks/hello.py": """
        from prism.decorators import target
        from prism.target import Txt
        from prism.task import PrismTask


        class Hello(PrismTask):
            @target(type=Txt, loc="output/hello.txt")
            def run(self, tasks, hooks):
                print("hello from the agent")
                return "hello"
    """,
    "tasks/broken.py": """
        from prism.task import PrismTask


        class Broken(PrismTask):
            def run(self, tasks, hooks):
                raise RuntimeError("broken on purpose")
    """,
    "tasks/show.py": """
        import os

        import prism_project
        from prism.task import PrismTask


        class Show(PrismTask):
            def run(self, tasks, hooks):
                print("greeting=" + os.environ.get("GREETING", "absent"))
                mode = os.environ.get("MODE", "absent")
                print("mode=" + mode)
                print("mode_upper=" + mode.upper())
                client_only = os.environ.get("PRISM_TEST_CLIENT_ONLY", "absent")
                print("client_only=" + client_only)
                print("color=" + str(getattr(prism_project, "COLOR", "unset")))
                print("limit=" + str(getattr(prism_project, "LIMIT", "unset")))
                return "show"
    """,
    "tasks/imports.py": """
        import importlib.util

        from prism.task import PrismTask


        class Imports(PrismTask):
            def run(self, tasks, hooks):
                for name in ("six", "pytest"):
                    found = importlib.util.find_spec(name) is not None
                    print(name + "=" + ("present" if found else "missing"))
                return "imports"
    """,
    "tasks/slow.py": """
        import time
        from pathlib import Path

        from prism.task import PrismTask


        class Slow(PrismTask):
            def run(self, tasks, hooks):
                Path("slow_started").write_text("yes")
                time.sleep(60)
                return "slow"
    """,
    "tasks/secret.py": """
        import os

        from prism.task import PrismTask


        class Secret(PrismTask):
            def run(self, tasks, hooks):
                print("token=" + os.environ["TOKEN"])
                return "secret"
    """,
}


def run_agent(
    project: AppliedProject, *args: str, env: dict[str, str] | None = None
) -> Result:
    return prism(
        "agent",
        "run",
        "-f",
        str(project.agent_file),
        *args,
        cwd=project.root,
        env={**SECRET_ENV, **(env or {})},
    )


def test_run_prefixes_lines_writes_outputs(venv_project):
    result = run_agent(venv_project, "-t", "hello")

    assert result.returncode == 0, output_of(result)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, output_of(result)
    assert all(line.startswith(f"[{AGENT}] ") for line in lines), result.stdout
    assert f"[{AGENT}] hello from the agent" in lines
    assert (venv_project.root / "output" / "hello.txt").read_text() == "hello"


def test_json_format_reemits_far_events(venv_project):
    result = run_agent(venv_project, "-t", "hello", "--log-format", "json")

    assert result.returncode == 0, output_of(result)
    parsed = events(result.stdout)
    assert of_type(parsed, "run_started")[0]["tasks"] == ["hello.Hello"]
    assert finished_by_task(parsed)["hello.Hello"]["status"] == "done"
    output = of_type(parsed, "task_output")
    assert [event["line"] for event in output] == ["hello from the agent"]
    assert parsed[-1]["event"] == "run_finished"
    assert parsed[-1]["exit_code"] == 0


def test_failing_task_exits_one(venv_project):
    result = run_agent(venv_project, "-t", "broken")

    assert result.returncode == 1, output_of(result)
    assert "broken on purpose" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_env_reaches_task_only(venv_project):
    client_only = {"PRISM_TEST_CLIENT_ONLY": "visible"}

    result = run_agent(venv_project, "-t", "show", env=client_only)

    assert result.returncode == 0, output_of(result)
    assert f"[{AGENT}] greeting=hello-from-env" in result.stdout
    assert f"[{AGENT}] mode_upper=FALLBACK-MODE" in result.stdout
    assert f"[{AGENT}] client_only=absent" in result.stdout


def test_default_env_value_not_masked(venv_project):
    result = run_agent(venv_project, "-t", "show")

    assert result.returncode == 0, output_of(result)
    assert f"[{AGENT}] mode=fallback-mode" in result.stdout


def test_run_flags_reach_far_side(venv_project):
    result = run_agent(
        venv_project,
        "-t",
        "show",
        "-v",
        "COLOR=blue",
        "--context",
        '{"LIMIT": 3}',
        "--log-format",
        "json",
    )

    assert result.returncode == 0, output_of(result)
    parsed = events(result.stdout)
    assert of_type(parsed, "run_started")[0]["tasks"] == ["show.Show"]
    lines = [event["line"] for event in of_type(parsed, "task_output")]
    assert "color=blue" in lines
    assert "limit=3" in lines


def test_reapply_is_fast_noop(venv_project):
    python = venv_project.root / ".prism" / "agents" / AGENT / "venv" / "bin" / "python"
    before = python.lstat().st_mtime_ns
    started = time.monotonic()

    result = prism(
        "agent", "apply", "-f", AGENT_FILE, cwd=venv_project.root, env=SECRET_ENV
    )

    elapsed = time.monotonic() - started
    assert result.returncode == 0, output_of(result)
    assert "up to date" in result.stdout
    assert elapsed < 3, f"a no-op apply took {elapsed:.1f}s"
    assert python.lstat().st_mtime_ns == before


def test_agent_sees_only_its_requirements(venv_project):
    assert importlib.util.find_spec("pytest") is not None

    result = run_agent(venv_project, "-t", "imports")

    assert result.returncode == 0, output_of(result)
    assert f"[{AGENT}] six=present" in result.stdout
    assert f"[{AGENT}] pytest=missing" in result.stdout


def test_status_shows_environment_and_run(venv_project):
    run = run_agent(venv_project, "-t", "hello")
    assert run.returncode == 0, output_of(run)

    result = prism("agent", "status", "-f", AGENT_FILE, cwd=venv_project.root)

    assert result.returncode == 0, output_of(result)
    assert f"Agent {AGENT} (venv): applied" in result.stdout
    venv = venv_project.root / ".prism" / "agents" / AGENT / "venv"
    assert str(venv) in result.stdout
    last_run = [line for line in result.stdout.splitlines() if "last run" in line]
    assert len(last_run) == 1, result.stdout
    assert last_run[0].endswith("exit 0")


def test_list_shows_applied_agent(venv_project):
    result = prism("agent", "list", cwd=venv_project.root)

    assert result.returncode == 0, output_of(result)
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [AGENT, "venv", str(venv_project.agent_file)] in rows


def test_delete_removes_agent_folder(tmp_path, applied_agents):
    project = write_project(
        tmp_path / unique_name("venv"),
        {
            "doomed.yml": "agent:\n  type: venv\n  requirements: requirements.txt\n",
            "requirements.txt": "six\n",
        },
    )
    applied_agents.apply(project, project / "doomed.yml")
    folder = project / ".prism" / "agents" / "doomed"
    assert folder.is_dir()

    result = prism("agent", "delete", "-f", "doomed.yml", cwd=project)

    assert result.returncode == 0, output_of(result)
    assert not folder.exists()
    listing = prism("agent", "list", cwd=project)
    assert "doomed" not in listing.stdout
    status = prism("agent", "status", "-f", "doomed.yml", cwd=project)
    assert "Agent doomed (venv): not applied" in status.stdout


def far_side_processes(project: Path) -> str:
    """Return `pgrep -af` lines of processes run by the project's venv agents."""
    found = subprocess.run(
        ["pgrep", "-af", f"{project}/.prism/agents/"], capture_output=True, text=True
    )
    return found.stdout.strip()


def test_ctrl_c_stops_far_side(venv_project, start_agent):
    marker = venv_project.root / "slow_started"
    marker.unlink(missing_ok=True)
    client = start_agent(
        "agent",
        "run",
        "-f",
        AGENT_FILE,
        "-t",
        "slow",
        cwd=venv_project.root,
        env=SECRET_ENV,
    )
    client.wait_for(marker.exists, "the slow task started", timeout=60)
    assert far_side_processes(venv_project.root), "no far-side process found"

    sent = client.interrupt()
    exit_code = client.finish(timeout=20)

    elapsed = time.monotonic() - sent
    assert exit_code == 130, client.describe()
    assert elapsed < 5, f"the client took {elapsed:.1f}s to stop"
    assert far_side_processes(venv_project.root) == ""


def test_secret_masked_never_stored(venv_project):
    result = run_agent(venv_project, "-t", "secret")

    assert result.returncode == 0, output_of(result)
    assert f"[{AGENT}] token=****" in result.stdout
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    assert SECRET not in (venv_project.root / "logs.log").read_text()
    assert files_containing(venv_project.root / ".prism", SECRET) == []


def test_console_scripts_of_environment_run(venv_project):
    prism_script = venv_project.root / ".prism" / "agents" / AGENT / "venv/bin/prism"
    result = subprocess.run(
        [str(prism_script), "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "0.3" in result.stdout
