"""The pyspark adapter and `prism spark-submit`, end to end through the CLI.

Spark runs in local mode on this machine's Java. Starting Spark takes 10 to 30
seconds on a 2-core machine, so one project serves every test that needs a JVM:
`prism run` runs it once and `prism spark-submit` once, and each test checks one
thing about those two runs. Spark binds to 127.0.0.1 only (SPARK_LOCAL_IP and the
driver settings).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    MakeProject,
    RunPrism,
    assert_usage_error,
    events,
    finished_by_task,
    flat,
    of_type,
    prism_env,
)
from tests.integration import require

LOCAL_ONLY = {"SPARK_LOCAL_IP": "127.0.0.1"}
SPARK_TIMEOUT = 240

# The app name is code-like on purpose: 0.2.x pasted config values into Python
# source, so this name would have created the file `injected`.
APP_NAME = "it's'); open('injected', 'w'); ('"

PROFILE = """\
dev:
  adapters:
    local_spark:
      type: pyspark
      alias: spark
      loglevel: error
      config:
        spark.master: local[1]
        spark.app.name: "{app_name}"
        spark.ui.enabled: false
        spark.driver.bindAddress: 127.0.0.1
        spark.driver.host: 127.0.0.1
        spark.sql.shuffle.partitions: 1
        spark.eventLog.enabled: true
        spark.eventLog.dir: "{{{{ wkdir() }}}}/events"
        spark.eventLog.compress: false
        spark.eventLog.rolling.enabled: false
        spark.driver.memory:
"""

NUMBERS_TASK = """\
from prism.decorators import target
from prism.target import PySparkParquet
from prism.task import PrismTask


class Numbers(PrismTask):
    @target(type=PySparkParquet, loc="output/numbers")
    def run(self, tasks, hooks):
        return hooks.spark.range(5).withColumnRenamed("id", "n")
"""

# Reads the upstream before touching hooks.spark, so a reloaded target must find
# the session through the profile.
REPORT_TASK = """\
import json
from pathlib import Path

from prism.task import PrismTask


class Report(PrismTask):
    def run(self, tasks, hooks):
        numbers = tasks.ref("numbers")
        total = numbers.groupBy().sum("n").collect()[0][0]
        context = hooks.spark.sparkContext
        report = {"total": total, "app": context.applicationId,
                  "name": context.appName}
        Path(f"report-{context.applicationId}.json").write_text(json.dumps(report))
        return total
"""

OTHER_TASK = """\
from pathlib import Path

from prism.task import PrismTask


class Other(PrismTask):
    def run(self, tasks, hooks):
        Path("other-app.txt").write_text(hooks.spark.sparkContext.applicationId)
        return "other"
"""

BROKEN_TASK = """\
from prism.task import PrismTask


class Broken(PrismTask):
    def run(self, tasks, hooks):
        tasks.ref("report")
        hooks.spark.range(1).count()
        raise ValueError("broken on purpose")
"""


def spark_missing_reason() -> str | None:
    """Return why Spark cannot run here, or None when pyspark and Java are present."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed: pip install -e '.[test]'"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "Java is missing: apt-get install openjdk-17-jre-headless"
    return None


def require_spark() -> None:
    reason = spark_missing_reason()
    require(reason is None, reason or "")


def write_spark_project(root: Path) -> Path:
    files = {
        "prism_project.py": 'THREADS = 2\nPROFILE = "dev"\n',
        "profile.yml": PROFILE.format(app_name=APP_NAME.replace('"', '\\"')),
        "tasks/numbers.py": NUMBERS_TASK,
        "tasks/report.py": REPORT_TASK,
        "tasks/other.py": OTHER_TASK,
        "tasks/broken.py": BROKEN_TASK,
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "events").mkdir()
    return root


