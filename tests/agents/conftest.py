"""Fixtures for the agent tests: projects, agent runs, and cleaning up agents.

Agents are slow to apply, so each test module applies its shared agent once, and
every agent a test applies is deleted with `prism agent delete` when it is done.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEFAULT_PRISM_PROJECT, prism_env
from tests.integration import require_test_image

# Printed by tasks. The client must show it as `****` and never store it.
SECRET = "pr1sm-s3cret-7f3a9c"
SECRET_ENV = {"PRISM_TEST_SECRET": SECRET}

Result = subprocess.CompletedProcess[str]

# Two tasks: `extract` prints the TOKEN variable, `total` writes output/total.txt.
TOKEN_PROJECT = {
    "tasks/extract.py": """\
        import os
        import prism.target
        from prism.decorators import target, task


        @task(targets=[target(type=prism.target.JSON, loc="output/rows.json")])
        def extract(tasks, hooks):
            print("token", os.environ.get("TOKEN"))
            return [1, 2, 3]
    """,
    "tasks/total.py": """\
        import prism.target
        from prism.decorators import target, task


        @task(targets=[target(type=prism.target.Txt, loc="output/total.txt")])
        def total(tasks, hooks):
            return str(sum(tasks.ref("extract")))
    """,
    ".gitignore": "output/\n",
}


@pytest.fixture(scope="session")
def xdg_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a cache folder for the session, so wheelhouses build once per run."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(scope="package", autouse=True)
def use_session_cache(xdg_cache_home: Path) -> Iterator[None]:
    """Set `XDG_CACHE_HOME` for every Prism the agent tests start, and only them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(xdg_cache_home))
        yield


