"""Agent commands that share one agent: locking, names, stopping, partial env."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from prism.agents.config import load_agent_file, resolve_env
from tests.agents.conftest import output_of, prism, write_project
from tests.conftest import assert_usage_error, prism_env

SLOW_TASK = """\
    import time
    from prism.decorators import task


    @task()
    def slow(tasks, hooks):
        print("started", flush=True)
        time.sleep(120)
        return 1
"""


def test_second_apply_is_refused_while_first_runs(tmp_path):
    root = write_project(tmp_path / "project", {"tasks/slow.py": SLOW_TASK})
    (root / "v.yml").write_text("agent:\n  type: venv\n")
    first = subprocess.Popen(
        [sys.executable, "-m", "prism", "agent", "apply", "-f", "v.yml"],
        cwd=root,
        env=prism_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        lock = root / ".prism" / "locks" / "v.lock"
        while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)

        second = prism("agent", "apply", "-f", "v.yml", cwd=root)

        assert_usage_error(second, "Agent v is busy", "prism agent apply (pid")
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0


def test_agent_name_clash_is_refused(tmp_path):
    root = write_project(tmp_path / "project", {"tasks/slow.py": SLOW_TASK})
    (root / "one").mkdir()
    (root / "two").mkdir()
    (root / "one" / "x.yml").write_text("agent:\n  type: venv\n")
    (root / "two" / "x.prod.yml").write_text("agent:\n  type: venv\n")
    first = prism("agent", "apply", "-f", "one/x.yml", cwd=root)
    assert first.returncode == 0, output_of(first)

    second = prism("agent", "apply", "-f", "two/x.prod.yml", cwd=root)

    assert_usage_error(second, "'x' is already used by", "one/x.yml")


def test_sigterm_to_client_stops_far_side(tmp_path):
    root = write_project(tmp_path / "project", {"tasks/slow.py": SLOW_TASK})
    (root / "v.yml").write_text("agent:\n  type: venv\n")
    applied = prism("agent", "apply", "-f", "v.yml", cwd=root)
    assert applied.returncode == 0, output_of(applied)
    client = subprocess.Popen(
        [sys.executable, "-m", "prism", "agent", "run", "-f", "v.yml"],
        cwd=root,
        env=prism_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert client.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "started" not in seen and time.monotonic() < deadline:
        seen += client.stdout.readline()

    client.send_signal(signal.SIGTERM)
    rest, _ = client.communicate(timeout=30)

    assert client.returncode == 130, seen + rest
    assert "INTERRUPTED" in rest
    left = subprocess.run(
        ["pgrep", "-f", f"{root}/.prism/agents/v/venv/bin/python"],
        capture_output=True,
        text=True,
    )
    assert left.stdout.strip() == ""


def test_invalid_env_name_is_config_error(tmp_path):
    root = write_project(tmp_path / "project", {"tasks/slow.py": SLOW_TASK})
    (root / "v.yml").write_text('agent:\n  type: venv\n  env:\n    "A=B": y\n')

    result = prism("agent", "apply", "-f", "v.yml", cwd=root)

    assert_usage_error(result, "agent.env", "'A=B'", "not a valid environment")
    assert not (root / ".prism" / "agents").exists()


def test_empty_variable_takes_default(tmp_path):
    path = tmp_path / "a.yml"
    path.write_text("agent:\n  type: venv\n  env:\n    MODE: ${EMPTY_MODE:-fallback}\n")
    config = load_agent_file(path)

    assert resolve_env(config, {"EMPTY_MODE": ""}) == {"MODE": "fallback"}
    assert resolve_env(config, {"EMPTY_MODE": "set"}) == {"MODE": "set"}


def test_status_needs_no_jinja_secret(tmp_path):
    root = write_project(tmp_path / "project", {"tasks/slow.py": SLOW_TASK})
    (root / "j.yml").write_text(
        "agent:\n  type: venv\n  env:\n"
        "    TOKEN: \"{{ env('PRISM_TEST_UNSET_JJ') }}\"\n"
    )

    status = prism("agent", "status", "-f", "j.yml", cwd=root)
    delete = prism("agent", "delete", "-f", "j.yml", cwd=root)
    apply = prism("agent", "apply", "-f", "j.yml", cwd=root)

    assert status.returncode == 0, output_of(status)
    assert delete.returncode == 0, output_of(delete)
    assert_usage_error(apply, "PRISM_TEST_UNSET_JJ", "not set")
