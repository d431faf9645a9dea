"""End-to-end tests that projects written for Prism 0.2.x run unchanged."""

from __future__ import annotations

import re

from tests.conftest import events, finished_by_task, of_type, recording_task

JSON = ("--log-format", "json")
PREFIX = r"^\d{2}:\d{2}:\d{2} \| +INFO *\| "

LEGACY_PROJECT = """\
import logging
from pathlib import Path

from prism.admin import generate_run_id, generate_run_slug

NAME = "orders"
RUN_ID = generate_run_id()
SLUG = generate_run_slug()

SYS_PATH_CONF = [
    Path(__file__).parent,
    Path(__file__).parent.parent / "shared_lib",
]

THREADS = 1

PROFILE_YML_PATH = Path(__file__).parent / "profile.yml"
PROFILE = "default"

PRISM_LOGGER = logging.getLogger("PRISM_LOGGER")

TRIGGERS_YML_PATH = Path(__file__).parent / "triggers.yml"
TRIGGERS = {
    "on_success": [],
    "on_failure": [],
}

WKDIR = Path(__file__).parent
OUTPUT = WKDIR / "output"
"""

MODULE_STYLE_TASK = """\
import prism.decorators
import prism.target
import prism.task
import prism_project


class ExtractOrders(prism.task.PrismTask):
    @prism.decorators.target(
        type=prism.target.Txt, loc=prism_project.OUTPUT / "orders.txt"
    )
    def run(self, tasks, hooks):
        prism_project.PRISM_LOGGER.info("extracting orders")
        return "orders"
"""

DECORATED_STYLE_TASK = """\
import prism.target
import prism_project
from prism.decorators import target, task


@task(
    retries=0,
    targets=[target(type=prism.target.Txt, loc=prism_project.OUTPUT / "report.txt")],
)
def build_report(tasks, hooks):
    return tasks.ref("extract/raw/orders.py") + "+report"
"""


def legacy_project(make_project, extra=None):
    files = {
        "__init__.py": "",
        "output/.exists": "",
        "tasks/extract/raw/orders.py": MODULE_STYLE_TASK,
        "tasks/report.py": DECORATED_STYLE_TASK,
        **(extra or {}),
    }
    return make_project(files, prism_project=LEGACY_PROJECT)


def test_legacy_project_runs_successfully(make_project, run_prism):
    project = legacy_project(make_project)

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/orders.txt").read_text() == "orders"
    assert (project / "output/report.txt").read_text() == "orders+report"


def test_legacy_task_ids_follow_folders(make_project, run_prism):
    project = legacy_project(make_project)

    result = run_prism("run", *JSON, cwd=project)

    started = of_type(events(result.stdout), "run_started")[0]
    assert started["tasks"] == [
        "extract/raw/orders.ExtractOrders",
        "report.build_report",
    ]


def test_prism_logger_lines_use_prism_format(make_project, run_prism):
    project = legacy_project(make_project)

    result = run_prism("run", cwd=project)

    lines = result.stdout.splitlines()
    logged = [line for line in lines if "extracting orders" in line]
    assert len(logged) == 1
    assert re.match(PREFIX, logged[0]), logged[0]


def test_prism_logger_record_becomes_log_event(make_project, run_prism):
    project = legacy_project(make_project)

    result = run_prism("run", *JSON, cwd=project)

    messages = [
        (event["level"], event["message"], event["task"])
        for event in of_type(events(result.stdout), "log")
    ]
    assert ("info", "extracting orders", "extract/raw/orders.ExtractOrders") in messages


def test_generated_run_id_reaches_run_started(make_project, run_prism):
    project = legacy_project(
        make_project,
        {
            "tasks/ids.py": """\
                from pathlib import Path

                import prism_project
                from prism.task import PrismTask


                class Ids(PrismTask):
                    def run(self, tasks, hooks):
                        ids = prism_project.RUN_ID + " " + prism_project.SLUG
                        Path("ids.txt").write_text(ids)
                        return "ids"
            """
        },
    )

    result = run_prism("run", *JSON, cwd=project)

    run_id, slug = (project / "ids.txt").read_text().split(" ")
    started = of_type(events(result.stdout), "run_started")[0]
    assert re.fullmatch(r"[0-9a-f]{32}", run_id)
    assert started["run_id"] == run_id
    assert started["slug"] == slug


def test_tasks_share_one_prism_project_module(make_project, run_prism):
    project = legacy_project(
        make_project,
        {
            "tasks/first.py": """\
                import prism_project
                from prism.task import PrismTask


                class First(PrismTask):
                    def run(self, tasks, hooks):
                        prism_project.SHARED = "set by first"
                        return "first"
            """,
            "tasks/second.py": """\
                from pathlib import Path

                import prism_project
                from prism.task import PrismTask


                class Second(PrismTask):
                    def run(self, tasks, hooks):
                        tasks.ref("first")
                        Path("shared.txt").write_text(prism_project.SHARED)
                        return "second"
            """,
        },
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "shared.txt").read_text() == "set by first"


