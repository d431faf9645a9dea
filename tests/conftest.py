"""Fixtures and helpers for the end-to-end tests that run `python -m prism`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DEFAULT_PRISM_PROJECT = "THREADS = 1\n"

# Variables that change how Prism renders output. Tests that need one set it.
_OUTPUT_VARIABLES = ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "TERM")

MakeProject = Callable[..., Path]
RunPrism = Callable[..., "subprocess.CompletedProcess[str]"]


def prism_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return a subprocess environment with a wide console and no colour variables."""
    env = {k: v for k, v in os.environ.items() if k not in _OUTPUT_VARIABLES}
    env["COLUMNS"] = "200"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


# No test may reach AWS: boto3 gets fake credentials, no configuration files and
# an endpoint where nothing listens. Tests that talk to moto point
# AWS_ENDPOINT_URL at it.
_OFFLINE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/prism-tests/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/prism-tests/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
}


@pytest.fixture(scope="session", autouse=True)
def offline_aws() -> Iterator[None]:
    """Keep every AWS call of the test session on 127.0.0.1."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        for name, value in _OFFLINE_AWS.items():
            patch.setenv(name, value)
        yield


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """Return a factory that writes a project folder and returns its path."""

    def make(
        files: dict[str, str],
        prism_project: str | None = None,
        name: str = "project",
    ) -> Path:
        root = tmp_path / name
        root.mkdir(parents=True)
        project_text = DEFAULT_PRISM_PROJECT if prism_project is None else prism_project
        (root / "prism_project.py").write_text(textwrap.dedent(project_text))
        for relative_path, text in files.items():
            path = root / relative_path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return root

    return make


@pytest.fixture
def run_prism() -> RunPrism:
    """Return a function that runs `python -m prism ARGS` and returns the result."""

    def run(
        *args: str,
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "prism", *args],
            cwd=cwd,
            env=prism_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    return run


def events(stdout: str) -> list[dict[str, Any]]:
    """Parse JSON-lines output and fail on any line that is not a JSON object."""
    parsed: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"stdout line is not JSON: {line!r}")
        if not isinstance(event, dict):
            pytest.fail(f"stdout line is not a JSON object: {line!r}")
        parsed.append(event)
    return parsed


def of_type(parsed: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    """Return the events of one type, in stream order."""
    return [event for event in parsed if event.get("event") == event_type]


def finished_by_task(parsed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Map each task id to its `task_finished` event."""
    return {event["task"]: event for event in of_type(parsed, "task_finished")}


def flat(text: str) -> str:
    """Collapse runs of whitespace, so wrapped console lines compare as one."""
    return " ".join(text.split())


def ran_tasks(project: Path) -> list[str]:
    """Return the names that `recording_task` bodies wrote, in run order."""
    log = project / "ran.txt"
    return log.read_text().split() if log.exists() else []


def recording_task(cls: str, *refs: str, target: str | None = None) -> str:
    """Return a task module with one class task that records that it ran.

    The task appends its class name to `ran.txt` in the project folder and returns
    its upstream outputs and its own name joined by `+`, so a downstream result
    such as `A+B` shows which values flowed along the graph. With `target`, the
    output is also saved as a `Txt` target at that path.
    """
    decorator = f"    @target(type=Txt, loc={target!r})\n" if target else ""
    upstream = "".join(f"tasks.ref({ref!r}), " for ref in refs)
    return (
        "from prism.decorators import target\n"
        "from prism.target import Txt\n"
        "from prism.task import PrismTask\n"
        "\n"
        "\n"
        f"class {cls}(PrismTask):\n"
        f"{decorator}"
        "    def run(self, tasks, hooks):\n"
        "        with open('ran.txt', 'a') as log:\n"
        f"            log.write('{cls}\\n')\n"
        f"        return '+'.join([{upstream}'{cls}'])\n"
    )


def assert_usage_error(
    result: subprocess.CompletedProcess[str], *fragments: str
) -> None:
    """Check exit 2, an `Error:` line on stderr containing `fragments`, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    error_lines = [
        line for line in result.stderr.splitlines() if line.startswith("Error:")
    ]
    assert error_lines, f"no line starting with 'Error:' on stderr: {result.stderr!r}"
    message = flat(result.stderr)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in stderr: {result.stderr!r}"
    assert "Traceback" not in result.stdout
    assert "Traceback" not in result.stderr
