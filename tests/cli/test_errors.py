"""End-to-end tests of bad input: each one exits 2 with a one-line `Error:` message."""

from __future__ import annotations

import re

from tests.conftest import (
    assert_usage_error,
    events,
    flat,
    of_type,
    ran_tasks,
    recording_task,
)

CLASS_WITH_WRONG_RUN = """\
from prism.task import PrismTask


class Bad(PrismTask):
    def run(self, tasks):
        return "bad"
"""


def ref_task(call: str) -> str:
    """Return a module `b` whose task B makes `call` on line 6."""
    return (
        "from prism.task import PrismTask\n"
        "\n"
        "\n"
        "class B(PrismTask):\n"
        "    def run(self, tasks, hooks):\n"
        f"        return {call}\n"
    )


def assert_mentions_location(stderr: str, path: str, lines: tuple[int, ...]) -> None:
    pattern = re.escape(path) + r":(\d+)"
    found = [int(line) for line in re.findall(pattern, flat(stderr))]
    assert found, f"{path}:<line> not in stderr: {stderr!r}"
    assert set(found) & set(lines), f"expected {path} line in {lines}: {stderr!r}"


def test_missing_project_file_exits_two(tmp_path, run_prism):
    folder = tmp_path / "not_a_project"
    folder.mkdir()

    result = run_prism("run", cwd=folder)

    assert_usage_error(result, "prism_project.py")


def test_compile_without_project_file_exits_two(tmp_path, run_prism):
    folder = tmp_path / "not_a_project"
    folder.mkdir()

    result = run_prism("compile", cwd=folder)

    assert_usage_error(result, "prism_project.py")


def test_missing_tasks_folder_exits_two(make_project, run_prism):
    project = make_project({"output/.keep": ""})

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "tasks")


def test_project_without_tasks_exits_two(make_project, run_prism):
    project = make_project({"tasks/helpers.py": "def helper():\n    return 1\n"})

    result = run_prism("run", cwd=project)

    assert_usage_error(result)


def test_task_syntax_error_names_file_and_line(make_project, run_prism):
    project = make_project(
        {
            "tasks/good.py": recording_task("Good"),
            "tasks/bad.py": """\
                from prism.task import PrismTask

                class Bad(PrismTask)
                    def run(self, tasks, hooks):
                        return "bad"
            """,
        }
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "tasks/bad.py:3")
    assert ran_tasks(project) == []


def test_run_with_wrong_parameters_exits_two(make_project, run_prism):
    project = make_project({"tasks/bad.py": CLASS_WITH_WRONG_RUN})

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "tasks/bad.py", "run")
    assert_mentions_location(result.stderr, "tasks/bad.py", (4, 5))


