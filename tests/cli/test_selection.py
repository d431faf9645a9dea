"""End-to-end tests of task selection: `-t`, `--all-upstream`, `--all-downstream`."""

from __future__ import annotations

from tests.conftest import (
    assert_usage_error,
    events,
    finished_by_task,
    flat,
    of_type,
    ran_tasks,
    recording_task,
)

JSON = ("--log-format", "json")


def warning_count(stdout: str) -> int:
    return sum(event["level"] == "warning" for event in of_type(events(stdout), "log"))


def test_task_flag_runs_only_selected_task(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A"), "tasks/b.py": recording_task("B")}
    )

    result = run_prism("run", "-t", "b", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["B"]


def test_long_task_flag_selects_task(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A"), "tasks/b.py": recording_task("B")}
    )

    result = run_prism("run", "--task", "a", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A"]


def test_task_flag_is_repeatable(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B"),
            "tasks/c.py": recording_task("C"),
        }
    )

    result = run_prism("run", "-t", "a", "-t", "c", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(ran_tasks(project)) == ["A", "C"]


def test_selected_task_counts_only_selection(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A"), "tasks/b.py": recording_task("B")}
    )

    result = run_prism("run", "-t", "b", *JSON, cwd=project)

    parsed = events(result.stdout)
    assert of_type(parsed, "run_started")[0]["total"] == 1
    assert of_type(parsed, "run_started")[0]["tasks"] == ["b.B"]
    started = of_type(parsed, "task_started")
    assert [(e["task"], e["index"], e["total"]) for e in started] == [("b.B", 1, 1)]


def test_selected_task_loads_upstream_from_target(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A", target="output/a.txt"),
            "tasks/b.py": recording_task("B", "a", target="output/b.txt"),
            "output/a.txt": "from-disk",
        }
    )

    result = run_prism("run", "-t", "b", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["B"]
    assert (project / "output/b.txt").read_text() == "from-disk+B"


def test_untargeted_upstream_stops_selected_run(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B", "a"),
            "tasks/c.py": recording_task("C"),
        }
    )

    result = run_prism("run", "-t", "b", "-t", "c", cwd=project)

    assert_usage_error(result, "a.A", "--all-upstream")
    assert ran_tasks(project) == []


def test_missing_upstream_target_file_fails_task(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A", target="output/a.txt"),
            "tasks/b.py": recording_task("B", "a"),
        }
    )

    result = run_prism("run", "-t", "b", cwd=project)

    assert result.returncode == 1, result.stdout + result.stderr
    output = flat(result.stdout + result.stderr)
    assert "a.A" in output
    assert "--all-upstream" in output


def test_missing_upstream_target_reported_on_task(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A", target="output/a.txt"),
            "tasks/b.py": recording_task("B", "a"),
        }
    )

    result = run_prism("run", "-t", "b", *JSON, cwd=project)

    finished = finished_by_task(events(result.stdout))
    assert finished["b.B"]["status"] == "failed"
    assert "--all-upstream" in finished["b.B"]["error"]["message"]


def test_all_upstream_runs_every_ancestor(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B", "a"),
            "tasks/c.py": recording_task("C", "b", target="output/c.txt"),
        }
    )

    result = run_prism("run", "-t", "c", "--all-upstream", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A", "B", "C"]
    assert (project / "output/c.txt").read_text() == "A+B+C"


def test_all_upstream_leaves_out_unrelated_tasks(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B", "a"),
            "tasks/c.py": recording_task("C", "b"),
            "tasks/u.py": recording_task("U"),
        }
    )

    result = run_prism("run", "-t", "b", "--all-upstream", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A", "B"]


def test_all_downstream_runs_descendants(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B", "a"),
            "tasks/c.py": recording_task("C", "b"),
        }
    )

    result = run_prism("run", "-t", "a", "--all-downstream", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A", "B", "C"]


def test_all_downstream_adds_descendant_ancestors(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/x.py": recording_task("X"),
            "tasks/c.py": recording_task("C", "a", "x", target="output/c.txt"),
        }
    )

    result = run_prism("run", "-t", "a", "--all-downstream", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(ran_tasks(project)) == ["A", "C", "X"]
    assert (project / "output/c.txt").read_text() == "A+X+C"


def test_all_downstream_leaves_out_unrelated_tasks(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B", "a"),
            "tasks/u.py": recording_task("U"),
            "tasks/v.py": recording_task("V", "u"),
        }
    )

    result = run_prism("run", "-t", "a", "--all-downstream", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A", "B"]


def test_module_selection_runs_all_its_tasks(make_project, run_prism):
    project = make_project(
        {
            "tasks/pair.py": """
                from prism.task import PrismTask


                class Left(PrismTask):
                    def run(self, tasks, hooks):
                        return "left"


                class Right(PrismTask):
                    def run(self, tasks, hooks):
                        return "right"
            """,
            "tasks/other.py": recording_task("Other"),
        }
    )

    result = run_prism("run", "-t", "pair", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(finished_by_task(events(result.stdout))) == {"pair.Left", "pair.Right"}


def test_module_and_class_selects_one_task(make_project, run_prism):
    project = make_project(
        {
            "tasks/pair.py": """
                from prism.task import PrismTask


                class Left(PrismTask):
                    def run(self, tasks, hooks):
                        return "left"


                class Right(PrismTask):
                    def run(self, tasks, hooks):
                        return "right"
            """
        }
    )

    result = run_prism("run", "-t", "pair.Right", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(finished_by_task(events(result.stdout))) == {"pair.Right"}


def test_nested_module_selection_runs_task(make_project, run_prism):
    project = make_project(
        {
            "tasks/extract/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B"),
        }
    )

    result = run_prism("run", "-t", "extract/a", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A"]


def test_directory_glob_selects_modules_in_folder(make_project, run_prism):
    project = make_project(
        {
            "tasks/extract/a.py": recording_task("A"),
            "tasks/extract/b.py": recording_task("B"),
            "tasks/load/c.py": recording_task("C"),
            "tasks/d.py": recording_task("D"),
        }
    )

    result = run_prism("run", "-t", "extract/*", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(ran_tasks(project)) == ["A", "B"]


def test_directory_glob_skips_nested_folders(make_project, run_prism):
    project = make_project(
        {
            "tasks/extract/a.py": recording_task("A"),
            "tasks/extract/deep/e.py": recording_task("E"),
        }
    )

    result = run_prism("run", "-t", "extract/*", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A"]


def test_py_suffix_selection_runs_with_warning(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A"), "tasks/b.py": recording_task("B")}
    )

    baseline = run_prism("run", "-t", "a", *JSON, cwd=project)
    (project / "ran.txt").unlink()

    result = run_prism("run", "-t", "a.py", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A"]
    assert warning_count(result.stdout) > warning_count(baseline.stdout)
