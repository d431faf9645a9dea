"""profile.yml through `prism run`: 0.2.x files, selection, and bad input.

Bad input must stop the run with exit 2 before any task starts, with one line that
names the file and the key path, and never a value.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from prism.connectors.base import DriverMissingError
from prism.connectors.hooks import Hooks
from prism.connectors.profile import load_profile
from prism.errors import ConfigError
from tests.conftest import assert_usage_error, events, finished_by_task

JSON = ("--log-format", "json")

PROJECT = """\
from pathlib import Path

THREADS = 1
PROFILE = "dev"
PROFILE_YML_PATH = Path(__file__).parent / "profile.yml"
"""

# Writes `started` first, so a test can tell whether any task ran.
COUNT_TASK = """\
from pathlib import Path

from prism.decorators import task


@task()
def count(tasks, hooks):
    Path("started").write_text("yes")
    hooks.sql("db", "CREATE TABLE IF NOT EXISTS t (id INTEGER)")
    hooks.sql("db", "INSERT INTO t VALUES (1)")
    return hooks.sql("db", "SELECT count(*) FROM t")[0][0]
"""

SQLITE_PROFILE = """\
dev:
  adapters:
    db:
      type: sqlite
      database: dev.sqlite
"""

SECRET = "Pr1sm-never-print-this"


def run_project(make_project, run_prism, profile, *args, env=None, task=COUNT_TASK):
    project = make_project(
        {"tasks/count.py": task, "profile.yml": profile}, prism_project=PROJECT
    )
    result = run_prism("run", *args, cwd=project, env=env)
    return project, result


def assert_stopped_before_tasks(project, result, *fragments):
    assert_usage_error(result, *fragments)
    assert not (project / "started").exists()


def test_profile_with_jinja_block_and_two_profiles(make_project, run_prism):
    profile = """\
        # Settings shared by both profiles
        jinja:
          - "{% set here = wkdir() %}"
          - "{% set name = concat('pro', 'd') %}"

        dev:
          adapters:
            db:
              type: sqlite
              database: "{{ here }}/dev.sqlite"  # beside this file

        prod:
          adapters:
            db:
              type: sqlite
              database: "{{ Path(__file__).parent }}/{{ name }}.sqlite"
    """
    project, result = run_project(make_project, run_prism, profile, *JSON)
    second = run_prism("run", "-v", "PROFILE=prod", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert (project / "dev.sqlite").is_file()
    assert (project / "prod.sqlite").is_file()


def test_profile_path_override_with_context(make_project, run_prism):
    project = make_project(
        {
            "tasks/count.py": COUNT_TASK,
            "profile.yml": "dev:\n  adapters: {}\n",
            "conf/other.yml": SQLITE_PROFILE,
        },
        prism_project=PROJECT,
    )

    result = run_prism(
        "run", "--context", '{"PROFILE_YML_PATH": "conf/other.yml"}', cwd=project
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "conf" / "dev.sqlite").is_file()


def test_default_profile_path_beside_project(make_project, run_prism):
    project = make_project(
        {"tasks/count.py": COUNT_TASK, "profile.yml": SQLITE_PROFILE},
        prism_project="PROFILE = 'dev'\n",
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert finished_by_task(events(result.stdout))["count.count"]["status"] == "done"


def test_no_profile_and_no_hooks_is_fine(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.decorators import task

                @task()
                def a(tasks, hooks):
                    return 1
            """
        },
        prism_project='PROFILE = "default"\nPROFILE_YML_PATH = "profile.yml"\n',
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Error" not in result.stderr


def test_env_var_default_is_used(make_project, run_prism):
    profile = """\
        dev:
          adapters:
            db:
              type: sqlite
              database: "{{ env_var('PRISM_TEST_UNSET_DB', 'fallback.sqlite') }}"
    """

    project, result = run_project(make_project, run_prism, profile)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "fallback.sqlite").is_file()


def test_missing_key_names_key_path(make_project, run_prism):
    profile = """\
        dev:
          adapters:
            warehouse:
              type: postgres
              user: me
              password: secret
              port: 5432
              database: db
    """

    project, result = run_project(make_project, run_prism, profile)

    assert_stopped_before_tasks(
        project, result, "profile.yml: dev.adapters.warehouse.host: missing"
    )


def test_unset_env_var_names_key_path(make_project, run_prism):
    profile = """\
        jinja:
          - "{% set pw = env('PRISM_TEST_UNSET_PASSWORD') %}"
        dev:
          adapters:
            warehouse:
              type: postgres
              user: me
              password: "{{ pw }}"
              host: 127.0.0.1
              port: 5432
              database: db
    """

    project, result = run_project(make_project, run_prism, profile)

    assert_stopped_before_tasks(
        project,
        result,
        "profile.yml: dev.adapters.warehouse.password: the environment variable "
        "PRISM_TEST_UNSET_PASSWORD is not set",
    )


