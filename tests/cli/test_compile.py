"""End-to-end tests of `prism compile` and the manifest it writes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import assert_usage_error, ran_tasks, recording_task

PROJECT_FILE = """\
from pathlib import Path

Path("prism_project_ran.txt").write_text("executed")
THREADS = 1
"""


def read_manifest(project: Path) -> dict:
    return json.loads((project / ".compiled/manifest.json").read_text())


def test_compile_writes_manifest_with_keys(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("compile", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    manifest = read_manifest(project)
    assert {"targets", "prism_project", "tasks", "refs"} <= set(manifest)


def test_compile_does_not_run_tasks(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("compile", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == []


def test_compile_does_not_execute_project_file(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")}, PROJECT_FILE)

    result = run_prism("compile", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert not (project / "prism_project_ran.txt").exists()


def test_manifest_holds_project_file_text(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")}, PROJECT_FILE)

    run_prism("compile", cwd=project)

    assert read_manifest(project)["prism_project"] == PROJECT_FILE


def test_manifest_refs_list_upstream_ids(make_project, run_prism):
    project = make_project(
        {
            "tasks/extract/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B", "extract/a"),
        }
    )

    run_prism("compile", cwd=project)

    refs = read_manifest(project)["refs"]
    assert refs["b"]["B"] == ["extract/a.A"]
    assert refs["extract/a"]["A"] == []


def test_manifest_tasks_group_nested_folders(make_project, run_prism):
    project = make_project(
        {
            "tasks/extract/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B"),
        }
    )

    run_prism("compile", cwd=project)

    tasks = read_manifest(project)["tasks"]
    assert tasks["b"] == ["B"]
    assert tasks["extract/"]["a"] == ["A"]


def test_manifest_targets_keep_location_source(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A", target="output/a.txt")})

    run_prism("compile", cwd=project)

    assert read_manifest(project)["targets"]["a"]["A"] == ["'output/a.txt'"]


def test_run_writes_manifest_too(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert read_manifest(project)["refs"]["a"]["A"] == []


def test_compile_from_subfolder_writes_in_project(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("compile", cwd=project / "tasks")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / ".compiled/manifest.json").is_file()
    assert not (project / "tasks/.compiled").exists()


def test_compile_rejects_cycle(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A", "b"),
            "tasks/b.py": recording_task("B", "a"),
        }
    )

    result = run_prism("compile", cwd=project)

    assert_usage_error(result, "a.A", "b.B")
