"""End-to-end tests of `on_success` and `on_failure` triggers from triggers.yml."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import events, of_type, recording_task

JSON = ("--log-format", "json")

ACTIONS = """
from pathlib import Path


def write_marker(path, text="ran"):
    Path(path).write_text(str(text))


def explode(**kwargs):
    raise RuntimeError("trigger exploded")
"""

TRIGGERS_YML = """
include:
  - "{{ wkdir() }}/trigger_lib"
triggers:
  mark_success:
    type: function
    function: actions.write_marker
    kwargs:
      path: "{{ wkdir() }}/success.txt"
  mark_failure:
    type: function
    function: actions.write_marker
    kwargs:
      path: "{{ wkdir() }}/failure.txt"
  explode:
    type: function
    function: actions.explode
"""

FAILING_TASK = """
from prism.task import PrismTask


class A(PrismTask):
    def run(self, tasks, hooks):
        raise ValueError("broken input")
"""


def project_settings(on_success: list[str], on_failure: list[str]) -> str:
    return (
        "from pathlib import Path\n"
        "\n"
        "THREADS = 1\n"
        "TRIGGERS_YML_PATH = Path(__file__).parent / 'triggers.yml'\n"
        f"TRIGGERS = {{'on_success': {on_success!r}, 'on_failure': {on_failure!r}}}\n"
    )


def trigger_project(make_project, task: str, on_success, on_failure, yml=TRIGGERS_YML):
    return make_project(
        {
            "tasks/a.py": task,
            "triggers.yml": yml,
            "trigger_lib/actions.py": ACTIONS,
        },
        prism_project=project_settings(on_success, on_failure),
    )


def test_on_success_trigger_runs_after_success(make_project, run_prism):
    project = trigger_project(
        make_project, recording_task("A"), ["mark_success"], ["mark_failure"]
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "success.txt").read_text() == "ran"
    assert not (project / "failure.txt").exists()


def test_on_failure_trigger_runs_after_task_failure(make_project, run_prism):
    project = trigger_project(
        make_project, FAILING_TASK, ["mark_success"], ["mark_failure"]
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 1
    assert (project / "failure.txt").read_text() == "ran"
    assert not (project / "success.txt").exists()


def test_trigger_emits_finished_event(make_project, run_prism):
    project = trigger_project(make_project, recording_task("A"), ["mark_success"], [])

    result = run_prism("run", *JSON, cwd=project)

    triggers = of_type(events(result.stdout), "trigger_finished")
    assert len(triggers) == 1
    assert triggers[0]["name"] == "mark_success"
    assert triggers[0]["when"] == "on_success"
    assert triggers[0]["status"] == "done"
    assert triggers[0]["error"] is None


def test_trigger_events_precede_run_finished(make_project, run_prism):
    project = trigger_project(make_project, FAILING_TASK, [], ["mark_failure"])

    result = run_prism("run", *JSON, cwd=project)

    kinds = [event["event"] for event in events(result.stdout)]
    assert kinds.index("trigger_finished") < kinds.index("run_finished")
    assert kinds[-1] == "run_finished"


def test_failing_on_success_trigger_exits_one(make_project, run_prism):
    project = trigger_project(make_project, recording_task("A"), ["explode"], [])

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 1
    trigger = of_type(events(result.stdout), "trigger_finished")[0]
    assert trigger["status"] == "failed"
    assert trigger["error"]["message"] == "trigger exploded"
    assert of_type(events(result.stdout), "run_finished")[0]["exit_code"] == 1


def test_later_triggers_run_after_failure(make_project, run_prism):
    project = trigger_project(
        make_project, FAILING_TASK, [], ["explode", "mark_failure"]
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 1
    assert (project / "failure.txt").read_text() == "ran"
    statuses = {
        event["name"]: event["status"]
        for event in of_type(events(result.stdout), "trigger_finished")
    }
    assert statuses == {"explode": "failed", "mark_failure": "done"}


def test_trigger_kwargs_reach_function(make_project, run_prism):
    yml = """
        include:
          - "{{ wkdir() }}/trigger_lib"
        triggers:
          mark:
            type: function
            function: actions.write_marker
            kwargs:
              path: "{{ wkdir() }}/success.txt"
              text: 42
    """
    project = trigger_project(make_project, recording_task("A"), ["mark"], [], yml)

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "success.txt").read_text() == "42"


def test_triggers_yml_renders_env_function(make_project, run_prism):
    yml = """
        include:
          - "{{ wkdir() }}/trigger_lib"
        triggers:
          mark:
            type: function
            function: actions.write_marker
            kwargs:
              path: "{{ wkdir() }}/success.txt"
              text: "{{ env('PRISM_TEST_GREETING') }}"
    """
    project = trigger_project(make_project, recording_task("A"), ["mark"], [], yml)

    result = run_prism("run", cwd=project, env={"PRISM_TEST_GREETING": "hi there"})

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "success.txt").read_text() == "hi there"


def test_triggers_yml_renders_path_helpers(make_project, run_prism):
    yml = """
        include:
          - "{{ concat(parent(__file__), '/trigger_lib') }}"
        triggers:
          mark:
            type: function
            function: actions.write_marker
            kwargs:
              path: "{{ Path(__file__).parent / 'success.txt' }}"
              text: "{{ concat(parent(__file__), '|') }}"
    """
    project = trigger_project(make_project, recording_task("A"), ["mark"], [], yml)

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    folder, end = (project / "success.txt").read_text().rsplit("|", 1)
    assert Path(folder).resolve() == project.resolve()
    assert end == ""


def test_triggers_yml_sees_prism_project(make_project, run_prism):
    yml = """
        include:
          - "{{ wkdir() }}/trigger_lib"
        triggers:
          mark:
            type: function
            function: actions.write_marker
            kwargs:
              path: "{{ wkdir() }}/success.txt"
              text: "{{ prism_project.SLUG }}"
    """
    settings = project_settings(["mark"], []) + "SLUG = 'calm-heron'\n"
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "triggers.yml": yml,
            "trigger_lib/actions.py": ACTIONS,
        },
        prism_project=settings,
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "success.txt").read_text() == "calm-heron"


def test_default_triggers_yml_is_in_project(make_project, run_prism):
    settings = "TRIGGERS = {'on_success': ['mark_success'], 'on_failure': []}\n"
    project = make_project(
        {
            "tasks/a.py": recording_task("A"),
            "triggers.yml": TRIGGERS_YML,
            "trigger_lib/actions.py": ACTIONS,
        },
        prism_project=settings,
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "success.txt").read_text() == "ran"


def test_no_triggers_when_lists_are_empty(make_project, run_prism):
    project = trigger_project(make_project, recording_task("A"), [], [])

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert of_type(events(result.stdout), "trigger_finished") == []
    assert not (project / "success.txt").exists()