def test_decorated_task_with_wrong_parameters_exits_two(make_project, run_prism):
    project = make_project(
        {
            "tasks/bad.py": """\
                from prism.decorators import task


                @task()
                def load(data):
                    return data
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "tasks/bad.py")
    assert_mentions_location(result.stderr, "tasks/bad.py", (4, 5))


def test_non_literal_ref_names_file_and_line(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A"), "tasks/b.py": ref_task("tasks.ref(NAME)")}
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "tasks/b.py:6")


def test_ref_to_unknown_module_exits_two(make_project, run_prism):
    project = make_project({"tasks/b.py": ref_task("tasks.ref('nowhere')")})

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "nowhere", "tasks/b.py:6")


def test_ref_to_unknown_task_exits_two(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": ref_task("tasks.ref('a.Missing')"),
        }
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "Missing", "tasks/b.py:6")


def test_ambiguous_module_ref_exits_two(make_project, run_prism):
    project = make_project(
        {
            "tasks/pair.py": """\
                from prism.task import PrismTask


                class Left(PrismTask):
                    def run(self, tasks, hooks):
                        return "left"


                class Right(PrismTask):
                    def run(self, tasks, hooks):
                        return "right"
            """,
            "tasks/b.py": ref_task("tasks.ref('pair')"),
        }
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "pair", "tasks/b.py:6")


def test_self_reference_exits_two(make_project, run_prism):
    project = make_project({"tasks/b.py": ref_task("tasks.ref('B', local=True)")})

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "tasks/b.py:6")


def test_same_module_ref_needs_local_flag(make_project, run_prism):
    project = make_project(
        {
            "tasks/b.py": """\
                from prism.task import PrismTask


                class First(PrismTask):
                    def run(self, tasks, hooks):
                        return "first"


                class Second(PrismTask):
                    def run(self, tasks, hooks):
                        return tasks.ref("b")
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "local=True", "tasks/b.py:11")


def test_same_module_dotted_ref_runs(make_project, run_prism):
    # Prism 0.2.x rejected this form; naming the module and task is unambiguous.
    project = make_project(
        {
            "tasks/b.py": """\
                from prism.task import PrismTask


                class First(PrismTask):
                    def run(self, tasks, hooks):
                        return "first"


                class Second(PrismTask):
                    def run(self, tasks, hooks):
                        assert tasks.ref("b.First") == "first"
                        return "second"
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr


def test_cycle_names_its_tasks(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A", "c"),
            "tasks/b.py": recording_task("B", "a"),
            "tasks/c.py": recording_task("C", "b"),
        }
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "a.A", "b.B", "c.C")
    assert ran_tasks(project) == []


def test_cycle_message_omits_outside_tasks(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A", "b"),
            "tasks/b.py": recording_task("B", "a"),
            "tasks/outside.py": recording_task("Outside", "a"),
        }
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "a.A", "b.B")
    assert "outside.Outside" not in result.stderr


def test_bad_task_stops_run_before_any_task(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "tasks/b.py": ref_task("tasks.ref('nowhere')"),
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 2
    assert ran_tasks(project) == []


def test_class_retries_not_integer_exits_two(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                from prism.task import PrismTask


                class A(PrismTask):
                    RETRIES = "two"

                    def run(self, tasks, hooks):
                        return "A"
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "tasks/a.py")


def test_decorated_retries_not_integer_exits_two(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                from prism.decorators import task


                @task(retries="two")
                def a(tasks, hooks):
                    return "a"
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "tasks/a.py")


def test_var_without_equals_exits_two(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "-v", "COLOR", cwd=project)

    assert_usage_error(result, "-v", "COLOR")
    assert ran_tasks(project) == []


def test_context_invalid_json_exits_two(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "--context", "{COLOR: red", cwd=project)

    assert_usage_error(result, "--context")
    assert ran_tasks(project) == []


def test_context_json_list_exits_two(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "--context", '["COLOR", "red"]', cwd=project)

    assert_usage_error(result, "--context")


def test_threads_var_not_integer_exits_two(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "-v", "THREADS=many", cwd=project)

    assert_usage_error(result, "THREADS")


def test_unknown_task_module_flag_exits_two(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "-t", "nowhere", cwd=project)

    assert_usage_error(result, "nowhere", "-t")
    assert ran_tasks(project) == []


def test_unknown_task_class_flag_exits_two(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "-t", "a.Missing", cwd=project)

    assert_usage_error(result, "a.Missing", "-t")
    assert ran_tasks(project) == []


def test_unknown_option_exits_two(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "--bogus", cwd=project)

    assert_usage_error(result, "--bogus")


def test_unknown_log_level_exits_two(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "-l", "loud", cwd=project)

    assert_usage_error(result, "loud")


def test_unknown_log_format_exits_two(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("run", "--log-format", "xml", cwd=project)

    assert_usage_error(result, "xml")


def test_project_file_syntax_error_names_line(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A")},
        prism_project="THREADS = 1\nNAME = (\n",
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "prism_project.py:2")


def test_project_file_exception_exits_two(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A")},
        prism_project="THREADS = 1\nraise RuntimeError('settings unavailable')\n",
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "prism_project.py", "settings unavailable")


def test_threads_setting_not_integer_exits_two(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A")}, prism_project='THREADS = "many"\n'
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "THREADS")


def test_sys_path_conf_not_list_exits_two(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A")},
        prism_project='THREADS = 1\nSYS_PATH_CONF = "lib"\n',
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "SYS_PATH_CONF")


def test_triggers_setting_with_unknown_key_exits_two(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A")},
        prism_project="THREADS = 1\nTRIGGERS = {'on_start': []}\n",
    )

    result = run_prism("run", cwd=project)

    assert_usage_error(result, "TRIGGERS")


def test_config_error_emits_run_finished(make_project, run_prism):
    project = make_project({"tasks/b.py": ref_task("tasks.ref('nowhere')")})

    result = run_prism("run", "--log-format", "json", cwd=project)

    assert result.returncode == 2
    parsed = events(result.stdout)
    assert parsed[-1]["event"] == "run_finished"
    assert parsed[-1]["exit_code"] == 2
    assert "nowhere" in parsed[-1]["error"]
    assert of_type(parsed, "run_started") == []


def test_init_into_existing_folder_exits_two(tmp_path, run_prism):
    existing = tmp_path / "demo"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")

    result = run_prism("init", "--project-name", "demo", cwd=tmp_path)

    assert_usage_error(result, "demo")
    assert sorted(path.name for path in existing.iterdir()) == ["notes.txt"]
    assert (existing / "notes.txt").read_text() == "keep me"


def test_create_task_refuses_to_overwrite(make_project, run_prism):
    project = make_project({"tasks/load_data.py": recording_task("Original")})

    result = run_prism("create", "task", "--name", "load_data", cwd=project)

    assert_usage_error(result, "tasks/load_data.py")
    assert (project / "tasks/load_data.py").read_text() == recording_task("Original")


def test_create_task_invalid_name_exits_two(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A")})

    result = run_prism("create", "task", "--name", "Load-Data", cwd=project)

    assert_usage_error(result, "Load-Data")
    assert sorted(path.name for path in (project / "tasks").glob("*.py")) == ["a.py"]
