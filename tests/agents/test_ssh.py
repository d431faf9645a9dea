"""The SSH agent against a real OpenSSH server in a container on 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agents.conftest import (
    SECRET,
    SECRET_ENV,
    TOKEN_PROJECT,
    AppliedAgents,
    files_containing,
    output_of,
    prism,
    unique_name,
    write_project,
)
from tests.agents.sshd import SshHost, free_port, running_sshd

pytestmark = pytest.mark.integration

PROJECT_FILES = TOKEN_PROJECT


@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    with running_sshd(tmp_path_factory.mktemp("ssh")) as host:
        yield host


@dataclass(frozen=True)
class SshProject:
    root: Path
    agent_file: Path
    host: SshHost


@pytest.fixture(scope="module")
def ssh_project(
    ssh_host: SshHost, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SshProject]:
    root = write_project(
        tmp_path_factory.mktemp("sshproject") / unique_name("ssh"), PROJECT_FILES
    )
    agent_file = root / "remote.yml"
    agent_file.write_text(
        "agent:\n"
        "  type: ssh\n"
        "  host: test-host\n"
        f"  ssh_config: {ssh_host.config}\n"
        "  env:\n"
        "    TOKEN: ${PRISM_TEST_SECRET}\n"
    )
    agents = AppliedAgents()
    try:
        agents.apply(root, agent_file, env=SECRET_ENV)
        yield SshProject(root, agent_file, ssh_host)
    finally:
        agents.cleanup()


OUTPUT_FILES = {
    "tasks/write.py": """\
        import pathlib

        import prism.target
        from prism.decorators import target, task


        @task(
            targets=[
                target(type=prism.target.Txt, loc="top.txt"),
                target(type=prism.target.Txt, loc="output/deep/nested.txt"),
            ]
        )
        def write(tasks, hooks):
            pathlib.Path("reports").mkdir(exist_ok=True)
            pathlib.Path("reports/notes.md").write_text("notes")
            return "top", "nested"
    """,
}

SLOW_TASK = """\
import time
from prism.decorators import task


@task()
def slow(tasks, hooks):
    print("started", flush=True)
    time.sleep(120)
    return 1
"""


def _start_slow_run(project: SshProject, start_agent: Any) -> Any:
    """Start `prism agent run -t slow` and wait until the task has started."""
    agent = start_agent(
        "agent",
        "run",
        "-f",
        str(project.agent_file),
        "-t",
        "slow",
        cwd=project.root,
        env=SECRET_ENV,
    )
    deadline = time.monotonic() + 60
    while "started" not in agent.stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "started" in agent.stdout, agent.stdout + agent.stderr
    return agent


def run_on_agent(project: SshProject, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `prism agent run -f AGENT_FILE ARGS` with the test secret set."""
    return prism(
        "agent",
        "run",
        "-f",
        str(project.agent_file),
        *args,
        cwd=project.root,
        env=SECRET_ENV,
    )


def test_run_returns_outputs_and_events(ssh_project):
    result = run_on_agent(ssh_project)

    assert result.returncode == 0, output_of(result)
    assert "[remote] " in result.stdout
    assert "DONE  total.total" in result.stdout
    assert (ssh_project.root / "output" / "total.txt").read_text() == "6"


def test_secret_masked_and_never_stored(ssh_project):
    result = run_on_agent(ssh_project)

    assert result.returncode == 0, output_of(result)
    assert "token ****" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    assert files_containing(ssh_project.root, SECRET) == []
    found = ssh_project.host.run(f"grep -rl {SECRET} ~/.prism || true")
    assert found.stdout.strip() == ""


def test_host_key_remembered_on_first_contact(ssh_project):
    assert "[127.0.0.1]" in ssh_project.host.known_hosts.read_text()


def test_edit_and_deleted_file_reach_host(ssh_project):
    extra = ssh_project.root / "tasks" / "extra.py"
    extra.write_text(
        "from prism.decorators import task\n\n\n@task()\ndef extra(tasks, hooks):\n"
        "    return 'first'\n"
    )
    first = run_on_agent(ssh_project, "--log-format", "json")
    assert first.returncode == 0, output_of(first)
    assert '"extra.extra"' in first.stdout

    extra.unlink()
    second = run_on_agent(ssh_project, "--log-format", "json")

    assert second.returncode == 0, output_of(second)
    assert '"extra.extra"' not in second.stdout


