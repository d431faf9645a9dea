"""The Docker agent: an image per agent, a fresh container per run."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.agents.conftest import (
    SECRET,
    SECRET_ENV,
    AppliedAgents,
    AppliedProject,
    Result,
    agent_images,
    files_containing,
    leftover_containers,
    output_of,
    prism,
)
from tests.conftest import events, finished_by_task

pytestmark = pytest.mark.integration

AGENT_FILE = "main.docker.yml"
AGENT = "main"

# Every agent uses the same requirements text, so they share one wheelhouse and
# the image build cache, and only the first apply is slow.
_BASE = """\
agent:
  type: docker
  image: prism-test/base:bookworm
  requirements: {requirements}
"""

PROJECT_FILES = {
    AGENT_FILE: _BASE.format(requirements="requirements.txt")
    + """\
  artifacts:
    - reports
  env:
    GREETING: hello-from-env
    MODE: "${PRISM_TEST_UNSET_VARIABLE:-fallback-mode}"
    TOKEN: "${PRISM_TEST_SECRET}"
""",
    "limited.docker.yml": _BASE.format(requirements="requirements.txt")
    + """\
  resources:
    cpus: 1.5
    memory: 256m
""",
    "short.docker.yml": _BASE.format(requirements="requirements.txt")
    + "  timeout: 2\n",
    "pinned.docker.yml": _BASE.format(requirements="pinned/requirements.txt"),
    "doomed.docker.yml": _BASE.format(requirements="requirements.txt"),
    "requirements.txt": "six\n",
    "pinned/requirements.txt": "six\n",
    "tasks/hello.py": """
        from prism.decorators import target
        from prism.target import Txt
        from prism.task import PrismTask


        class Hello(PrismTask):
            @target(type=Txt, loc="output/hello/hello.txt")
            def run(self, tasks, hooks):
                print("hello from docker")
                return "hello"
    """,
    "tasks/edit.py": """
        from prism.decorators import target
        from prism.target import Txt
        from prism.task import PrismTask


        class Edit(PrismTask):
            @target(type=Txt, loc="output/edit/edit.txt")
            def run(self, tasks, hooks):
                return "first"
    """,
    "tasks/writes.py": """
        from prism.decorators import target
        from prism.target import Txt
        from prism.task import PrismTask


        class Writes(PrismTask):
            @target(type=Txt, loc="output/partial/first.txt")
            def run(self, tasks, hooks):
                return "written before the failure"
    """,
    "tasks/breaks.py": """
        from prism.task import PrismTask


        class Breaks(PrismTask):
            def run(self, tasks, hooks):
                tasks.ref("writes")
                raise RuntimeError("breaks on purpose")
    """,
    "tasks/show.py": """
        import os

        from prism.task import PrismTask


        class Show(PrismTask):
            def run(self, tasks, hooks):
                print("greeting=" + os.environ.get("GREETING", "absent"))
                mode = os.environ.get("MODE", "absent")
                print("mode=" + mode)
                print("mode_upper=" + mode.upper())
                client_only = os.environ.get("PRISM_TEST_CLIENT_ONLY", "absent")
                print("client_only=" + client_only)
                return "show"
    """,
    "tasks/secret.py": """
        import os

        from prism.task import PrismTask


        class Secret(PrismTask):
            def run(self, tasks, hooks):
                print("token=" + os.environ["TOKEN"])
                return "secret"
    """,
    "tasks/slow.py": """
        import time

        from prism.task import PrismTask


        class Slow(PrismTask):
            def run(self, tasks, hooks):
                print("slow task started", flush=True)
                time.sleep(60)
                return "slow"
    """,
    "tasks/report.py": """
        from pathlib import Path

        from prism.task import PrismTask


        class Report(PrismTask):
            def run(self, tasks, hooks):
                Path("reports").mkdir(exist_ok=True)
                Path("reports/summary.txt").write_text("3 rows")
                Path("scratch").mkdir(exist_ok=True)
                Path("scratch/ignored.txt").write_text("stays in the container")
                return "report"
    """,
}


@pytest.fixture
def docker_agents(docker_project: AppliedProject) -> Iterator[AppliedAgents]:
    """Return a registry of agents applied in the module's project by one test."""
    agents = AppliedAgents(docker=docker_project.docker)
    yield agents
    agents.cleanup()