def prism(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prism", *args],
        cwd=cwd,
        env=prism_env({**LOCAL_ONLY, **(env or {})}),
        capture_output=True,
        text=True,
        timeout=SPARK_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class SparkRuns:
    """The project and the results of its `prism run` and `prism spark-submit`."""

    root: Path
    run: subprocess.CompletedProcess[str]
    submit: subprocess.CompletedProcess[str]

    def report(self, app_id: str) -> dict[str, object]:
        path = self.root / f"report-{app_id}.json"
        loaded: dict[str, object] = json.loads(path.read_text())
        return loaded

    def event_logs(self) -> dict[str, str]:
        """Map each event log file name to its text."""
        return {
            path.name: path.read_text() for path in (self.root / "events").iterdir()
        }

    def app_ids(self) -> list[str]:
        """Return the application ids of the reports, in the order they were run."""
        reports = sorted(self.root.glob("report-*.json"), key=os.path.getmtime)
        return [path.stem.removeprefix("report-") for path in reports]


@pytest.fixture(scope="module")
def spark_runs(tmp_path_factory: pytest.TempPathFactory) -> SparkRuns:
    """Run the project with `prism run`, then part of it with spark-submit.

    The spark-submit run selects `report` and `broken`, so `numbers` is read back
    from its Parquet target and `broken` fails after `report` has finished.
    """
    require_spark()
    root = write_spark_project(tmp_path_factory.mktemp("spark") / "project")
    selected = ["-t", "numbers", "-t", "other", "-t", "report"]
    run = prism("run", *selected, "--log-format", "json", cwd=root)
    submit = prism("spark-submit", "-t", "report", "-t", "broken", cwd=root)
    return SparkRuns(root=root, run=run, submit=submit)


def test_run_writes_pyspark_parquet_target(spark_runs: SparkRuns) -> None:
    parsed = events(spark_runs.run.stdout)
    finished = of_type(parsed, "run_finished")
    assert finished[-1]["exit_code"] == 0, spark_runs.run.stderr
    assert set(finished_by_task(parsed)) == {
        "numbers.Numbers",
        "other.Other",
        "report.Report",
    }
    assert list((spark_runs.root / "output" / "numbers").glob("*.parquet"))
    first_app = spark_runs.app_ids()[0]
    assert spark_runs.report(first_app)["total"] == 10


def test_run_threads_share_one_session(spark_runs: SparkRuns) -> None:
    first_app = spark_runs.app_ids()[0]
    assert (spark_runs.root / "other-app.txt").read_text() == first_app


def test_config_reaches_builder_verbatim(spark_runs: SparkRuns) -> None:
    first_app = spark_runs.app_ids()[0]
    assert spark_runs.report(first_app)["name"] == APP_NAME
    assert not (spark_runs.root / "injected").exists()


def test_sessions_stopped_after_each_run(spark_runs: SparkRuns) -> None:
    logs = spark_runs.event_logs()
    app_ids = spark_runs.app_ids()
    assert len(app_ids) == 2
    for app_id in app_ids:
        assert app_id in logs, f"no finished event log for {app_id}: {list(logs)}"
        assert "SparkListenerApplicationEnd" in logs[app_id]
    assert not [name for name in logs if name.endswith(".inprogress")]


def test_spark_submit_propagates_task_failure(spark_runs: SparkRuns) -> None:
    result = spark_runs.submit
    assert result.returncode == 1, result.stderr[-3000:]
    assert "ValueError: broken on purpose" in result.stdout


def test_spark_submit_reads_back_parquet_target(spark_runs: SparkRuns) -> None:
    second_app = spark_runs.app_ids()[-1]
    report = spark_runs.report(second_app)
    assert report["total"] == 10
    assert "report.Report" in flat(spark_runs.submit.stdout)


FAKE_SPARK_SUBMIT = """\
#!/bin/sh
for argument in "$@"; do printf '%s\\n' "$argument"; done > "$0.args"
printf '%s\\n' "$PYSPARK_DRIVER_PYTHON" > "$0.python"
exit 7
"""


def fake_spark_home(folder: Path) -> Path:
    script = folder / "bin" / "spark-submit"
    script.parent.mkdir(parents=True)
    script.write_text(FAKE_SPARK_SUBMIT)
    script.chmod(0o755)
    return folder


def fake_java_home(folder: Path) -> Path:
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\nexit 1\n")
    java.chmod(0o755)
    return folder


def test_spark_submit_passes_arguments_verbatim(
    make_project: MakeProject, run_prism: RunPrism, tmp_path: Path
) -> None:
    """A fake spark-submit (found through SPARK_HOME) records its arguments."""
    home = fake_spark_home(tmp_path / "spark")
    project = make_project({"tasks/a.py": "x = 1\n"})
    tricky = "name=$(touch pwned); 'quoted' \"double\" `id`"
    result = run_prism(
        "spark-submit",
        "-t",
        "a",
        "--vars",
        tricky,
        "--full-refresh",
        "-l",
        "warn",
        cwd=project,
        env={
            "SPARK_HOME": str(home),
            "JAVA_HOME": str(fake_java_home(tmp_path / "java")),
        },
    )
    assert result.returncode == 7, result.stderr
    arguments = (home / "bin" / "spark-submit.args").read_text().splitlines()
    assert arguments[0].endswith(".py")
    assert arguments[1:] == [
        "run",
        "--task",
        "a",
        "--full-refresh",
        "--vars",
        tricky,
        "--log-format",
        "text",
        "--log-level",
        "warn",
    ]
    assert not (project / "pwned").exists()
    assert (home / "bin" / "spark-submit.python").read_text().strip() == (
        sys.executable
    )


def test_spark_submit_without_java_exits_2(
    make_project: MakeProject, run_prism: RunPrism, tmp_path: Path
) -> None:
    home = fake_spark_home(tmp_path / "spark")
    project = make_project({"tasks/a.py": "x = 1\n"})
    result = run_prism(
        "spark-submit",
        cwd=project,
        env={"SPARK_HOME": str(home), "JAVA_HOME": "", "PATH": str(tmp_path)},
    )
    assert_usage_error(result, "spark-submit: Java was not found")
    assert not (home / "bin" / "spark-submit.args").exists()


def spark_profile(settings: str) -> str:
    return "dev:\n  adapters:\n    local_spark:\n" + textwrap.indent(
        textwrap.dedent(settings), "      "
    )


SPARK_TASK = """\
from prism.task import PrismTask


class UseSpark(PrismTask):
    def run(self, tasks, hooks):
        return hooks.spark.range(1).count()
"""


WHERE = "profile.yml: dev.adapters.local_spark"


@pytest.mark.parametrize(
    ("settings", "fragments"),
    [
        (
            "type: pyspark\nalias: spark\nconfig: {}\nlog_level: WARN\n",
            (f"{WHERE}.log_level: unknown key", "Did you mean 'loglevel'?"),
        ),
        (
            "type: pyspark\nalias: spark\nloglevel: LOUD\n",
            (f"{WHERE}.loglevel: invalid value", "must be one of ALL, DEBUG"),
        ),
        (
            "type: pyspark\nalias: my-spark\n",
            (f"{WHERE}.alias: invalid value", "must be a Python name"),
        ),
        (
            "type: pyspark\nalias: sql\n",
            (f"{WHERE}: 'sql' cannot be used as a hooks attribute",),
        ),
        (
            "type: pyspark\nconfig: {}\n",
            (f"{WHERE}.alias: missing",),
        ),
        (
            "type: pyspark\nalias: spark\nconfig:\n  spark.master: [local]\n",
            (
                f"{WHERE}.config: invalid value",
                "the value of spark.master must be a string, a number or true/false",
            ),
        ),
    ],
)
def test_bad_pyspark_settings_exit_2(
    make_project: MakeProject,
    run_prism: RunPrism,
    settings: str,
    fragments: tuple[str, ...],
) -> None:
    """Settings are checked before any task runs, so no JVM starts here."""
    require(importlib.util.find_spec("pyspark") is not None, "pyspark is not installed")
    project = make_project(
        {"profile.yml": spark_profile(settings), "tasks/use_spark.py": SPARK_TASK},
        prism_project='PROFILE = "dev"\n',
    )
    result = run_prism("run", cwd=project)
    assert_usage_error(result, *fragments)
    assert "[RUN]" not in result.stdout


def test_spark_start_failure_fails_task(
    make_project: MakeProject, run_prism: RunPrism, tmp_path: Path
) -> None:
    """JAVA_HOME points at a folder without Java, so Spark cannot start."""
    require(importlib.util.find_spec("pyspark") is not None, "pyspark is not installed")
    project = make_project(
        {
            "profile.yml": spark_profile("type: pyspark\nalias: spark\n"),
            "tasks/use_spark.py": SPARK_TASK,
        },
        prism_project='PROFILE = "dev"\n',
    )
    result = run_prism("run", cwd=project, env={"JAVA_HOME": str(tmp_path)})
    assert result.returncode == 1, result.stdout + result.stderr
    output = flat(result.stdout + result.stderr)
    assert "profile.yml: dev.adapters.local_spark: Spark could not start" in output
    assert "JAVA_HOME is set to a folder without bin/java" in output
