"""End-to-end tests of task retries and their events."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import events, finished_by_task, of_type, recording_task

JSON = ("--log-format", "json")


def flaky_class_task(retries: int, delay: int, succeed_on: int | None) -> str:
    """Return a class task that records each attempt and fails until `succeed_on`."""
    settings = f"    RETRIES = {retries}\n" if retries else ""
    settings += f"    RETRY_DELAY_SECONDS = {delay}\n"
    limit = succeed_on if succeed_on is not None else 10**6
    return (
        "import time\n"
        "from pathlib import Path\n"
        "\n"
        "from prism.task import PrismTask\n"
        "\n"
        "\n"
        "class A(PrismTask):\n"
        f"{settings}"
        "\n"
        "    def run(self, tasks, hooks):\n"
        "        with open('attempts.txt', 'a') as log:\n"
        "            log.write(f'{time.time()}\\n')\n"
        "        made = len(Path('attempts.txt').read_text().split())\n"
        f"        if made < {limit}:\n"
        "            raise RuntimeError(f'attempt {made} failed')\n"
        "        return 'A'\n"
    )


def flaky_decorated_task(arguments: str, succeed_on: int) -> str:
    return (
        "from pathlib import Path\n"
        "\n"
        "from prism.decorators import task\n"
        "\n"
        "\n"
        f"@task({arguments})\n"
        "def a(tasks, hooks):\n"
        "    with open('attempts.txt', 'a') as log:\n"
        "        log.write('attempt\\n')\n"
        "    made = len(Path('attempts.txt').read_text().split())\n"
        f"    if made < {succeed_on}:\n"
        "        raise RuntimeError(f'attempt {made} failed')\n"
        "    return 'a'\n"
    )


def attempt_times(project: Path) -> list[float]:
    return [float(line) for line in (project / "attempts.txt").read_text().split()]


def test_retries_let_flaky_task_succeed(make_project, run_prism):
    project = make_project({"tasks/a.py": flaky_class_task(2, 0, succeed_on=3)})

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(attempt_times(project)) == 3
    finished = finished_by_task(events(result.stdout))["a.A"]
    assert finished["status"] == "done"
    assert finished["attempts"] == 3


def test_retry_event_for_each_retried_attempt(make_project, run_prism):
    project = make_project({"tasks/a.py": flaky_class_task(2, 0, succeed_on=3)})

    result = run_prism("run", *JSON, cwd=project)

    retries = of_type(events(result.stdout), "task_retry")
    assert [event["attempt"] for event in retries] == [1, 2]
    assert {event["task"] for event in retries} == {"a.A"}
    assert retries[0]["error"]["type"] == "RuntimeError"
    assert retries[0]["error"]["message"] == "attempt 1 failed"


def test_task_started_reports_attempt_number(make_project, run_prism):
    project = make_project({"tasks/a.py": flaky_class_task(2, 0, succeed_on=3)})

    result = run_prism("run", *JSON, cwd=project)

    started = of_type(events(result.stdout), "task_started")
    assert [event["attempt"] for event in started] == [1, 2, 3]


def test_exhausted_retries_fail_task(make_project, run_prism):
    project = make_project({"tasks/a.py": flaky_class_task(1, 0, succeed_on=None)})

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 1
    assert len(attempt_times(project)) == 2
    parsed = events(result.stdout)
    finished = finished_by_task(parsed)["a.A"]
    assert finished["status"] == "failed"
    assert finished["attempts"] == 2
    assert finished["error"]["message"] == "attempt 2 failed"
    assert len(of_type(parsed, "task_retry")) == 1


def test_task_without_retries_runs_once(make_project, run_prism):
    project = make_project({"tasks/a.py": flaky_class_task(0, 0, succeed_on=2)})

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 1
    assert len(attempt_times(project)) == 1
    assert of_type(events(result.stdout), "task_retry") == []


def test_decorated_retries_keyword_allows_retry(make_project, run_prism):
    project = make_project({"tasks/a.py": flaky_decorated_task("retries=1", 2)})

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert finished_by_task(events(result.stdout))["a.a"]["attempts"] == 2


def test_retry_delay_waits_between_attempts(make_project, run_prism):
    project = make_project({"tasks/a.py": flaky_class_task(1, 1, succeed_on=2)})

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    first, second = attempt_times(project)
    assert second - first >= 0.9
    assert of_type(events(result.stdout), "task_retry")[0]["delay"] == 1


def test_decorated_retry_delay_keyword_sets_delay(make_project, run_prism):
    arguments = "retries=1, retry_delay_seconds=1"
    project = make_project({"tasks/a.py": flaky_decorated_task(arguments, 2)})

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert of_type(events(result.stdout), "task_retry")[0]["delay"] == 1


def test_retried_task_keeps_its_id(make_project, run_prism):
    project = make_project({"tasks/a.py": flaky_class_task(2, 0, succeed_on=3)})

    result = run_prism("run", *JSON, cwd=project)

    task_ids = {event["task"] for event in events(result.stdout) if "task" in event}
    assert task_ids <= {"a.A", None}
    assert "a.A" in task_ids


def test_text_output_omits_retry_suffix(make_project, run_prism):
    project = make_project({"tasks/a.py": flaky_class_task(2, 0, succeed_on=3)})

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "(RETRY" not in result.stdout


def test_downstream_runs_after_retried_success(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": flaky_class_task(1, 0, succeed_on=2),
            "tasks/b.py": recording_task("B", "a", target="output/b.txt"),
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/b.txt").read_text() == "A+B"
