"""Agent files: invalid files are rejected before anything is created."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from prism.agents.config import load_agent_file, resolve_env
from tests.agents.conftest import SECRET, SECRET_ENV
from tests.conftest import assert_usage_error, flat

UNSET = "PRISM_TEST_UNSET_VARIABLE"

# (case id, agent file text, fragments the error must contain besides the path)
INVALID_FILES = [
    (
        "unknown-key",
        "agent:\n  type: venv\n  requirments: requirements.txt\n",
        ["agent.requirments", "unknown key", "Did you mean 'requirements'?"],
    ),
    (
        "unknown-resources-key",
        "agent:\n  type: docker\n  resources:\n    cpu: 2\n",
        ["agent.resources.cpu", "Did you mean 'cpus'?"],
    ),
    (
        "wrong-type-timeout",
        "agent:\n  type: venv\n  timeout: [5]\n",
        ["agent.timeout"],
    ),
    (
        "wrong-type-env",
        "agent:\n  type: venv\n  env: [A, B]\n",
        ["agent.env"],
    ),
    (
        "negative-timeout",
        "agent:\n  type: venv\n  timeout: -1\n",
        ["agent.timeout"],
    ),
    (
        "bad-duration",
        "agent:\n  type: venv\n  timeout: soon\n",
        ["agent.timeout", "30m"],
    ),
    (
        "missing-requirements",
        "agent:\n  type: venv\n  requirements: missing.txt\n",
        ["agent.requirements", "missing.txt"],
    ),
    (
        "unset-variable",
        f"agent:\n  type: venv\n  env:\n    TOKEN: '${{{UNSET}}}'\n",
        ["agent.env.TOKEN", UNSET],
    ),
    (
        "unset-jinja-variable",
        f"agent:\n  type: venv\n  env:\n    TOKEN: \"{{{{ env('{UNSET}') }}}}\"\n",
        [UNSET],
    ),
    (
        "unknown-type",
        "agent:\n  type: kubernetes\n",
        ["agent.type", "'kubernetes'", "venv, docker"],
    ),
    (
        "missing-type",
        "agent:\n  requirements: requirements.txt\n",
        ["agent.type"],
    ),
    (
        "missing-agent-key",
        "type: venv\n",
        ["'agent'", "missing"],
    ),
]


def agent_project(make_project, agent_text: str) -> tuple[Path, Path]:
    project = make_project({"requirements.txt": "six\n"})
    agent_file = project / "bad.yml"
    agent_file.write_text(agent_text)
    return project, agent_file


def applied_agent_names(project: Path) -> list[str]:
    database = project / ".prism" / "state.db"
    if not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name FROM agents").fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize(
    ("agent_text", "fragments"),
    [pytest.param(text, fragments, id=case) for case, text, fragments in INVALID_FILES],
)
def test_invalid_agent_file_is_rejected(make_project, run_prism, agent_text, fragments):
    project, agent_file = agent_project(make_project, agent_text)

    result = run_prism("agent", "apply", "-f", "bad.yml", cwd=project)

    assert_usage_error(result, str(agent_file.resolve()), *fragments)
    assert not (project / ".prism" / "agents").exists()
    assert applied_agent_names(project) == []


@pytest.mark.parametrize(
    "agent_text",
    [
        pytest.param(
            "agent:\n  type: kubernetes\n  env:\n"
            "    TOKEN: \"{{ env('PRISM_TEST_SECRET') }}\"\n",
            id="unknown-type",
        ),
        pytest.param(
            "agent:\n  type: venv\n  timeout: soon\n  env:\n"
            "    TOKEN: \"{{ env('PRISM_TEST_SECRET') }}\"\n",
            id="wrong-type",
        ),
        pytest.param(
            "agent:\n  type: venv\n  colour: blue\n  env:\n"
            "    TOKEN: \"{{ env('PRISM_TEST_SECRET') }}\"\n",
            id="unknown-key",
        ),
    ],
)
def test_rejection_never_shows_env_values(make_project, run_prism, agent_text):
    project, _ = agent_project(make_project, agent_text)

    result = run_prism("agent", "apply", "-f", "bad.yml", cwd=project, env=SECRET_ENV)

    assert result.returncode == 2, result.stdout + result.stderr
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    log = project / "logs.log"
    assert not log.exists() or SECRET not in log.read_text()


def test_missing_agent_file_is_usage_error(make_project, run_prism):
    project = make_project({})

    result = run_prism("agent", "apply", "-f", "nowhere.yml", cwd=project)

    assert_usage_error(result, "nowhere.yml", "does not exist")


def test_old_docker_file_is_accepted(make_project):
    project = make_project(
        {
            "agents/old.docker.yml": """
                agent:
                  type: docker
                  server_url:
                  requirements: requirements.txt
            """,
            "agents/requirements.txt": "six\n",
        }
    )

    config = load_agent_file(project / "agents" / "old.docker.yml")

    assert config.name == "old"
    assert config.type == "docker"
    assert config.spec.server_url is None
    assert config.spec.image == "python:3.10.8-slim-bullseye"
    assert config.requirements_path == (project / "agents/requirements.txt").resolve()


def test_old_docker_file_passes_cli_validation(make_project, run_prism):
    project = make_project(
        {
            "old.docker.yml": """
                agent:
                  type: docker
                  server_url:
                  requirements: requirements.txt
            """,
            "requirements.txt": "six\n",
        }
    )
    # Nothing listens at this engine address, so the command stops at the first
    # use of Docker, which comes right after validation.
    unreachable = {"DOCKER_HOST": f"unix://{project}/no-docker.sock"}

    result = run_prism(
        "agent", "status", "-f", "old.docker.yml", cwd=project, env=unreachable
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Cannot reach the Docker engine" in flat(result.stderr)
    assert str((project / "old.docker.yml").resolve()) not in result.stderr


def test_default_applies_when_variable_unset(make_project):
    agent_text = f"agent:\n  type: venv\n  env:\n    MODE: '${{{UNSET}:-fallback}}'\n"
    project = make_project({"env.yml": agent_text})
    config = load_agent_file(project / "env.yml")

    assert resolve_env(config, {}) == {"MODE": "fallback"}
    assert resolve_env(config, {UNSET: "chosen"}) == {"MODE": "chosen"}


def test_default_form_is_not_unset_error(make_project, run_prism):
    project = make_project(
        {
            "env.docker.yml": (
                f"agent:\n  type: docker\n  env:\n    MODE: '${{{UNSET}:-fallback}}'\n"
            )
        }
    )
    unreachable = {"DOCKER_HOST": f"unix://{project}/no-docker.sock"}

    result = run_prism(
        "agent", "apply", "-f", "env.docker.yml", cwd=project, env=unreachable
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert UNSET not in result.stderr
    assert "Cannot reach the Docker engine" in flat(result.stderr)


@pytest.mark.parametrize("agent_type", ["venv", "docker", "ssh", "ec2", "emr"])
def test_created_agent_file_is_valid_as_written(
    agent_type: str, make_project: Any, run_prism: Any
) -> None:
    project = make_project({"tasks/a.py": "def a(tasks, hooks):\n    return 1\n"})
    result = run_prism(
        "create", "agent", "--type", agent_type, "-f", "new.yml", cwd=project
    )
    assert result.returncode == 0, result.stderr
    config = load_agent_file(project / "new.yml")
    assert config.type == agent_type