def test_failing_task_exits_one(ssh_project):
    broken = ssh_project.root / "tasks" / "broken.py"
    broken.write_text(
        "from prism.decorators import task\n\n\n@task()\ndef broken(tasks, hooks):\n"
        "    raise ValueError('no rows today')\n"
    )
    try:
        result = run_on_agent(ssh_project)
    finally:
        broken.unlink()

    assert result.returncode == 1, output_of(result)
    assert "no rows today" in result.stdout
    assert "tasks/broken.py:6" in result.stdout


def test_noop_apply_does_nothing(ssh_project):
    result = prism(
        "agent",
        "apply",
        "-f",
        str(ssh_project.agent_file),
        cwd=ssh_project.root,
        env=SECRET_ENV,
    )

    assert result.returncode == 0, output_of(result)
    assert "up to date" in result.stdout


def test_interrupt_stops_remote_process(ssh_project, start_agent):
    slow = ssh_project.root / "tasks" / "slow.py"
    slow.write_text(SLOW_TASK)
    try:
        agent = _start_slow_run(ssh_project, start_agent)
        agent.process.send_signal(signal.SIGINT)
        agent.process.wait(timeout=30)
    finally:
        slow.unlink()

    assert agent.process.returncode == 130, agent.stdout + agent.stderr
    assert "INTERRUPTED" in agent.stdout
    left = ssh_project.host.run("pgrep -f 'prism[.]agents[.]remote' || true")
    assert left.stdout.strip() == ""


def test_unreachable_host_exits_two(tmp_path, ssh_host):
    root = write_project(tmp_path / "project", PROJECT_FILES)
    agent_file = root / "nowhere.yml"
    agent_file.write_text(
        f"agent:\n  type: ssh\n  host: 127.0.0.1\n  port: {free_port()}\n"
        f"  ssh_config: {ssh_host.config}\n"
    )

    result = prism("agent", "apply", "-f", str(agent_file), cwd=root)

    assert result.returncode == 2, output_of(result)
    assert "Cannot connect to 127.0.0.1 over SSH" in result.stderr
    assert "Traceback" not in result.stderr


def test_stricter_host_key_setting_kept(tmp_path, ssh_host):
    config = tmp_path / "strict_config"
    config.write_text(
        ssh_host.config.read_text().replace(
            str(ssh_host.known_hosts), str(tmp_path / "empty_known_hosts")
        )
        + "  StrictHostKeyChecking yes\n"
    )
    root = write_project(tmp_path / "project", PROJECT_FILES)
    agent_file = root / "strict.yml"
    agent_file.write_text(
        f"agent:\n  type: ssh\n  host: {ssh_host.alias}\n  ssh_config: {config}\n"
    )

    result = prism("agent", "apply", "-f", str(agent_file), cwd=root)

    assert result.returncode == 2, output_of(result)
    assert "Host key verification failed" in result.stderr


def test_delete_removes_host_folder(tmp_path, ssh_host):
    root = write_project(tmp_path / unique_name("sshdelete"), PROJECT_FILES)
    agent_file = root / "gone.yml"
    agent_file.write_text(
        f"agent:\n  type: ssh\n  host: {ssh_host.alias}\n"
        f"  ssh_config: {ssh_host.config}\n"
    )
    applied = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    assert applied.returncode == 0, output_of(applied)

    result = prism("agent", "delete", "-f", str(agent_file), cwd=root)

    assert result.returncode == 0, output_of(result)
    assert "removed" in result.stdout
    left = ssh_host.run(f"ls -d ~/.prism/{root.name}-* 2>/dev/null || true")
    assert left.stdout.strip() == ""


def test_selected_task_reads_upstream_target(ssh_project):
    full = run_on_agent(ssh_project)
    assert full.returncode == 0, output_of(full)

    result = run_on_agent(ssh_project, "-t", "total", "--log-format", "json")

    assert result.returncode == 0, output_of(result)
    assert '"task":"total.total"' in result.stdout
    assert '"task":"extract.extract"' not in result.stdout


def test_second_run_waits_its_turn(ssh_project, start_agent):
    slow = ssh_project.root / "tasks" / "slow.py"
    slow.write_text(SLOW_TASK)
    try:
        first = _start_slow_run(ssh_project, start_agent)

        second = run_on_agent(ssh_project)

        first.process.send_signal(signal.SIGINT)
        first.process.wait(timeout=30)
    finally:
        slow.unlink()

    assert second.returncode == 2, output_of(second)
    assert "Agent remote is busy" in second.stderr


