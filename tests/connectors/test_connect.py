"""`prism connect --type T`: adding a template adapter to profile.yml as text."""

from __future__ import annotations

import textwrap

import yaml

from tests.conftest import assert_usage_error

PROJECT = """\
from pathlib import Path

PROFILE = "dev"
PROFILE_YML_PATH = Path(__file__).parent / "profile.yml"
"""

COMMENTED = """\
# Team profile: keep these comments!
jinja:
  - "{% set here = wkdir() %}"

dev:   # local work
  adapters:
    # the local cache
    cache:
        type: sqlite
        database: "{{ here }}/cache.sqlite"

prod:
  adapters:
    warehouse:
        type: postgres    # aligned comment
        host: db.internal
        port: 5432
        database: prod
        user: "{{ env('USER', 'etl') }}"
        password: "{{ env('PROD_PASSWORD', 'x') }}"
"""


def connect(make_project, run_prism, profile, *args, prism_project=PROJECT):
    files = {"tasks/.keep": ""}
    if profile is not None:
        files["profile.yml"] = profile
    project = make_project(files, prism_project=prism_project)
    result = run_prism("connect", *args, cwd=project)
    return project, result


def parsed(text: str) -> dict:
    rendered = text.replace("{{ here }}", "/here")
    for name in ("USER', 'etl", "PROD_PASSWORD', 'x"):
        rendered = rendered.replace("{{ env('" + name + "') }}", "value")
    rendered = "\n".join(line for line in rendered.splitlines() if "{%" not in line)
    return yaml.safe_load(rendered)


def test_adds_adapter_keeping_comments(make_project, run_prism):
    project, result = connect(make_project, run_prism, COMMENTED, "--type", "postgres")

    text = (project / "profile.yml").read_text()
    assert result.returncode == 0, result.stdout + result.stderr
    assert text.startswith(COMMENTED.split("\nprod:")[0])
    assert text.endswith(COMMENTED.split("\nprod:")[1])
    assert "# Team profile: keep these comments!" in text
    assert "type: postgres    # aligned comment" in text
    adapters = parsed(text)["dev"]["adapters"]
    assert list(adapters) == ["cache", "postgres"]
    assert adapters["postgres"]["type"] == "postgres"
    assert "added the postgres adapter 'postgres' to profile 'dev'" in result.stdout


def test_new_adapter_follows_file_indentation(make_project, run_prism):
    project, result = connect(make_project, run_prism, COMMENTED, "--type", "duckdb")

    text = (project / "profile.yml").read_text()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\n    duckdb:\n        type: duckdb\n" in text


def test_second_adapter_of_type_gets_new_name(make_project, run_prism):
    project, first = connect(make_project, run_prism, COMMENTED, "--type", "sqlite")
    second = run_prism("connect", "--type", "sqlite", cwd=project)

    adapters = parsed((project / "profile.yml").read_text())["dev"]["adapters"]
    assert first.returncode == 0
    assert second.returncode == 0, second.stdout + second.stderr
    assert list(adapters) == ["cache", "sqlite", "sqlite_2"]
    assert "'sqlite_2'" in second.stdout


def test_profile_selected_with_vars(make_project, run_prism):
    project, result = connect(
        make_project, run_prism, COMMENTED, "--type", "trino", "-v", "PROFILE=prod"
    )

    profiles = parsed((project / "profile.yml").read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(profiles["prod"]["adapters"]) == ["warehouse", "trino"]
    assert list(profiles["dev"]["adapters"]) == ["cache"]


def test_missing_file_is_created(make_project, run_prism):
    project, result = connect(make_project, run_prism, None, "--type", "duckdb")

    profile = yaml.safe_load((project / "profile.yml").read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert profile == {
        "dev": {"adapters": {"duckdb": {"type": "duckdb", "database": "data.duckdb"}}}
    }
    assert "Created profile.yml" in result.stdout


def test_created_adapter_runs_after_connect(make_project, run_prism):
    project, result = connect(make_project, run_prism, None, "--type", "sqlite")
    (project / "tasks" / "a.py").write_text(
        textwrap.dedent(
            """
            from prism.decorators import task

            @task()
            def a(tasks, hooks):
                return hooks.sql("sqlite", "SELECT 1")
            """
        )
    )

    run = run_prism("run", cwd=project)

    assert result.returncode == 0
    assert run.returncode == 0, run.stdout + run.stderr
    assert (project / "data.sqlite").is_file()


def test_profile_missing_from_file_is_appended(make_project, run_prism):
    project, result = connect(
        make_project, run_prism, COMMENTED, "--type", "sqlite", "-v", "PROFILE=qa"
    )

    text = (project / "profile.yml").read_text()
    assert result.returncode == 0, result.stdout + result.stderr
    assert text.startswith(COMMENTED)
    assert parsed(text)["qa"]["adapters"]["sqlite"]["type"] == "sqlite"


def test_empty_adapters_mapping_is_filled(make_project, run_prism):
    profile = "dev:\n  adapters: {}  # none yet\nother:\n  adapters: {}\n"

    project, result = connect(make_project, run_prism, profile, "--type", "sqlite")

    data = yaml.safe_load((project / "profile.yml").read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(data["dev"]["adapters"]) == ["sqlite"]
    assert data["other"] == {"adapters": {}}


def test_profile_without_adapters_key(make_project, run_prism):
    project, result = connect(make_project, run_prism, "dev:\n", "--type", "sqlite")

    data = yaml.safe_load((project / "profile.yml").read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(data["dev"]["adapters"]) == ["sqlite"]


def test_flow_style_file_is_left_unchanged(make_project, run_prism):
    profile = "dev: {adapters: {cache: {type: sqlite, database: a.db}}}\n"

    project, result = connect(make_project, run_prism, profile, "--type", "sqlite")

    assert_usage_error(result, "profile.yml: dev: written on one line")
    assert (project / "profile.yml").read_text() == profile


def test_unknown_type_suggests_one(make_project, run_prism):
    project, result = connect(make_project, run_prism, COMMENTED, "--type", "postgress")

    assert_usage_error(
        result, "unknown adapter type 'postgress'", "Did you mean 'postgres'?"
    )
    assert (project / "profile.yml").read_text() == COMMENTED


def test_no_profile_set_with_two_profiles(make_project, run_prism):
    project, result = connect(
        make_project, run_prism, COMMENTED, "--type", "sqlite", prism_project=""
    )

    assert_usage_error(result, "PROFILE is not set", "has 2 profiles")
    assert (project / "profile.yml").read_text() == COMMENTED


def test_every_type_has_a_valid_template(make_project, run_prism):
    types = (
        "postgres redshift sqlite duckdb sqlalchemy snowflake bigquery trino "
        "presto pyspark dbt"
    ).split()
    project, _ = connect(make_project, run_prism, None, "--type", "sqlite")
    for adapter_type in types[:-1]:
        result = run_prism("connect", "--type", adapter_type, cwd=project)
        assert result.returncode == 0, adapter_type + result.stderr

    text = (project / "profile.yml").read_text()
    adapters = yaml.safe_load(text.replace("{{", "'").replace("}}", "'"))["dev"][
        "adapters"
    ]
    assert {entry["type"] for entry in adapters.values()} == set(types[:-1])
