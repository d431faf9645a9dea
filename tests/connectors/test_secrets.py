"""Values rendered from the environment into profile.yml never reach any output.

The adapter is never used, so no server is needed: validating the profile is what
makes the value known as a secret. Tasks then leak it every way they can.
"""

from __future__ import annotations

import pytest

from prism.console import secrets
from prism.console.secrets import mask, register_secret
from tests.conftest import events, finished_by_task

SECRET = "s3cret-Value-from-env-42"
VARIABLE = "PRISM_TEST_SECRET_PASSWORD"

PROJECT = """\
THREADS = 1
PROFILE = "dev"
"""

PROFILE = f"""\
dev:
  adapters:
    warehouse:
      type: postgres
      host: 127.0.0.1
      port: 5432
      database: db
      user: me
      password: "{{{{ env('{VARIABLE}') }}}}"
"""

LEAKY_TASKS = {
    "tasks/leak.py": f"""
        import logging
        import os
        import sys

        from prism.decorators import task

        @task()
        def leak(tasks, hooks):
            value = os.environ["{VARIABLE}"]
            print("printed", value)
            sys.stderr.write("stderr " + value + "\\n")
            logging.getLogger("PRISM_LOGGER").info("logged %s", value)
            logging.getLogger("prism").debug("debug %s", value)
            return value
    """,
    "tasks/fail.py": f"""
        import os

        from prism.decorators import task

        @task()
        def fail(tasks, hooks):
            tasks.ref("leak")
            raise ValueError("bad " + os.environ["{VARIABLE}"])
    """,
}


@pytest.fixture
def leaky_project(make_project):
    return make_project({**LEAKY_TASKS, "profile.yml": PROFILE}, prism_project=PROJECT)


@pytest.mark.parametrize(
    "flags",
    [
        (),
        ("--full-tb",),
        ("-l", "debug", "--full-tb"),
        ("--log-format", "json", "-l", "debug", "--full-tb"),
    ],
)
def test_secret_never_in_output(leaky_project, run_prism, flags):
    result = run_prism("run", *flags, cwd=leaky_project, env={VARIABLE: SECRET})

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "bad ****" in output
    assert SECRET not in output
    assert SECRET not in (leaky_project / "logs.log").read_text()


def test_json_events_are_masked(leaky_project, run_prism):
    result = run_prism(
        "run", "--log-format", "json", cwd=leaky_project, env={VARIABLE: SECRET}
    )

    parsed = events(result.stdout)
    lines = [event.get("line") for event in parsed if event["event"] == "task_output"]
    error = finished_by_task(parsed)["fail.fail"]["error"]
    assert "printed ****" in lines
    assert error["message"] == "bad ****"
    assert SECRET not in error["traceback"]


def test_secret_from_jinja_block_is_masked(make_project, run_prism):
    profile = PROFILE.replace(
        "dev:", f"jinja:\n  - \"{{% set pw = env('{VARIABLE}') %}}\"\ndev:"
    ).replace(f"env('{VARIABLE}') }}}}", "pw }}")
    project = make_project({**LEAKY_TASKS, "profile.yml": profile}, PROJECT)

    result = run_prism("run", cwd=project, env={VARIABLE: SECRET})

    assert "printed ****" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_literal_password_is_masked(make_project, run_prism):
    profile = PROFILE.replace(f"\"{{{{ env('{VARIABLE}') }}}}\"", SECRET)
    project = make_project({**LEAKY_TASKS, "profile.yml": profile}, PROJECT)

    result = run_prism("run", cwd=project, env={VARIABLE: SECRET})

    assert SECRET not in result.stdout + result.stderr


def test_default_value_is_not_a_secret(make_project, run_prism):
    profile = PROFILE.replace(
        "user: me", "user: \"{{ env('PRISM_TEST_UNSET_VARIABLE', 'plain-default') }}\""
    )
    task = {
        "tasks/a.py": """
            from prism.decorators import task

            @task()
            def a(tasks, hooks):
                print("value plain-default")
        """
    }
    project = make_project({**task, "profile.yml": profile}, PROJECT)

    result = run_prism("run", cwd=project, env={VARIABLE: SECRET})

    assert "value plain-default" in result.stdout


def test_mask_replaces_longest_first():
    saved = secrets._secrets
    try:
        secrets.clear_secrets()
        register_secret("abc")
        register_secret("abcdef")
        register_secret("x")

        assert mask("abcdef abc x") == "**** **** x"
    finally:
        secrets._secrets = saved