def unique_name(prefix: str) -> str:
    """Return `prefix` plus random hex, a project name no other run shares."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write a project at `root` with `files` (dedented) and return `root`."""
    root.mkdir(parents=True)
    (root / "prism_project.py").write_text(DEFAULT_PRISM_PROJECT)
    for relative_path, text in files.items():
        path = root / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def prism(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> Result:
    """Run `python -m prism ARGS` in `cwd` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "prism", *args],
        cwd=cwd,
        env=prism_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def output_of(result: Result) -> str:
    """Return the exit code, stdout and stderr of `result`, for assert messages."""
    return (
        f"exit {result.returncode}\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}"
    )


class AgentProcess:
    """A `prism agent` command running in the background, its output collected."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prism", *args],
            cwd=cwd,
            env=prism_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Its own session, so SIGINT reaches the client only, as from a terminal
            # where the client is the foreground process.
            start_new_session=True,
        )
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=_collect, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.process.stdout, self._stdout),
                (self.process.stderr, self._stderr),
            )
        ]
        for reader in self._readers:
            reader.start()

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def describe(self) -> str:
        return (
            f"exit {self.process.returncode}\n--- stdout\n{self.stdout}\n"
            f"--- stderr\n{self.stderr}"
        )

    def wait_for(
        self, condition: Callable[[], bool], what: str, timeout: float
    ) -> None:
        """Wait until `condition` is true; fail if the command ends or times out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"the command ended before {what}:\n{self.describe()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not happen in {timeout}s:\n{self.describe()}")
            time.sleep(0.05)

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        self.wait_for(lambda: text in self.stdout, f"{text!r} on stdout", timeout)

    def interrupt(self) -> float:
        """Send SIGINT as Ctrl-C does, and return the time it was sent."""
        os.kill(self.process.pid, signal.SIGINT)
        return time.monotonic()

    def finish(self, timeout: float) -> int:
        """Wait for the command to end and return its exit code, or kill it and fail."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"the command did not end within {timeout}s:\n{self.describe()}"
            )
        for reader in self._readers:
            reader.join(timeout=5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _collect(stream: Any, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


@pytest.fixture
def start_agent() -> Iterator[Callable[..., AgentProcess]]:
    """Return a function that starts `prism ARGS` in the background."""
    started: list[AgentProcess] = []

    def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> AgentProcess:
        process = AgentProcess(list(args), cwd, env or {})
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def leftover_containers(client: Any, project: Path) -> list[Any]:
    """Return the run containers (label prism.run=true) of `project` that exist."""
    prefix = f"{project.name}-"
    return [
        container
        for container in client.containers.list(
            all=True, filters={"label": "prism.run=true"}
        )
        if container.labels.get("prism.project", "").startswith(prefix)
    ]


def agent_images(client: Any, project: Path, agent: str) -> list[Any]:
    """Return the images labelled with `agent` and the project's label.

    The project label starts with the project folder's name, and test projects
    have unique names, so no other project's images match.
    """
    prefix = f"{project.name}-"
    return [
        image
        for image in client.images.list(filters={"label": f"prism.agent={agent}"})
        if image.labels.get("prism.project", "").startswith(prefix)
    ]


@dataclass
class AppliedAgents:
    """Agents applied during a test or module, deleted again by `cleanup`."""

    docker: Any = None
    applied: list[tuple[Path, Path]] = field(default_factory=list)

    def apply(
        self, project: Path, agent_file: Path, env: dict[str, str] | None = None
    ) -> Result:
        """Run `prism agent apply`, with SECRET_ENV set, and fail unless it exits 0."""
        self.applied.append((project, agent_file))
        result = prism(
            "agent",
            "apply",
            "-f",
            str(agent_file),
            cwd=project,
            env={**SECRET_ENV, **(env or {})},
        )
        assert result.returncode == 0, output_of(result)
        return result

    def cleanup(self) -> None:
        problems: list[str] = []
        for project, agent_file in self.applied:
            result = prism("agent", "delete", "-f", str(agent_file), cwd=project)
            if result.returncode != 0:
                problems.append(f"delete of {agent_file} failed: {output_of(result)}")
        if self.docker is not None:
            for project in {project for project, _ in self.applied}:
                left = leftover_containers(self.docker, project)
                if left:
                    names = ", ".join(container.name for container in left)
                    problems.append(f"run containers of {project} left: {names}")
                    for container in left:
                        container.remove(force=True)
        self.applied.clear()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def applied_agents() -> Iterator[AppliedAgents]:
    """Return a registry of agents a test applies, deleted when the test ends."""
    agents = AppliedAgents()
    yield agents
    agents.cleanup()


def files_containing(folder: Path, text: str) -> list[Path]:
    """Return the files under `folder` whose bytes contain `text`."""
    needle = text.encode()
    return [
        path
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes()
    ]


@dataclass(frozen=True)
class AppliedProject:
    """A project whose agent in `agent_file` is applied, shared by a test module."""

    root: Path
    agent_file: Path
    agents: AppliedAgents

    @property
    def docker(self) -> Any:
        return self.agents.docker


def _applied_project(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    prefix: str,
    docker: Any = None,
) -> Iterator[AppliedProject]:
    # The test module provides PROJECT_FILES and AGENT_FILE, one of those files.
    files: dict[str, str] = request.module.PROJECT_FILES
    root = write_project(tmp_path_factory.mktemp(prefix) / unique_name(prefix), files)
    agents = AppliedAgents(docker=docker)
    try:
        agent_file = root / request.module.AGENT_FILE
        agents.apply(root, agent_file)
        yield AppliedProject(root=root, agent_file=agent_file, agents=agents)
    finally:
        agents.cleanup()


@pytest.fixture(scope="module")
def venv_project(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppliedProject]:
    """The test module's project with its venv agent applied once."""
    yield from _applied_project(request, tmp_path_factory, "venv")


@pytest.fixture(scope="module")
def docker_project(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppliedProject]:
    """The test module's project with its Docker agent applied once."""
    client = require_test_image()
    yield from _applied_project(request, tmp_path_factory, "docker", docker=client)
