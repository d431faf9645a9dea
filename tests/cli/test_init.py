"""End-to-end tests of `prism init` and the starter projects it creates."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import events, of_type

GENERATED = {".compiled", "logs.log", ".prism", "__pycache__"}


def project_files(project: Path) -> set[Path]:
    return {
        path.relative_to(project)
        for path in project.rglob("*")
        if path.is_file() and not GENERATED & set(path.relative_to(project).parts)
    }


@pytest.mark.parametrize("flags", [(), ("--minimal",)], ids=["starter", "minimal"])
def test_init_creates_project_with_tasks(tmp_path, run_prism, flags):
    result = run_prism("init", "--project-name", "demo", *flags, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    project = tmp_path / "demo"
    assert (project / "prism_project.py").is_file()
    assert list((project / "tasks").rglob("*.py"))


@pytest.mark.parametrize("flags", [(), ("--minimal",)], ids=["starter", "minimal"])
def test_new_project_runs_on_first_try(tmp_path, run_prism, flags):
    run_prism("init", "--project-name", "demo", *flags, cwd=tmp_path)
    project = tmp_path / "demo"
    before = project_files(project)

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert project_files(project) - before, "the first run wrote no output file"


@pytest.mark.parametrize("flags", [(), ("--minimal",)], ids=["starter", "minimal"])
def test_new_project_tasks_all_succeed(tmp_path, run_prism, flags):
    run_prism("init", "--project-name", "demo", *flags, cwd=tmp_path)

    result = run_prism("run", "--log-format", "json", cwd=tmp_path / "demo")

    finished = of_type(events(result.stdout), "run_finished")[0]
    assert finished["counts"]["failed"] == 0
    assert finished["counts"]["done"] >= 1


def test_new_project_compiles(tmp_path, run_prism):
    run_prism("init", "--project-name", "demo", cwd=tmp_path)

    result = run_prism("compile", cwd=tmp_path / "demo")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "demo/.compiled/manifest.json").is_file()


def test_init_writes_project_name(tmp_path, run_prism):
    run_prism("init", "--project-name", "demo_pipeline", cwd=tmp_path)

    text = (tmp_path / "demo_pipeline/prism_project.py").read_text()

    assert "demo_pipeline" in text


def test_init_prompts_for_missing_name(tmp_path, run_prism):
    result = run_prism("init", cwd=tmp_path, input="asked_name\n")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "asked_name/prism_project.py").is_file()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("flags", [(), ("--minimal",)], ids=["starter", "minimal"])
def test_gitignore_ignores_generated_files(tmp_path, run_prism, flags):
    run_prism("init", "--project-name", "demo", *flags, cwd=tmp_path)
    project = tmp_path / "demo"
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)

    for generated in (".compiled/manifest.json", "logs.log", ".prism/state.db"):
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", generated], cwd=project
        )
        assert ignored.returncode == 0, f"{generated} is not ignored"
