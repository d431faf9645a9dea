"""End-to-end tests of the text and JSON output of `prism run`, and of logs.log."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import prism
from tests.conftest import (
    events,
    finished_by_task,
    flat,
    of_type,
    prism_env,
    recording_task,
)

JSON = ("--log-format", "json")
ANSI = "\x1b["
PREFIX = re.compile(r"^\d{2}:\d{2}:\d{2} \| +(INFO|WARN|WARNING|ERROR|DEBUG) *\| ")
DURATION = re.compile(r"\d+\.\d+ ?s\b")

FAILING_TASK = """\
from prism.task import PrismTask


class A(PrismTask):
    def run(self, tasks, hooks):
        raise ValueError("broken input")
"""

DONE_TASK = """\
from prism.task import PrismTask


class A(PrismTask):
    def done(self, tasks, hooks):
        return True

    def run(self, tasks, hooks):
        return "A"
"""


def lines_with(text: str, *fragments: str) -> list[str]:
    return [
        line for line in text.splitlines() if all(part in line for part in fragments)
    ]


def run_in_terminal(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run `python -m prism ARGS` with a pseudo-terminal as stdout and stderr."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "prism", *args],
        cwd=cwd,
        env=prism_env({"TERM": "xterm-256color", **(env or {})}),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(primary, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        returncode = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    return returncode, b"".join(chunks).decode(errors="replace")


def two_task_chain(make_project):
    return make_project(
        {"tasks/a.py": recording_task("A"), "tasks/b.py": recording_task("B", "a")}
    )


def test_version_flag_prints_version(tmp_path, run_prism):
    result = run_prism("--version", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"prism, version {prism.__version__}"


def test_console_script_prints_version(tmp_path):
    script = Path(sys.executable).with_name("prism")
    if not script.exists():
        pytest.skip(f"no prism console script next to {sys.executable}")

    result = subprocess.run(
        [str(script), "--version"],
        cwd=tmp_path,
        env=prism_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"prism, version {prism.__version__}"


def test_task_lines_have_time_and_level(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", cwd=project)

    task_lines = lines_with(result.stdout, "a.A")
    assert task_lines
    for line in task_lines:
        assert PREFIX.match(line), line


def test_start_line_shows_index_and_task(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", cwd=project)

    assert lines_with(result.stdout, "[1 of 2]", "RUN", "a.A")
    assert lines_with(result.stdout, "[2 of 2]", "RUN", "b.B")


def test_finish_line_shows_done_and_duration(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", cwd=project)

    finish_lines = lines_with(result.stdout, "[2 of 2]", "DONE", "b.B")
    assert finish_lines
    assert DURATION.search(finish_lines[0]), finish_lines[0]


def test_done_task_line_shows_skip(make_project, run_prism):
    project = make_project({"tasks/a.py": DONE_TASK})

    result = run_prism("run", cwd=project)

    assert lines_with(result.stdout, "[1 of 1]", "SKIP", "a.A")


def test_failed_task_line_shows_error(make_project, run_prism):
    project = make_project({"tasks/a.py": FAILING_TASK})

    result = run_prism("run", cwd=project)

    error_lines = lines_with(result.stdout, "[1 of 1]", "ERROR", "a.A")
    assert error_lines
    assert DURATION.search(error_lines[0]), error_lines[0]


def test_failure_shows_message_and_location(make_project, run_prism):
    project = make_project({"tasks/a.py": FAILING_TASK})

    result = run_prism("run", cwd=project)

    output = flat(result.stdout + result.stderr)
    assert "broken input" in output
    assert "tasks/a.py:6" in output


def test_failure_hides_traceback_by_default(make_project, run_prism):
    project = make_project({"tasks/a.py": FAILING_TASK})

    result = run_prism("run", cwd=project)

    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_full_tb_shows_traceback(make_project, run_prism):
    project = make_project({"tasks/a.py": FAILING_TASK})

    result = run_prism("run", "--full-tb", cwd=project)

    assert result.returncode == 1
    assert "Traceback" in result.stdout + result.stderr


def test_summary_counts_each_status(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": FAILING_TASK,
            "tasks/b.py": recording_task("B", "a"),
            "tasks/c.py": recording_task("C"),
            "tasks/d.py": recording_task("D"),
        }
    )

    result = run_prism("run", cwd=project)

    output = flat(result.stdout)
    assert "2 done" in output
    assert "1 failed" in output
    assert "1 skipped" in output


def test_summary_lists_failed_task_and_message(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": FAILING_TASK, "tasks/c.py": recording_task("C")}
    )

    result = run_prism("run", cwd=project)

    lines = result.stdout.splitlines()
    task_lines = [index for index, line in enumerate(lines) if " of 2]" in line]
    assert task_lines, result.stdout
    summary = flat("\n".join(lines[task_lines[-1] + 1 :]))
    assert "a.A" in summary
    assert "broken input" in summary


def test_print_in_task_reaches_stdout(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        print("hello from a")
                        return "A"
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "hello from a" in result.stdout


def test_log_level_error_hides_info_lines(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", "-l", "error", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.search(r"\| +INFO *\|", result.stdout)


def test_log_level_warn_filters_logs_log(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", "--log-level", "warn", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.search(r"\| +INFO *\|", (project / "logs.log").read_text())


def test_log_level_debug_is_accepted(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", "-l", "debug", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_with(result.stdout, "DONE", "b.B")


def test_no_ansi_codes_when_piped(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": FAILING_TASK, "tasks/b.py": recording_task("B", "a")}
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 1
    assert ANSI not in result.stdout
    assert ANSI not in result.stderr


def test_no_color_disables_ansi_in_terminal(make_project):
    project = make_project(
        {"tasks/a.py": FAILING_TASK, "tasks/b.py": recording_task("B", "a")}
    )

    returncode, output = run_in_terminal("run", cwd=project, env={"NO_COLOR": "1"})

    assert returncode == 1, output
    assert "a.A" in output
    assert ANSI not in output


def test_logs_log_written_where_invoked(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", cwd=project / "tasks")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "b.B" in (project / "tasks/logs.log").read_text()


def test_logs_log_is_appended(make_project, run_prism):
    project = two_task_chain(make_project)
    run_prism("run", cwd=project)
    first = (project / "logs.log").read_text()

    run_prism("run", cwd=project)

    second = (project / "logs.log").read_text()
    assert first
    assert second.startswith(first)
    assert len(second) > len(first)


def test_logs_log_strips_terminal_colors(make_project):
    project = make_project(
        {"tasks/a.py": FAILING_TASK, "tasks/b.py": recording_task("B", "a")}
    )

    returncode, output = run_in_terminal("run", cwd=project)

    assert returncode == 1, output
    log = (project / "logs.log").read_text()
    assert "a.A" in log
    assert "\x1b" not in log


def test_json_stream_bounded_by_run_events(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    parsed = events(result.stdout)
    assert parsed[0]["event"] == "run_started"
    assert parsed[-1]["event"] == "run_finished"


def test_json_events_carry_type_and_time(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", *JSON, cwd=project)

    parsed = events(result.stdout)
    assert parsed
    for event in parsed:
        assert isinstance(event["event"], str)
        assert isinstance(event["time"], float)
        assert event["time"] > 1_600_000_000


def test_json_task_started_fields(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", *JSON, cwd=project)

    started = of_type(events(result.stdout), "task_started")
    assert [(e["task"], e["index"], e["total"], e["attempt"]) for e in started] == [
        ("a.A", 1, 2, 1),
        ("b.B", 2, 2, 1),
    ]


def test_json_task_finished_fields_for_success(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", *JSON, cwd=project)

    finished = finished_by_task(events(result.stdout))["b.B"]
    assert finished["index"] == 2
    assert finished["total"] == 2
    assert finished["status"] == "done"
    assert isinstance(finished["duration"], float)
    assert finished["duration"] >= 0
    assert finished["attempts"] == 1
    assert finished["reason"] is None
    assert finished["upstream"] is None
    assert finished["error"] is None


def test_json_failed_task_error_object(make_project, run_prism):
    project = make_project({"tasks/a.py": FAILING_TASK})

    result = run_prism("run", *JSON, cwd=project)

    error = finished_by_task(events(result.stdout))["a.A"]["error"]
    assert error["type"] == "ValueError"
    assert error["message"] == "broken input"
    assert error["file"].endswith("tasks/a.py")
    assert error["line"] == 6
    assert "ValueError: broken input" in error["traceback"]


def test_json_run_finished_for_success(make_project, run_prism):
    project = two_task_chain(make_project)

    result = run_prism("run", *JSON, cwd=project)

    finished = of_type(events(result.stdout), "run_finished")[0]
    assert finished["exit_code"] == 0
    assert finished["counts"] == {"done": 2, "failed": 0, "skipped": 0, "not_run": 0}
    assert finished["failed"] == []
    assert finished["error"] is None
    assert isinstance(finished["duration"], float)


def test_json_print_becomes_task_output(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        print("hello from a")
                        return "A"
            """
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    outputs = of_type(events(result.stdout), "task_output")
    assert {"task": "a.A", "stream": "stdout", "line": "hello from a"} in [
        {key: event[key] for key in ("task", "stream", "line")} for event in outputs
    ]