def test_invalid_value_is_not_printed(make_project, run_prism):
    profile = """\
        dev:
          adapters:
            warehouse:
              type: postgres
              user: me
              password: secret
              host: 127.0.0.1
              port: "{{ env('PRISM_TEST_PORT') }}"
              database: db
    """

    project, result = run_project(
        make_project, run_prism, profile, env={"PRISM_TEST_PORT": SECRET}
    )

    assert_stopped_before_tasks(
        project, result, "profile.yml: dev.adapters.warehouse.port: invalid value"
    )
    assert SECRET not in result.stdout + result.stderr


def test_yaml_error_does_not_print_rendered_file(make_project, run_prism):
    profile = """\
        dev:
          adapters:
            warehouse:
              type: postgres
              password: "{{ env('PRISM_TEST_PASSWORD') }}"
              host: [unclosed
    """

    project, result = run_project(
        make_project,
        run_prism,
        profile,
        "--full-tb",
        env={"PRISM_TEST_PASSWORD": SECRET},
    )

    assert result.returncode == 2
    assert "profile.yml:" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert not (project / "started").exists()


def test_profile_name_not_in_file(make_project, run_prism):
    project, result = run_project(
        make_project, run_prism, SQLITE_PROFILE, "-v", "PROFILE=prod"
    )

    assert_stopped_before_tasks(
        project,
        result,
        "profile.yml: no profile named 'prod' (profiles in the file: dev)",
    )


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        pytest.param(
            "type: sqlite",
            "type: postgress",
            (
                "profile.yml: dev.adapters.db.type: unknown adapter type 'postgress'",
                "Did you mean 'postgres'?",
            ),
            id="unknown-adapter-type-suggests-one",
        ),
        pytest.param(
            "database:",
            "databse:",
            (
                "profile.yml: dev.adapters.db.databse: unknown key",
                "Did you mean 'database'?",
            ),
            id="unknown-key-suggests-one",
        ),
        pytest.param(
            "database: dev.sqlite",
            "database:",
            ("profile.yml: dev.adapters.db.database: no value given",),
            id="empty-required-value-is-named",
        ),
        pytest.param(
            "    db:",
            "    dbs:",
            (
                "tasks/count.py:9: hooks.sql('db'): profile.yml has no adapter 'db' "
                "in profile 'dev'",
                "Did you mean 'dbs'?",
            ),
            id="adapter-name-not-in-profile",
        ),
        pytest.param(
            "database: dev.sqlite\n",
            "database: dev.sqlite\n  clusters: {}\n",
            ("profile.yml: dev.clusters: unknown key",),
            id="unknown-profile-key-is-rejected",
        ),
    ],
)
def test_bad_profile_stops_before_tasks(make_project, run_prism, old, new, fragments):
    profile = SQLITE_PROFILE.replace(old, new)
    assert profile != SQLITE_PROFILE

    project, result = run_project(make_project, run_prism, profile)

    assert_stopped_before_tasks(project, result, *fragments)


def test_missing_driver_names_extra(tmp_path, monkeypatch):
    """The trino driver is hidden by making `find_spec` report it missing."""
    (tmp_path / "profile.yml").write_text(
        "dev:\n  adapters:\n    lake:\n      type: trino\n      user: me\n"
        "      host: 127.0.0.1\n      port: 8080\n"
    )
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "trino":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    with pytest.raises(DriverMissingError) as caught:
        load_profile(tmp_path / "profile.yml", "dev", root=tmp_path)

    assert "profile.yml: dev.adapters.lake" in caught.value.message
    assert "pip install 'prism-pipelines[trino]'" in str(caught.value)


def test_missing_return_type_library_names_extra(tmp_path, monkeypatch):
    """polars is hidden by setting its `sys.modules` entry to None."""
    (tmp_path / "profile.yml").write_text(SQLITE_PROFILE)
    monkeypatch.setitem(sys.modules, "polars", None)
    hooks = Hooks(tmp_path / "profile.yml", "dev", root=tmp_path)

    with pytest.raises(DriverMissingError) as caught:
        hooks.sql("db", "SELECT 1", return_type="polars")
    hooks.close()

    assert "pip install 'prism-pipelines[polars]'" in str(caught.value)


def test_pyspark_alias_cannot_shadow_hooks_method(tmp_path):
    (tmp_path / "profile.yml").write_text(
        "dev:\n  adapters:\n    spark:\n      type: pyspark\n      alias: sql\n"
    )
    pytest.importorskip("pyspark")

    with pytest.raises(ConfigError, match="'sql' cannot be used as a hooks"):
        Hooks(tmp_path / "profile.yml", "dev", root=tmp_path)


def test_profile_path_to_folder_exits_2(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.decorators import task

                @task()
                def a(tasks, hooks):
                    return 1
            """
        },
        prism_project='PROFILE = "dev"\nPROFILE_YML_PATH = "tasks"\n',
    )
    result = run_prism("run", cwd=project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PROFILE_YML_PATH" in result.stderr
    assert "is a folder" in result.stderr
