"""End-to-end tests of `prism create task` and the stubs it writes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import events, finished_by_task, recording_task


def top_level_names(path: Path) -> tuple[set[str], set[str]]:
    """Return the class names and function names defined at the top of a module."""
    tree = ast.parse(path.read_text())
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    return classes, functions


@pytest.fixture
def project(make_project):
    return make_project({"tasks/existing.py": recording_task("Existing")})


def test_create_task_writes_class_stub(project, run_prism):
    result = run_prism("create", "task", "--name", "load_data", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    classes, _ = top_level_names(project / "tasks/load_data.py")
    assert "LoadData" in classes


def test_create_decorated_task_writes_function(project, run_prism):
    result = run_prism(
        "create", "task", "--name", "load_data", "--decorated", cwd=project
    )

    assert result.returncode == 0, result.stdout + result.stderr
    _, functions = top_level_names(project / "tasks/load_data.py")
    assert "load_data" in functions


def test_create_task_number_writes_numbered_files(project, run_prism):
    result = run_prism(
        "create", "task", "--name", "load_data", "--number", "3", cwd=project
    )

    assert result.returncode == 0, result.stdout + result.stderr
    created = sorted(path.name for path in (project / "tasks").glob("load_data*.py"))
    assert created == ["load_data_1.py", "load_data_2.py", "load_data_3.py"]


def test_create_task_dir_uses_subfolder(project, run_prism):
    result = run_prism(
        "create", "task", "--name", "load_data", "--dir", "extract", cwd=project
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "tasks/extract/load_data.py").is_file()
    assert not (project / "tasks/load_data.py").exists()


def test_create_task_defaults_to_new_task(project, run_prism):
    result = run_prism("create", "task", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    classes, _ = top_level_names(project / "tasks/new_task.py")
    assert "NewTask" in classes


def test_create_pyspark_task_writes_stub(project, run_prism):
    result = run_prism(
        "create", "task", "--type", "pyspark", "--name", "spark_job", cwd=project
    )

    assert result.returncode == 0, result.stdout + result.stderr
    classes, _ = top_level_names(project / "tasks/spark_job.py")
    assert "SparkJob" in classes


def test_created_class_stub_runs(project, run_prism):
    run_prism("create", "task", "--name", "load_data", cwd=project)

    result = run_prism("run", "--log-format", "json", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    finished = finished_by_task(events(result.stdout))
    assert finished["load_data.LoadData"]["status"] == "done"


def test_created_decorated_stub_runs(project, run_prism):
    run_prism("create", "task", "--name", "load_data", "--decorated", cwd=project)

    result = run_prism("run", "--log-format", "json", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    finished = finished_by_task(events(result.stdout))
    assert finished["load_data.load_data"]["status"] == "done"


@pytest.mark.parametrize("flags", [(), ("--decorated",)], ids=["class", "decorated"])
def test_created_numbered_stubs_all_run(project, run_prism, flags):
    run_prism("create", "task", "--name", "step", "--number", "2", *flags, cwd=project)

    result = run_prism("run", "--log-format", "json", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    finished = finished_by_task(events(result.stdout))
    created = [task for task in finished if task.startswith("step_")]
    assert len(created) == 2
    assert all(finished[task]["status"] == "done" for task in created)


def test_created_stub_in_subfolder_runs(project, run_prism):
    run_prism("create", "task", "--name", "load_data", "--dir", "extract", cwd=project)

    result = run_prism("run", "--log-format", "json", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    finished = finished_by_task(events(result.stdout))
    assert finished["extract/load_data.LoadData"]["status"] == "done"


def test_create_task_works_from_subfolder(project, run_prism):
    result = run_prism("create", "task", "--name", "load_data", cwd=project / "tasks")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "tasks/load_data.py").is_file()
    assert not (project / "tasks/tasks").exists()
