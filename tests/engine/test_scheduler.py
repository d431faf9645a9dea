from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest

from prism.engine.events import Event, TaskFinished, TaskRetry, TaskStarted
from prism.engine.run import RunRequest, execute_run, prepare_run


@pytest.fixture
def run_project(tmp_path, monkeypatch):
    """Write `{module: source}` as a project with `threads` workers and run it."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    original_modules = set(sys.modules)
    cwd = os.getcwd()

    def run(
        sources: dict[str, str], threads: int = 1, **request
    ) -> tuple[int, list[Event]]:
        (tmp_path / "prism_project.py").write_text(f"THREADS = {threads}\n")
        for name, source in sources.items():
            path = tmp_path / "tasks" / f"{name}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        events: list[Event] = []
        prepared = prepare_run(RunRequest(cwd=tmp_path, **request))
        finished = execute_run(prepared, events.append)
        events.append(finished)
        return finished.exit_code, events

    yield run
    os.chdir(cwd)
    for name in set(sys.modules) - original_modules:
        del sys.modules[name]


def finished(events: list[Event]) -> dict[str, TaskFinished]:
    return {event.task: event for event in events if isinstance(event, TaskFinished)}


def sleeper(name: str, seconds: float, *refs: str) -> str:
    calls = "".join(f"    tasks.ref({ref!r})\n" for ref in refs)
    return (
        "import time\nfrom prism.decorators import task\n@task()\n"
        f"def {name}(tasks, hooks):\n{calls}    time.sleep({seconds})\n"
        "    return time.monotonic()\n"
    )


def test_downstream_starts_without_waiting_for_slow_sibling(run_project):
    code, events = run_project(
        {
            "slow": sleeper("slow", 1.0),
            "a": sleeper("a", 0.05),
            "b": sleeper("b", 0.0, "a"),
        },
        threads=2,
    )
    assert code == 0
    done = finished(events)
    # b finishes long before the slow independent task does.
    assert done["b.b"].time < done["slow.slow"].time - 0.5


def test_threads_run_independent_tasks_concurrently(run_project):
    sources = {f"t{i}": sleeper(f"t{i}", 0.3) for i in range(4)}
    started = time.perf_counter()
    code, _ = run_project(sources, threads=4)
    assert code == 0
    assert time.perf_counter() - started < 1.0


def test_failure_skips_downstream_but_runs_independent(run_project):
    code, events = run_project(
        {
            "bad": (
                "from prism.decorators import task\n"
                "@task()\n"
                "def bad(tasks, hooks):\n"
                "    raise ValueError('no data')\n"
            ),
            "after": sleeper("after", 0, "bad"),
            "later": sleeper("later", 0, "after"),
            "free": sleeper("free", 0),
        }
    )
    assert code == 1
    done = finished(events)
    assert done["bad.bad"].status == "failed"
    assert done["bad.bad"].error.message == "no data"
    assert done["bad.bad"].error.file == "tasks/bad.py"
    assert done["bad.bad"].error.line == 4
    assert done["after.after"].status == "skipped"
    assert done["after.after"].upstream == "bad.bad"
    assert done["later.later"].reason == "upstream_failed"
    assert done["free.free"].status == "done"
    assert events[-1].counts == {"done": 1, "failed": 1, "skipped": 2, "not_run": 0}


def test_retries_make_one_attempt_each(run_project, tmp_path):
    counter = tmp_path / "count.txt"
    source = f"""
    import prism.task
    from pathlib import Path
    class Flaky(prism.task.PrismTask):
        RETRIES = 2
        RETRY_DELAY_SECONDS = 0
        def run(self, tasks, hooks):
            path = Path({str(counter)!r})
            count = int(path.read_text()) + 1 if path.exists() else 1
            path.write_text(str(count))
            if count < 3:
                raise RuntimeError(f"attempt {{count}}")
            return count
    """
    code, events = run_project({"flaky": source})
    assert code == 0
    assert counter.read_text() == "3"
    retries = [event for event in events if isinstance(event, TaskRetry)]
    assert [event.attempt for event in retries] == [1, 2]
    assert {event.task for event in retries} == {"flaky.Flaky"}
    assert finished(events)["flaky.Flaky"].attempts == 3


def test_retry_delay_is_waited(run_project):
    source = (
        "from prism.decorators import task\n"
        "@task(retries=1, retry_delay_seconds=0.4)\n"
        "def f(tasks, hooks):\n"
        "    raise ValueError('x')\n"
    )
    started = time.perf_counter()
    code, events = run_project({"f": source})
    assert code == 1
    assert time.perf_counter() - started >= 0.4
    assert finished(events)["f.f"].attempts == 2


def test_done_task_skips_body_and_reads_target(run_project, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("from disk")
    source = """
    import prism.task, prism.target, prism.decorators
    class A(prism.task.PrismTask):
        def done(self, tasks, hooks):
            return True
        @prism.decorators.target(type=prism.target.Txt, loc="out/a.txt")
        def run(self, tasks, hooks):
            raise AssertionError("body must not run")
    """
    reader = (
        "from prism.decorators import task\n"
        "@task()\n"
        "def b(tasks, hooks):\n"
        "    assert tasks.ref('a') == 'from disk'\n"
        "    return 1\n"
    )
    code, events = run_project({"a": source, "b": reader})
    assert code == 0
    assert finished(events)["a.A"].status == "skipped"
    assert finished(events)["a.A"].reason == "done"


def test_full_refresh_ignores_done(run_project):
    source = """
    import prism.task
    class A(prism.task.PrismTask):
        def done(self, tasks, hooks):
            return True
        def run(self, tasks, hooks):
            return 1
    """
    code, events = run_project({"a": source}, full_refresh=True)
    assert code == 0
    assert finished(events)["a.A"].status == "done"


def test_counter_covers_selected_tasks_in_start_order(run_project):
    sources = {
        "a": sleeper("a", 0),
        "b": sleeper("b", 0, "a"),
        "c": sleeper("c", 0, "b"),
    }
    _, events = run_project(sources)
    started = [(e.task, e.index, e.total) for e in events if isinstance(e, TaskStarted)]
    assert started == [("a.a", 1, 3), ("b.b", 2, 3), ("c.c", 3, 3)]


def test_module_import_error_fails_its_task_only(run_project):
    code, events = run_project(
        {
            "broken": (
                "import not_a_real_module_xyz\n"
                "from prism.decorators import task\n"
                "@task()\n"
                "def broken(tasks, hooks):\n"
                "    return 1\n"
            ),
            "fine": sleeper("fine", 0),
        }
    )
    assert code == 1
    done = finished(events)
    assert done["broken.broken"].error.type == "ModuleNotFoundError"
    assert done["broken.broken"].error.file == "tasks/broken.py"
    assert done["fine.fine"].status == "done"


def test_outputs_pass_between_tasks(run_project):
    producer = (
        "from prism.decorators import task\n"
        "@task()\n"
        "def p(tasks, hooks):\n"
        "    return {'rows': 3}\n"
    )
    consumer = (
        "from prism.decorators import task\n"
        "@task()\n"
        "def c(tasks, hooks):\n"
        "    return tasks.ref('p')['rows'] * 2\n"
    )
    checker = (
        "from prism.decorators import task\n"
        "@task()\n"
        "def k(tasks, hooks):\n"
        "    assert tasks.ref('c') == 6\n"
        "    return True\n"
    )
    code, _ = run_project({"p": producer, "c": consumer, "k": checker}, threads=3)
    assert code == 0
