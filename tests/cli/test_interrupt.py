"""End-to-end tests of Ctrl-C (SIGINT) during `prism run`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import events, finished_by_task, of_type, prism_env

SLOW_TASK = """\
import time
from pathlib import Path

from prism.task import PrismTask


class Slow(PrismTask):
    def run(self, tasks, hooks):
        Path("slow_started").write_text("yes")
        time.sleep(30)
        return "slow"
"""

NEXT_TASK = """\
from pathlib import Path

from prism.task import PrismTask


class Next(PrismTask):
    def run(self, tasks, hooks):
        Path("next_started").write_text("yes")
        return tasks.ref("slow")
"""


def start_prism(project: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "prism", "run", *args],
        cwd=project,
        env=prism_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_file(path: Path, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "prism exited before the slow task started"
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.05)


def interrupt(process: subprocess.Popen[str], project: Path) -> tuple[int, str, str]:
    """Send SIGINT once the slow task runs; return exit code, stdout and stderr."""
    try:
        wait_for_file(project / "slow_started", process, timeout=30)
        time.sleep(0.3)
        os.kill(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout, stderr


def slow_project(make_project, threads: int = 1) -> Path:
    return make_project(
        {"tasks/slow.py": SLOW_TASK, "tasks/next.py": NEXT_TASK},
        prism_project=f"THREADS = {threads}\n",
    )


def test_sigint_exits_130_quickly(make_project):
    project = slow_project(make_project)
    process = start_prism(project)

    started = time.monotonic()
    returncode, stdout, stderr = interrupt(process, project)

    assert returncode == 130, stdout + stderr
    assert time.monotonic() - started < 10


def test_sigint_prevents_next_task(make_project):
    project = slow_project(make_project)
    process = start_prism(project)

    interrupt(process, project)

    assert not (project / "next_started").exists()


def test_sigint_in_worker_thread_exits_130(make_project):
    project = slow_project(make_project, threads=2)
    process = start_prism(project)

    returncode, stdout, stderr = interrupt(process, project)

    assert returncode == 130, stdout + stderr
    assert not (project / "next_started").exists()


def test_sigint_hides_traceback(make_project):
    project = slow_project(make_project)
    process = start_prism(project)

    returncode, stdout, stderr = interrupt(process, project)

    assert returncode == 130
    assert "Traceback" not in stdout + stderr


def test_sigint_reported_in_json_events(make_project):
    project = slow_project(make_project)
    process = start_prism(project, "--log-format", "json")

    returncode, stdout, _ = interrupt(process, project)

    assert returncode == 130
    parsed = events(stdout)
    assert "next.Next" not in [e["task"] for e in of_type(parsed, "task_started")]
    assert finished_by_task(parsed)["slow.Slow"]["status"] == "interrupted"
    assert parsed[-1]["event"] == "run_finished"
    assert parsed[-1]["exit_code"] == 130