def test_json_output_splits_multiline_print(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        print("first line\\nsecond line")
                        return "A"
            """
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    lines = [event["line"] for event in of_type(events(result.stdout), "task_output")]
    assert lines == ["first line", "second line"]


def test_json_stderr_print_becomes_stderr_output(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                import sys

                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        print("careful", file=sys.stderr)
                        return "A"
            """
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    outputs = of_type(events(result.stdout), "task_output")
    assert [(event["stream"], event["line"]) for event in outputs] == [
        ("stderr", "careful")
    ]


def test_json_subprocess_output_becomes_events(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                import subprocess

                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        subprocess.run(["echo", "from child"], check=True)
                        return "A"
            """
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    outputs = of_type(events(result.stdout), "task_output")
    assert [event["line"] for event in outputs] == ["from child"]
    assert outputs[0]["stream"] == "stdout"
    assert outputs[0]["task"] in ("a.A", None)


def test_json_logger_record_becomes_log_event(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                import logging

                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        logging.getLogger("PRISM_LOGGER").info("from the logger")
                        return "A"
            """
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    logs = of_type(events(result.stdout), "log")
    matching = [event for event in logs if event["message"] == "from the logger"]
    assert len(matching) == 1
    assert matching[0]["level"] == "info"
    assert matching[0]["task"] == "a.A"


def test_json_warning_becomes_log_event(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """\
                import logging

                from prism.task import PrismTask


                class A(PrismTask):
                    def run(self, tasks, hooks):
                        logging.getLogger("prism").warning("disk nearly full")
                        return "A"
            """
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    logs = of_type(events(result.stdout), "log")
    assert {"level": "warning", "message": "disk nearly full", "task": "a.A"} in [
        {key: event[key] for key in ("level", "message", "task")} for event in logs
    ]
