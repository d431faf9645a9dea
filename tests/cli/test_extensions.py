"""Forms Prism 0.2.x rejected that now run, and trigger set-up errors."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.conftest import assert_usage_error, events, finished_by_task, prism_env

JSON = ("--log-format", "json")
TRIVIAL = """\
from prism.decorators import task


@task()
def a(tasks, hooks):
    return 1
"""


def test_bare_task_decorator_runs(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                from prism.decorators import task


                @task
                def bare(tasks, hooks):
                    return 41
            """,
            "tasks/b.py": """\
                from prism.decorators import task


                @task()
                def uses(tasks, hooks):
                    assert tasks.ref("a") == 41
                    return 42
            """,
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert finished_by_task(events(result.stdout))["a.bare"]["status"] == "done"


def test_main_guard_in_task_module_allowed(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                from prism.decorators import task


                @task()
                def a(tasks, hooks):
                    return 1


                if __name__ == "__main__":
                    raise SystemExit("must not run under prism")
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr


def test_run_returning_none_is_allowed(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                import prism.task


                class A(prism.task.PrismTask):
                    def run(self, tasks, hooks):
                        return None
            """,
            "tasks/b.py": """\
                from prism.decorators import task


                @task()
                def b(tasks, hooks):
                    assert tasks.ref("a") is None
                    return 1
            """,
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_triggers_file_exits_two(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": TRIVIAL,
        },
        prism_project="TRIGGERS = {'on_success': ['notify'], 'on_failure': []}\n",
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "triggers.yml", "does not exist")
    assert "RUN" not in result.stdout


def test_unknown_trigger_name_exits_two(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": TRIVIAL,
            "triggers.yml": """\
                triggers:
                  other:
                    type: function
                    function: os.getcwd
            """,
        },
        prism_project="TRIGGERS = {'on_success': ['notify'], 'on_failure': []}\n",
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "notify", "not defined", "other")


def test_prism_project_trigger_type_rejected(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": TRIVIAL,
            "triggers.yml": """\
                triggers:
                  notify:
                    type: prism_project
                    project_dir: elsewhere
            """,
        },
        prism_project="TRIGGERS = {'on_success': ['notify'], 'on_failure': []}\n",
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "notify", "'prism_project'", "function")


def test_usage_error_with_full_tb_shows_traceback(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": TRIVIAL.replace("return 1", "return tasks.ref('nope')"),
        }
    )

    result = run_prism("run", "--full-tb", cwd=project)

    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert "Error: " in result.stderr


def test_json_usage_error_ends_with_run_finished(make_project, run_prism):
    project = make_project({"tasks/a.py": TRIVIAL})

    result = run_prism("run", *JSON, "-v", "NOEQUALS", cwd=project)

    assert result.returncode == 2
    (finished,) = events(result.stdout)
    assert finished["event"] == "run_finished"
    assert finished["exit_code"] == 2
    assert "NOEQUALS" in finished["error"]
    assert set(finished["counts"]) == {"done", "failed", "skipped", "not_run"}


def test_unimportable_trigger_fails_before_tasks(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": TRIVIAL,
            "triggers.yml": """\
                triggers:
                  notify:
                    type: function
                    function: no_such_module_xyz.notify
            """,
        },
        prism_project="TRIGGERS = {'on_success': ['notify'], 'on_failure': []}\n",
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "notify", "no_such_module_xyz.notify")
    assert "RUN" not in result.stdout


def test_init_without_answer_needs_name(tmp_path, run_prism):
    result = run_prism("init", cwd=tmp_path, input="")

    assert_usage_error(result, "--project-name")


def test_json_unknown_flag_ends_with_run_finished(make_project, run_prism):
    project = make_project({"tasks/a.py": TRIVIAL})

    result = run_prism("run", "--log-format", "json", "--bogus", cwd=project)

    assert result.returncode == 2
    (finished,) = events(result.stdout)
    assert finished["exit_code"] == 2
    assert "--bogus" in finished["error"]


def test_second_interrupt_stops_stubborn_task(make_project):
    project = make_project(
        {
            "tasks/stubborn.py": """\
                import time
                from prism.decorators import task


                @task()
                def stubborn(tasks, hooks):
                    for second in range(60):
                        try:
                            if second == 0:
                                print("started", flush=True)
                            time.sleep(1)
                        except KeyboardInterrupt:
                            print("ignored", flush=True)
                    return 1
            """
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "prism", "run"],
        cwd=project,
        env=prism_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = ""
    for expected in ("started", "ignored"):
        while expected not in seen:
            line = process.stdout.readline()
            assert line, f"prism ended before printing {expected!r}:\n{seen}"
            seen += line
        if expected == "started":
            process.send_signal(signal.SIGINT)

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=10) == 130