def test_relative_workdir_is_under_home(tmp_path, ssh_host):
    root = write_project(tmp_path / unique_name("sshwork"), PROJECT_FILES)
    agent_file = root / "placed.yml"
    agent_file.write_text(
        f"agent:\n  type: ssh\n  host: {ssh_host.alias}\n"
        f"  ssh_config: {ssh_host.config}\n  workdir: agents/{root.name}\n"
        "  env:\n    TOKEN: fixed\n"
    )

    built = prism("agent", "build", "-f", str(agent_file), cwd=root)
    placed = ssh_host.run(f"test -x ~/agents/{root.name}/venv/bin/python && echo yes")
    deleted = prism("agent", "delete", "-f", str(agent_file), cwd=root)

    assert built.returncode == 0, output_of(built)
    assert (root / "output" / "total.txt").read_text() == "6"
    assert placed.stdout.strip() == "yes"
    assert deleted.returncode == 0, output_of(deleted)
    assert ssh_host.run(f"ls ~/agents/{root.name} 2>&1").returncode != 0


def test_moved_agent_cleans_or_names_old_folder(tmp_path, ssh_host):
    root = write_project(tmp_path / unique_name("sshmove"), PROJECT_FILES)
    agent_file = root / "mover.yml"
    base = (
        f"agent:\n  type: ssh\n  host: {ssh_host.alias}\n"
        f"  ssh_config: {ssh_host.config}\n"
    )

    agent_file.write_text(base + f"  workdir: first/{root.name}\n")
    first = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    agent_file.write_text(base + f"  workdir: second/{root.name}\n")
    second = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    old_left = ssh_host.run(f"test -e ~/first/{root.name} && echo left")
    agent_file.write_text(base + "  user: root\n")
    third = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    prism("agent", "delete", "-f", str(agent_file), cwd=root)
    ssh_host.run(f"rm -rf ~/second/{root.name}")

    assert first.returncode == 0, output_of(first)
    assert second.returncode == 0, output_of(second)
    assert old_left.stdout.strip() == ""
    assert third.returncode == 0, output_of(third)
    assert f"{ssh_host.alias}:second/{root.name}" in third.stdout
    assert "left in place" in third.stdout


def test_console_scripts_of_host_environment_run(ssh_project: SshProject) -> None:
    folder = f"~/.prism/{ssh_project.root.name}-*/remote"
    result = ssh_project.host.run(f"{folder}/venv/bin/prism --version")
    assert result.returncode == 0, result.stderr
    assert "0.3" in result.stdout


def test_targets_and_artifacts_come_back(tmp_path, ssh_host):
    root = write_project(tmp_path / unique_name("sshout"), OUTPUT_FILES)
    agent_file = root / "outputs.yml"
    agent_file.write_text(
        f"agent:\n  type: ssh\n  host: {ssh_host.alias}\n"
        f"  ssh_config: {ssh_host.config}\n  artifacts: [reports/]\n"
    )

    built = prism("agent", "build", "-f", str(agent_file), cwd=root)
    deleted = prism("agent", "delete", "-f", str(agent_file), cwd=root)

    assert built.returncode == 0, output_of(built)
    assert (root / "top.txt").read_text() == "top"
    assert (root / "output" / "deep" / "nested.txt").read_text() == "nested"
    assert (root / "reports" / "notes.md").read_text() == "notes"
    assert deleted.returncode == 0, output_of(deleted)


def test_unchanged_module_not_recompiled(ssh_project):
    mirror = f"~/.prism/{ssh_project.root.name}-*/remote/files"
    bytecode = f"find {mirror} -path '*/tasks/__pycache__/total.*.pyc'"
    first = run_on_agent(ssh_project)
    ssh_project.host.run("touch ~/.bytecode-marker")

    second = run_on_agent(ssh_project)
    kept = ssh_project.host.run(f"{bytecode} | wc -l")
    rewritten = ssh_project.host.run(f"{bytecode} -newer ~/.bytecode-marker | wc -l")

    assert first.returncode == 0, output_of(first)
    assert second.returncode == 0, output_of(second)
    assert kept.stdout.strip() == "1"
    assert rewritten.stdout.strip() == "0"