def run_agent(
    project: AppliedProject,
    *args: str,
    agent_file: str = AGENT_FILE,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Result:
    return prism(
        "agent",
        "run",
        "-f",
        agent_file,
        *args,
        cwd=project.root,
        env={**SECRET_ENV, **(env or {})},
        timeout=timeout,
    )


def image_ids(project: AppliedProject, agent: str = AGENT) -> set[str]:
    return {image.id for image in agent_images(project.docker, project.root, agent)}


def main_image_tag(project: AppliedProject) -> str:
    images = agent_images(project.docker, project.root, AGENT)
    assert len(images) == 1, [image.tags for image in images]
    assert images[0].tags, "the agent's image has no tag"
    return str(images[0].tags[0])


def test_run_succeeds_with_prefixed_output(docker_project):
    result = run_agent(docker_project, "-t", "hello")

    assert result.returncode == 0, output_of(result)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, output_of(result)
    assert all(line.startswith(f"[{AGENT}] ") for line in lines), result.stdout
    assert f"[{AGENT}] hello from docker" in lines
    assert leftover_containers(docker_project.docker, docker_project.root) == []


def test_target_files_come_back(docker_project):
    target = docker_project.root / "output" / "hello" / "hello.txt"
    shutil.rmtree(target.parent, ignore_errors=True)

    result = run_agent(docker_project, "-t", "hello", "--log-format", "json")

    assert result.returncode == 0, output_of(result)
    finished = finished_by_task(events(result.stdout))
    assert finished["hello.Hello"]["targets"] == [str(target)]
    assert target.read_text() == "hello"


def test_outputs_return_when_later_task_fails(docker_project):
    target = docker_project.root / "output" / "partial" / "first.txt"
    target.unlink(missing_ok=True)

    result = run_agent(docker_project, "-t", "writes", "-t", "breaks")

    assert result.returncode == 1, output_of(result)
    assert target.read_text() == "written before the failure"


def test_failing_task_exits_one(docker_project):
    result = run_agent(docker_project, "-t", "writes", "-t", "breaks")

    assert result.returncode == 1, output_of(result)
    assert "breaks on purpose" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert leftover_containers(docker_project.docker, docker_project.root) == []


def test_env_reaches_container_task(docker_project):
    client_only = {"PRISM_TEST_CLIENT_ONLY": "visible"}

    result = run_agent(docker_project, "-t", "show", env=client_only)

    assert result.returncode == 0, output_of(result)
    assert f"[{AGENT}] greeting=hello-from-env" in result.stdout
    assert f"[{AGENT}] mode_upper=FALLBACK-MODE" in result.stdout
    assert f"[{AGENT}] client_only=absent" in result.stdout


def docker_cli(*args: str) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_secret_absent_from_image_and_files(docker_project):
    result = run_agent(docker_project, "-t", "secret")

    assert result.returncode == 0, output_of(result)
    assert f"[{AGENT}] token=****" in result.stdout
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    assert SECRET not in (docker_project.root / "logs.log").read_text()
    assert files_containing(docker_project.root / ".prism", SECRET) == []
    tag = main_image_tag(docker_project)
    assert SECRET not in docker_cli("history", "--no-trunc", tag)
    assert SECRET not in docker_cli("inspect", tag)


def running_container(project: AppliedProject) -> dict[str, object]:
    containers = leftover_containers(project.docker, project.root)
    assert len(containers) == 1, [container.name for container in containers]
    containers[0].reload()
    return dict(containers[0].attrs)


def test_running_container_hides_secret(docker_project, start_agent):
    client = start_agent(
        "agent",
        "run",
        "-f",
        AGENT_FILE,
        "-t",
        "slow",
        cwd=docker_project.root,
        env=SECRET_ENV,
    )
    client.wait_for_output("slow task started")

    attributes = running_container(docker_project)

    client.interrupt()
    assert client.finish(timeout=30) == 130, client.describe()
    assert SECRET not in json.dumps(attributes)


def test_ctrl_c_removes_run_container(docker_project, start_agent):
    client = start_agent(
        "agent",
        "run",
        "-f",
        AGENT_FILE,
        "-t",
        "slow",
        cwd=docker_project.root,
        env=SECRET_ENV,
    )
    client.wait_for_output("slow task started")
    assert len(leftover_containers(docker_project.docker, docker_project.root)) == 1

    sent = client.interrupt()
    exit_code = client.finish(timeout=30)

    elapsed = time.monotonic() - sent
    assert exit_code == 130, client.describe()
    assert elapsed < 5, f"the client took {elapsed:.1f}s to stop"
    assert leftover_containers(docker_project.docker, docker_project.root) == []


def test_code_edit_needs_no_apply(docker_project):
    target = docker_project.root / "output" / "edit" / "edit.txt"
    images = image_ids(docker_project)
    first = run_agent(docker_project, "-t", "edit")
    assert first.returncode == 0, output_of(first)
    assert target.read_text() == "first"
    task = docker_project.root / "tasks" / "edit.py"
    task.write_text(task.read_text().replace('return "first"', 'return "second"'))

    second = run_agent(docker_project, "-t", "edit")

    assert second.returncode == 0, output_of(second)
    assert target.read_text() == "second"
    assert image_ids(docker_project) == images


def test_reapply_is_fast_noop(docker_project):
    images = image_ids(docker_project)
    started = time.monotonic()

    result = prism(
        "agent", "apply", "-f", AGENT_FILE, cwd=docker_project.root, env=SECRET_ENV
    )

    elapsed = time.monotonic() - started
    assert result.returncode == 0, output_of(result)
    assert "up to date" in result.stdout
    assert elapsed < 5, f"a no-op apply took {elapsed:.1f}s"
    assert image_ids(docker_project) == images


def test_requirements_change_requires_apply(docker_project, docker_agents):
    root = docker_project.root
    docker_agents.apply(root, root / "pinned.docker.yml")
    (root / "pinned" / "requirements.txt").write_text("six>=1.16\n")

    result = run_agent(docker_project, "-t", "hello", agent_file="pinned.docker.yml")

    assert result.returncode == 2, output_of(result)
    assert "prism agent apply" in result.stderr
    assert leftover_containers(docker_project.docker, root) == []


def test_artifacts_come_back_others_stay(docker_project):
    result = run_agent(docker_project, "-t", "report")

    assert result.returncode == 0, output_of(result)
    assert (docker_project.root / "reports" / "summary.txt").read_text() == "3 rows"
    assert not (docker_project.root / "scratch").exists()


def test_resources_limit_the_container(docker_project, docker_agents, start_agent):
    root = docker_project.root
    docker_agents.apply(root, root / "limited.docker.yml")
    client = start_agent(
        "agent", "run", "-f", "limited.docker.yml", "-t", "slow", cwd=root
    )
    client.wait_for_output("slow task started")

    host_config = running_container(docker_project)["HostConfig"]

    client.interrupt()
    assert client.finish(timeout=30) == 130, client.describe()
    assert isinstance(host_config, dict)
    assert host_config["NanoCpus"] == 1_500_000_000
    assert host_config["Memory"] == 256 * 1024 * 1024


def test_delete_removes_only_its_images(docker_project, docker_agents):
    root = docker_project.root
    docker_agents.apply(root, root / "doomed.docker.yml")
    assert image_ids(docker_project, "doomed")
    main_images = image_ids(docker_project)

    result = prism("agent", "delete", "-f", "doomed.docker.yml", cwd=root)

    assert result.returncode == 0, output_of(result)
    assert image_ids(docker_project, "doomed") == set()
    doomed_containers = docker_project.docker.containers.list(
        all=True, filters={"label": "prism.agent=doomed"}
    )
    assert [
        container
        for container in doomed_containers
        if container.labels.get("prism.project", "").startswith(f"{root.name}-")
    ] == []
    assert image_ids(docker_project) == main_images


def test_timeout_stops_long_run(docker_project, docker_agents):
    root = docker_project.root
    docker_agents.apply(root, root / "short.docker.yml")
    started = time.monotonic()

    result = run_agent(
        docker_project, "-t", "slow", agent_file="short.docker.yml", timeout=40
    )

    elapsed = time.monotonic() - started
    assert result.returncode == 1, output_of(result)
    assert "timed out" in result.stdout + result.stderr
    assert elapsed < 20, f"the timed-out run took {elapsed:.1f}s"
    assert leftover_containers(docker_project.docker, root) == []