def test_sys_path_conf_makes_outside_code_importable(make_project, run_prism):
    project = legacy_project(
        make_project,
        {
            "../shared_lib/pricing.py": """\
                def with_tax(amount):
                    return amount * 2
            """,
            "tasks/price.py": """\
                from pathlib import Path

                import pricing
                from prism.task import PrismTask


                class Price(PrismTask):
                    def run(self, tasks, hooks):
                        Path("price.txt").write_text(str(pricing.with_tax(21)))
                        return "price"
            """,
        },
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "price.txt").read_text() == "42"


def test_task_imports_module_from_project_root(make_project, run_prism):
    project = legacy_project(
        make_project,
        {
            "utils.py": """\
                def shout(text):
                    return text.upper()
            """,
            "tasks/loud.py": """\
                from pathlib import Path

                from prism.task import PrismTask
                from utils import shout


                class Loud(PrismTask):
                    def run(self, tasks, hooks):
                        Path("loud.txt").write_text(shout("quiet"))
                        return "loud"
            """,
        },
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "loud.txt").read_text() == "QUIET"


def test_qualified_decorators_define_task(make_project, run_prism):
    project = legacy_project(
        make_project,
        {
            "tasks/summary.py": """\
                import prism.decorators
                import prism.target
                import prism_project


                @prism.decorators.task(
                    targets=[
                        prism.decorators.target(
                            type=prism.target.Txt,
                            loc=prism_project.OUTPUT / "summary.txt",
                        )
                    ]
                )
                def summary(tasks, hooks):
                    return tasks.ref("report") + "+summary"
            """
        },
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    summary = (project / "output/summary.txt").read_text()
    assert summary == "orders+report+summary"


def test_target_iterator_import_from_decorators(make_project, run_prism):
    project = legacy_project(
        make_project,
        {
            "tasks/split.py": """\
                import prism.target
                import prism.task
                import prism_project
                from prism.decorators import target_iterator


                class Split(prism.task.PrismTask):
                    @target_iterator(
                        type=prism.target.Txt, loc=prism_project.OUTPUT / "parts"
                    )
                    def run(self, tasks, hooks):
                        return {"north.txt": "N", "south.txt": "S"}
            """
        },
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/parts/north.txt").read_text() == "N"
    assert (project / "output/parts/south.txt").read_text() == "S"


def test_deprecated_task_target_decorator_saves(make_project, run_prism):
    project = legacy_project(
        make_project,
        {
            "tasks/old.py": """\
                import prism.target
                import prism.task
                import prism_project


                class Old(prism.task.PrismTask):
                    @prism.task.PrismTask.target(
                        type=prism.target.Txt, loc=prism_project.OUTPUT / "old.txt"
                    )
                    def run(self, tasks, hooks):
                        return "old style"
            """
        },
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/old.txt").read_text() == "old style"


def warning_count(stdout: str) -> int:
    return sum(event["level"] == "warning" for event in of_type(events(stdout), "log"))


def test_ref_with_py_suffix_works_with_warning(make_project, run_prism):
    plain = make_project(
        {"tasks/a.py": recording_task("A"), "tasks/b.py": recording_task("B", "a")},
        name="plain",
    )
    suffixed = make_project(
        {"tasks/a.py": recording_task("A"), "tasks/b.py": recording_task("B", "a.py")},
        name="suffixed",
    )

    baseline = run_prism("run", *JSON, cwd=plain)
    result = run_prism("run", *JSON, cwd=suffixed)

    assert result.returncode == 0, result.stdout + result.stderr
    assert finished_by_task(events(result.stdout))["b.B"]["status"] == "done"
    assert warning_count(result.stdout) > warning_count(baseline.stdout)


def test_missing_profile_file_is_tolerated(make_project, run_prism):
    project = legacy_project(make_project)

    result = run_prism("run", cwd=project)

    assert not (project / "profile.yml").exists()
    assert result.returncode == 0, result.stdout + result.stderr


def test_legacy_modules_folder_still_runs(make_project, run_prism):
    project = make_project(
        {"modules/orders.py": MODULE_STYLE_TASK, "output/.exists": ""},
        prism_project=LEGACY_PROJECT,
    )

    result = run_prism("run", *JSON, cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/orders.txt").read_text() == "orders"


def test_context_override_visible_to_tasks(make_project, run_prism):
    project = legacy_project(
        make_project,
        {
            "tasks/name.py": """\
                from pathlib import Path

                import prism_project
                from prism.task import PrismTask


                class Name(PrismTask):
                    def run(self, tasks, hooks):
                        Path("name.txt").write_text(prism_project.NAME)
                        return "name"
            """
        },
    )

    result = run_prism("run", "--context", '{"NAME": "returns"}', cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "name.txt").read_text() == "returns"
