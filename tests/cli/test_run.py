"""End-to-end tests of `prism run`: the graph, data flow, failures and threads."""

from __future__ import annotations

import json
import re

from tests.conftest import (
    events,
    finished_by_task,
    of_type,
    ran_tasks,
    recording_task,
)

JSON = ("--log-format", "json")


def test_successful_run_exits_zero(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A"]


def test_run_executes_chain_in_dependency_order(make_project, run_prism):
    project = make_project(
        {
            "tasks/c.py": recording_task("C", "b"),
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B", "a"),
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A", "B", "C"]


def test_ref_returns_upstream_return_value(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B", "a", target="output/b.txt"),
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/b.txt").read_text() == "A+B"


def test_decorated_task_receives_upstream_output(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": """
                from prism.decorators import target, task
                from prism.target import Txt


                @task(targets=[target(type=Txt, loc="output/b.txt")])
                def load(tasks, hooks):
                    return tasks.ref("a") + "+load"
            """,
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/b.txt").read_text() == "A+load"


def test_local_ref_reaches_task_in_same_module(make_project, run_prism):
    project = make_project(
        {
            "tasks/pair.py": """
                from prism.decorators import target
                from prism.target import Txt
                from prism.task import PrismTask


                class First(PrismTask):
                    def run(self, tasks, hooks):
                        return "first"


                class Second(PrismTask):
                    @target(type=Txt, loc="output/second.txt")
                    def run(self, tasks, hooks):
                        return tasks.ref("First", local=True) + "+second"
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/second.txt").read_text() == "first+second"


def test_ref_with_task_name_picks_that_task(make_project, run_prism):
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
            "tasks/b.py": recording_task("B", "pair.Right", target="output/b.txt"),
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/b.txt").read_text() == "right+B"


def test_ref_to_nested_module_resolves(make_project, run_prism):
    project = make_project(
        {
            "tasks/extract/raw/a.py": recording_task("A"),
            "tasks/b.py": recording_task("B", "extract/raw/a", target="output/b.txt"),
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/b.txt").read_text() == "A+B"


def test_ref_in_nested_function_found(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": """
                from prism.decorators import target
                from prism.target import Txt
                from prism.task import PrismTask


                class B(PrismTask):
                    @target(type=Txt, loc="output/b.txt")
                    def run(self, tasks, hooks):
                        def upstream():
                            return tasks.ref("a")

                        return upstream() + "+B"
            """,
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/b.txt").read_text() == "A+B"
    manifest = json.loads((project / ".compiled/manifest.json").read_text())
    assert manifest["refs"]["b"]["B"] == ["a.A"]


def test_module_with_two_tasks_runs_both(make_project, run_prism):
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

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    finished = finished_by_task(events(result.stdout))
    assert set(finished) == {"pair.Left", "pair.Right"}


def test_helper_module_without_tasks_is_ignored(make_project, run_prism):
    project = make_project(
        {
            "tasks/helpers.py": """
                def shout(text):
                    return text.upper()
            """,
            "tasks/a.py": recording_task("A"),
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert of_type(events(result.stdout), "run_started")[0]["tasks"] == ["a.A"]


def test_task_ids_use_module_path_and_name(make_project, run_prism):
    project = make_project(
        {
            "tasks/extract/orders.py": recording_task("LoadOrders"),
            "tasks/report.py": """
                from prism.decorators import task


                @task()
                def build_report(tasks, hooks):
                    return "report"
            """,
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    started = of_type(events(result.stdout), "run_started")[0]
    assert sorted(started["tasks"]) == [
        "extract/orders.LoadOrders",
        "report.build_report",
    ]


def test_failed_task_exits_one(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        raise ValueError("broken input")
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 1, result.stdout + result.stderr


def test_failed_task_skips_its_downstream(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        raise ValueError("broken input")
            """,
            "tasks/b.py": recording_task("B", "a"),
            "tasks/c.py": recording_task("C", "b"),
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 1
    finished = finished_by_task(events(result.stdout))
    assert finished["a.A"]["status"] == "failed"
    for task_id in ("b.B", "c.C"):
        assert finished[task_id]["status"] == "skipped"
        assert finished[task_id]["reason"] == "upstream_failed"
        assert finished[task_id]["attempts"] == 0
    assert finished["b.B"]["upstream"] == "a.A"
    assert ran_tasks(project) == []


def test_independent_task_runs_after_failure(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        raise ValueError("broken input")
            """,
            "tasks/b.py": recording_task("B", "a"),
            "tasks/z.py": recording_task("Z"),
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 1
    assert ran_tasks(project) == ["Z"]
    assert finished_by_task(events(result.stdout))["z.Z"]["status"] == "done"


def test_run_finished_counts_each_status(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        raise ValueError("broken input")
            """,
            "tasks/b.py": recording_task("B", "a"),
            "tasks/y.py": recording_task("Y"),
            "tasks/z.py": recording_task("Z"),
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    finished = of_type(events(result.stdout), "run_finished")[0]
    assert finished["exit_code"] == 1
    assert finished["counts"]["done"] == 2
    assert finished["counts"]["failed"] == 1
    assert finished["counts"]["skipped"] == 1
    assert finished["counts"]["not_run"] == 0
    assert finished["failed"] == ["a.A"]


def test_run_started_lists_tasks_in_run_order(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A", "b"),
            "tasks/b.py": recording_task("B", "c"),
            "tasks/c.py": recording_task("C"),
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    started = of_type(events(result.stdout), "run_started")[0]
    assert started["tasks"] == ["c.C", "b.B", "a.A"]
    assert started["total"] == 3


def test_single_thread_never_overlaps_tasks(make_project, run_prism):
    files = {f"tasks/t{i}.py": recording_task(f"T{i}") for i in range(4)}
    project = make_project(files)

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    lifecycle = [
        event["event"]
        for event in events(result.stdout)
        if event["event"] in ("task_started", "task_finished")
    ]
    assert lifecycle == ["task_started", "task_finished"] * 4


def test_ready_task_not_blocked_by_slow_task(make_project, run_prism):
    # `b` and the independent `c` each wait for the other, so the run succeeds
    # only if `b` starts as soon as `a` finishes while `c` is still running.
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": """
                import time
                from pathlib import Path

                from prism.task import PrismTask


                class B(PrismTask):
                    def run(self, tasks, hooks):
                        deadline = time.monotonic() + 3
                        while not Path("c_started").exists():
                            if time.monotonic() > deadline:
                                raise RuntimeError("c.C did not run beside b.B")
                            time.sleep(0.05)
                        Path("b_finished").write_text(tasks.ref("a"))
                        return "B"
            """,
            "tasks/c.py": """
                import time
                from pathlib import Path

                from prism.task import PrismTask


                class C(PrismTask):
                    def run(self, tasks, hooks):
                        Path("c_started").write_text("yes")
                        deadline = time.monotonic() + 3
                        while not Path("b_finished").exists():
                            if time.monotonic() > deadline:
                                raise RuntimeError("b.B waited for c.C")
                            time.sleep(0.05)
                        return "C"
            """,
        },
        prism_project="THREADS = 2\n",
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    finished = finished_by_task(events(result.stdout))
    assert finished["b.B"]["status"] == "done"
    assert finished["c.C"]["status"] == "done"


def test_independent_task_not_blocked_by_dispatch(make_project, run_prism):
    # Every valid order has `b` waiting for `a`, and `a` only finishes once the
    # independent `c` has started, so a dispatcher that blocks on `b` times out.
    project = make_project(
        {
            "tasks/a.py": """
                import time
                from pathlib import Path

                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        deadline = time.monotonic() + 3
                        while not Path("c_started").exists():
                            if time.monotonic() > deadline:
                                raise RuntimeError("c.C never started")
                            time.sleep(0.05)
                        return "A"
            """,
            "tasks/b.py": recording_task("B", "a"),
            "tasks/c.py": """
                from pathlib import Path

                from prism.task import PrismTask


                class C(PrismTask):
                    def run(self, tasks, hooks):
                        Path("c_started").write_text("yes")
                        return "C"
            """,
        },
        prism_project="THREADS = 2\n",
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert finished_by_task(events(result.stdout))["a.A"]["status"] == "done"


def test_threads_setting_reported_in_run_started(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A")}, prism_project="THREADS = 3\n"
    )

    result = run_prism("run", *JSON, cwd=project)

    assert of_type(events(result.stdout), "run_started")[0]["threads"] == 3


def test_threads_default_to_one(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")}, prism_project="")

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert of_type(events(result.stdout), "run_started")[0]["threads"] == 1


def test_missing_run_id_and_slug_are_generated(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", *JSON, cwd=project)

    started = of_type(events(result.stdout), "run_started")[0]
    assert re.fullmatch(r"[0-9a-f]{32}", started["run_id"])
    assert isinstance(started["slug"], str)
    assert started["slug"]


def test_project_run_id_and_slug_are_used(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A")},
        prism_project="""
            RUN_ID = "run-42"
            SLUG = "quiet-otter"
        """,
    )

    result = run_prism("run", *JSON, cwd=project)

    started = of_type(events(result.stdout), "run_started")[0]
    assert started["run_id"] == "run-42"
    assert started["slug"] == "quiet-otter"


def test_run_started_reports_project_and_version(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", *JSON, cwd=project)

    started = of_type(events(result.stdout), "run_started")[0]
    assert started["schema"] == 1
    assert started["project"] == str(project.resolve())
    assert isinstance(started["prism_version"], str)


def test_run_from_subfolder_finds_project(make_project, run_prism):
    project = make_project({"tasks/deep/a.py": recording_task("A")})

    result = run_prism("run", cwd=project / "tasks" / "deep")

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A"]


def test_tasks_run_inside_project_folder(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from pathlib import Path

                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        Path("cwd.txt").write_text(str(Path.cwd()))
                        return "A"
            """
        }
    )

    result = run_prism("run", cwd=project / "tasks")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "cwd.txt").read_text() == str(project.resolve())


def test_var_is_visible_on_prism_project(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from pathlib import Path

                import prism_project
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        Path("value.txt").write_text(repr(prism_project.COLOR))
                        return "A"
            """
        },
        prism_project='COLOR = "red"\n',
    )

    result = run_prism("run", "-v", "COLOR=blue", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "value.txt").read_text() == "'blue'"


def test_var_value_keeps_later_equals(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from pathlib import Path

                import prism_project
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        Path("value.txt").write_text(prism_project.QUERY)
                        return "A"
            """
        }
    )

    result = run_prism("run", "--vars", "QUERY=x=y", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "value.txt").read_text() == "x=y"


def test_repeated_vars_all_apply(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from pathlib import Path

                import prism_project
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        text = prism_project.FIRST + "," + prism_project.SECOND
                        Path("value.txt").write_text(text)
                        return "A"
            """
        }
    )

    result = run_prism("run", "-v", "FIRST=1", "-v", "SECOND=2", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "value.txt").read_text() == "1,2"


def test_context_keeps_json_types(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from pathlib import Path

                import prism_project
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        Path("value.txt").write_text(repr(prism_project.LIMITS))
                        return "A"
            """
        }
    )

    result = run_prism("run", "--context", '{"LIMITS": {"rows": 3}}', cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "value.txt").read_text() == "{'rows': 3}"


def test_var_wins_over_context(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from pathlib import Path

                import prism_project
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        text = prism_project.MODE + "," + prism_project.LEVEL
                        Path("value.txt").write_text(text)
                        return "A"
            """
        }
    )

    result = run_prism(
        "run",
        "--context",
        '{"MODE": "context", "LEVEL": "context"}',
        "-v",
        "MODE=vars",
        cwd=project,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "value.txt").read_text() == "vars,context"


def test_threads_var_is_coerced_to_int(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "-v", "THREADS=2", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert of_type(events(result.stdout), "run_started")[0]["threads"] == 2


def test_threads_context_sets_worker_count(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "--context", '{"THREADS": 2}', *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert of_type(events(result.stdout), "run_started")[0]["threads"] == 2


def test_sql_hook_without_profile_fails_clearly(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        return hooks.sql(adapter_name="warehouse", query="SELECT 1")
            """
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 1
    error = finished_by_task(events(result.stdout))["a.A"]["error"]
    assert "warehouse" in error["message"]
    assert "profile.yml" in error["message"]


def test_connection_hook_without_profile_fails_clearly(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        hooks.get_connection("warehouse")
                        return "A"
            """
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 1
    error = finished_by_task(events(result.stdout))["a.A"]["error"]
    assert "warehouse" in error["message"]
    assert "profile.yml" in error["message"]
