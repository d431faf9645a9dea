"""Benchmark `prism agent run` and `prism agent apply` against their floors.

Runs the Seattle weather demo on a Docker agent and a venv agent and compares each
agent command with the cheapest thing that does the same job without Prism's agent
layer: `docker run --rm IMAGE python3 -c pass` for Docker, and a local `prism run` of
the same project for venv. Every command runs as a separate process, timed by wall
clock from spawn to exit. See benchmarks/README.md for what each number means.

Linux only, because it reuses the process runner of engine.py, which waits on child
processes through `os.pidfd_open`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import first_line, machine_description, require_image, write_report
from engine import (
    OURS_PRISM,
    REPO_DIR,
    WORK_DIR,
    Command,
    Measurement,
    failure_of,
    interpreter_of,
    log,
    markdown_table,
    run_process,
    version_of_ours,
)

AGENTS_WORK_DIR = WORK_DIR / "agents"
CACHE_DIR = AGENTS_WORK_DIR / "cache"
PROJECTS_DIR = AGENTS_WORK_DIR / "projects"
LOGS_DIR = AGENTS_WORK_DIR / "logs"
EXAMPLE_DIR = REPO_DIR / "examples" / "seattle-weather"
DEFAULT_IMAGE = "prism-test/base:bookworm"

RUN_TIMEOUT_S = 300.0
APPLY_TIMEOUT_S = 900.0
SETUP_TIMEOUT_S = 120.0
SLOW_TASK_SECONDS = 1.0

# Left out of the copy: what runs of the example leave behind, and its agent files,
# which the benchmark replaces with its own `docker.yml` and `venv.yml`.
COPY_IGNORED = (
    ".prism",
    ".compiled",
    "__pycache__",
    "logs.log",
    "output",
    "local-*.yml",
)
REPORT_TARGET = Path("output") / "report.md"
EDITED_TASK = Path("tasks") / "report.py"
UP_TO_DATE_TEXT = "is up to date; nothing to do"
REQUIREMENTS_FILE = "requirements.txt"

SLOW_TASK_SOURCE = '''\
"""Wait after the report, so that the run takes about {seconds:g} s longer."""

import time

from prism.decorators import task


@task()
def pause(tasks, hooks):
    tasks.ref("report")
    time.sleep({seconds!r})
'''


@dataclass(frozen=True)
class Project:
    """A copy of the demo project with one agent file, `<agent>.yml`."""

    root: Path
    agent: str

    @property
    def agent_file(self) -> str:
        return f"{self.agent}.yml"


@dataclass(frozen=True)
class Probe:
    """One command to time, with what must happen before and after each run.

    `prepare` runs before every run, untimed. The check run must re-create
    `expected_file` (deleted before it), and every run's output must contain
    `expected_text`, when they are set.
    """

    key: str
    command: Command
    prepare: Callable[[], None] = lambda: None
    expected_file: Path | None = None
    expected_text: str | None = None


@dataclass(frozen=True)
class ColdApply:
    """The one timed `prism agent apply` of an agent that has nothing yet."""

    agent: str
    measurement: Measurement
    pip_cache: str
    layer_cache: str


@dataclass
class Report:
    """Everything one benchmark invocation measured, ready to format."""

    repeat: int
    versions: dict[str, str]
    image: str
    slow_seconds: float
    cold: list[ColdApply] = field(default_factory=list)
    warm: dict[str, Measurement] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ratio:
    """A ratio of two measurements' medians and the goal it should meet."""

    label: str
    numerator: str
    denominator: str
    goal: float | None


RATIOS = (
    Ratio("1. Docker run after a task edit / docker floor", "docker-run", "floor", 3.0),
    Ratio("2. Docker no-op apply / docker floor", "docker-apply", "floor", 1.5),
    Ratio("3. venv agent run / local `prism run`", "venv-run", "local-run", 1.5),
    Ratio(
        "3 (slow variant). venv agent run / local `prism run`",
        "slow-venv-run",
        "slow-local-run",
        None,
    ),
)

DESCRIPTIONS = {
    "floor": "`docker run --rm --pull never IMAGE python3 -c pass`",
    "docker-run": "`prism agent run -f docker.yml`, after a task edit",
    "docker-apply": "`prism agent apply -f docker.yml`, already applied",
    "local-run": "`prism run`",
    "venv-run": "`prism agent run -f venv.yml`",
    "slow-local-run": "`prism run`, slow variant",
    "slow-venv-run": "`prism agent run -f venv.yml`, slow variant",
}


def bench_env() -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(CACHE_DIR)}


def copy_project(name: str, agent: str, agent_text: str, started: str) -> Project:
    """Copy the demo project to PROJECTS_DIR/name and write its agent files.

    The requirements file names no package, only the invocation's start time
    `started`. So the wheelhouse, and the image layer that copies it, differ from
    every earlier build, and Docker cannot reuse a layer in the cold apply.
    """
    root = PROJECTS_DIR / name / EXAMPLE_DIR.name
    if root.parent.exists():
        shutil.rmtree(root.parent)
    shutil.copytree(EXAMPLE_DIR, root, ignore=shutil.ignore_patterns(*COPY_IGNORED))
    project = Project(root, agent)
    (root / project.agent_file).write_text(
        f"{agent_text}  requirements: {REQUIREMENTS_FILE}\n"
    )
    (root / REQUIREMENTS_FILE).write_text(
        f"# Prism agents benchmark started at {started}. No packages beyond Prism.\n"
    )
    return project


def prism_command(prism: Path, project: Path, *args: str) -> Command:
    timeout = APPLY_TIMEOUT_S if args[:2] == ("agent", "apply") else RUN_TIMEOUT_S
    return Command((str(prism), *args), project, timeout)


def agent_command(prism: Path, project: Project, action: str) -> Command:
    return prism_command(prism, project.root, "agent", action, "-f", project.agent_file)


def run_setup(command: Command, label: str) -> None:
    """Run an untimed setup step, and raise SystemExit naming its log if it fails."""
    log_path = LOGS_DIR / f"setup-{label}.log"
    sample = run_process(command, log_path, bench_env())
    failure = failure_of(sample, command, log_path)
    if failure is not None:
        raise SystemExit(f"setup step {label} failed: {failure.note}")


def delete_agent(prism: Path, project: Project) -> None:
    run_setup(
        agent_command(prism, project, "delete"),
        f"delete-{project.root.parent.name}",
    )


def clear_wheelhouses() -> None:
    shutil.rmtree(CACHE_DIR / "prism" / "wheelhouses", ignore_errors=True)


def layer_cache_used(log_path: Path) -> str:
    """Return whether the Docker build in a debug-level log reused a cached layer."""
    text = log_path.read_text(errors="replace")
    if "Step " not in text:
        return "n/a"
    return "yes" if "Using cache" in text else "no"


def measure_cold_apply(prism: Path, project: Project) -> ColdApply:
    """Time one `prism agent apply` with no environment and no wheelhouse.

    The apply logs at debug level, so the log shows whether Docker reused a layer
    that an identical earlier build left behind.
    """
    clear_wheelhouses()
    pip_cache = "warm" if (CACHE_DIR / "pip").exists() else "empty"
    command = prism_command(
        prism,
        project.root,
        "agent",
        "apply",
        "-f",
        project.agent_file,
        "--log-level",
        "debug",
    )
    log_path = LOGS_DIR / f"cold-apply-{project.agent}.log"
    log(f"  cold apply [{project.agent}]")
    sample = run_process(command, log_path, bench_env())
    log(f"    {sample.seconds:.3f} s")
    failure = failure_of(sample, command, log_path)
    measurement = failure or Measurement(seconds=[sample.seconds])
    layer_cache = layer_cache_used(log_path) if project.agent == "docker" else "n/a"
    return ColdApply(project.agent, measurement, pip_cache, layer_cache)


def append_comment(path: Path) -> Callable[[], None]:
    """Return a function that appends a new comment line to `path` at each call."""
    count = 0

    def edit() -> None:
        nonlocal count
        count += 1
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"# benchmark edit {count} at {time.time():.6f}\n")

    return edit


def problem_of(probe: Probe, log_path: Path) -> str | None:
    """Return why a finished run of `probe` does not count, or None if it does."""
    if probe.expected_text is None:
        return None
    if probe.expected_text not in log_path.read_text(errors="replace"):
        return f"the output lacks {probe.expected_text!r}; output in {log_path}"
    return None


def check_probe(probe: Probe) -> Measurement | None:
    """Run `probe` once untimed and return why it failed, or None if it passed."""
    log_path = LOGS_DIR / f"{probe.key}-check.log"
    probe.prepare()
    if probe.expected_file is not None:
        probe.expected_file.unlink(missing_ok=True)
    sample = run_process(probe.command, log_path, bench_env())
    failure = failure_of(sample, probe.command, log_path)
    if failure is not None:
        return failure
    if probe.expected_file is not None and not probe.expected_file.is_file():
        note = f"exit code 0 but {probe.expected_file} is missing; output in {log_path}"
        return Measurement(status="failed", note=note)
    problem = problem_of(probe, log_path)
    return None if problem is None else Measurement(status="failed", note=problem)


def measure_probes(probes: Sequence[Probe], repeat: int) -> dict[str, Measurement]:
    """Time each probe `repeat` times after one untimed check run.

    Repeats are interleaved across the probes, so that drift in machine load
    affects all of them alike. A probe that fails is not run again.
    """
    results: dict[str, Measurement] = {}
    active: list[Probe] = []
    for probe in probes:
        log(f"  check   {probe.key}")
        failure = check_probe(probe)
        if failure is not None:
            log(f"    {failure.status}: {failure.note}")
            results[probe.key] = failure
            continue
        results[probe.key] = Measurement()
        active.append(probe)
    for attempt in range(1, repeat + 1):
        for probe in list(active):
            probe.prepare()
            log_path = LOGS_DIR / f"{probe.key}-{attempt}.log"
            sample = run_process(probe.command, log_path, bench_env())
            log(f"  run {attempt}/{repeat} {probe.key} {sample.seconds:.3f} s")
            failure = failure_of(sample, probe.command, log_path)
            problem = problem_of(probe, log_path)
            if failure is None and problem is not None:
                failure = Measurement(status="failed", note=problem)
            if failure is not None:
                log(f"    {failure.status}: {failure.note}")
                results[probe.key] = failure
                active.remove(probe)
                continue
            results[probe.key].seconds.append(sample.seconds)
    return results


def build_probes(
    prism: Path, image: str, docker: Project, venv: Project, slow: Project
) -> list[Probe]:
    floor = Command(
        ("docker", "run", "--rm", "--pull", "never", image, "python3", "-c", "pass"),
        AGENTS_WORK_DIR,
        RUN_TIMEOUT_S,
    )
    return [
        Probe("floor", floor),
        Probe(
            "docker-run",
            agent_command(prism, docker, "run"),
            prepare=append_comment(docker.root / EDITED_TASK),
            expected_file=docker.root / REPORT_TARGET,
        ),
        Probe(
            "docker-apply",
            agent_command(prism, docker, "apply"),
            expected_text=UP_TO_DATE_TEXT,
        ),
        Probe(
            "local-run",
            prism_command(prism, venv.root, "run"),
            expected_file=venv.root / REPORT_TARGET,
        ),
        Probe(
            "venv-run",
            agent_command(prism, venv, "run"),
            expected_file=venv.root / REPORT_TARGET,
        ),
        Probe(
            "slow-local-run",
            prism_command(prism, slow.root, "run"),
            expected_file=slow.root / REPORT_TARGET,
        ),
        Probe(
            "slow-venv-run",
            agent_command(prism, slow, "run"),
            expected_file=slow.root / REPORT_TARGET,
        ),
    ]


def docker_versions(image: str) -> dict[str, str]:
    """Return the engine's version and the image's Python version.

    Raises SystemExit when the image is not on the engine, because the Docker
    agent would then pull it.
    """
    require_image(image, "Build or pull it first, or name another image with --image.")
    versions: dict[str, str] = {}
    queries = {
        "Docker engine": ["docker", "version", "--format", "{{.Server.Version}}"],
        "image Python": [
            "docker",
            "run",
            "--rm",
            "--pull",
            "never",
            image,
            "python3",
            "-c",
            "import platform; print(platform.python_version())",
        ],
    }
    for name, argv in queries.items():
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S
        )
        if result.returncode != 0:
            raise SystemExit(f"`{' '.join(argv)}` failed: {first_line(result.stderr)}")
        versions[name] = result.stdout.strip()
    return versions


def source_hash(prism: Path) -> str:
    """Return the hash of Prism's source that the agents' fingerprints include."""
    code = "from prism.agents.deps import prism_source_hash; print(prism_source_hash())"
    result = subprocess.run(
        [str(interpreter_of(prism)), "-c", code],
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_S,
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def run_benchmark(args: argparse.Namespace) -> Report:
    AGENTS_WORK_DIR.mkdir(parents=True, exist_ok=True)
    hash_before = source_hash(args.prism)
    versions = {"prism": version_of_ours(args.prism), **docker_versions(args.image)}
    report = Report(args.repeat, versions, args.image, args.slow_seconds)

    docker_text = f"agent:\n  type: docker\n  image: {args.image}\n"
    venv_text = "agent:\n  type: venv\n"
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    docker = copy_project("docker", "docker", docker_text, started)
    venv = copy_project("venv", "venv", venv_text, started)
    slow = copy_project("venv-slow", "venv", venv_text, started)
    (slow.root / "tasks" / "pause.py").write_text(
        SLOW_TASK_SOURCE.format(seconds=args.slow_seconds)
    )
    projects = (docker, venv, slow)

    try:
        log("removing agents left by an earlier run")
        for project in projects:
            delete_agent(args.prism, project)
        log("cold applies")
        report.cold = [
            measure_cold_apply(args.prism, docker),
            measure_cold_apply(args.prism, venv),
        ]
        if all(cold.measurement.ok for cold in report.cold):
            run_setup(agent_command(args.prism, slow, "apply"), "apply-venv-slow")
            log("warm runs")
            probes = build_probes(args.prism, args.image, docker, venv, slow)
            report.warm = measure_probes(probes, args.repeat)
    finally:
        log("deleting the agents")
        report.notes += delete_all(args.prism, projects)
    if source_hash(args.prism) != hash_before:
        report.notes.append(
            "- Prism's source changed during the benchmark, so the agents' "
            "fingerprints stopped matching: runs then fail with `changed since it "
            "was applied` and a no-op apply rebuilds. Rerun on an unchanged tree."
        )
    return report


def delete_all(prism: Path, projects: Sequence[Project]) -> list[str]:
    """Delete every project's agent and return a note for each delete that failed."""
    notes = []
    for project in projects:
        try:
            delete_agent(prism, project)
        except SystemExit as error:
            log(f"    {error}")
            notes.append(f"- {error}; remove what is left with `prism agent delete`")
    return notes


def format_seconds(measurement: Measurement) -> str:
    if not measurement.ok:
        return measurement.status
    return f"{measurement.median:.3f} ({measurement.best:.3f})"


def format_ratio(numerator: Measurement, denominator: Measurement) -> str:
    if not (numerator.ok and denominator.ok):
        return "n/a"
    median = numerator.median / denominator.median
    best = numerator.best / denominator.best
    return f"{median:.2f} ({best:.2f})"


def goal_met(ratio: Ratio, numerator: Measurement, denominator: Measurement) -> str:
    if ratio.goal is None:
        return "no goal"
    if not (numerator.ok and denominator.ok):
        return "n/a"
    return "yes" if numerator.median / denominator.median <= ratio.goal else "no"


def format_ratios(report: Report) -> str:
    header = ["ratio", "median (best)", "goal", "met"]
    rows = []
    for ratio in RATIOS:
        numerator = report.warm.get(ratio.numerator, Measurement(status="not run"))
        denominator = report.warm.get(ratio.denominator, Measurement(status="not run"))
        goal = "context only" if ratio.goal is None else f"<= {ratio.goal:g}"
        rows.append(
            [
                ratio.label,
                format_ratio(numerator, denominator),
                goal,
                goal_met(ratio, numerator, denominator),
            ]
        )
    return markdown_table(header, rows)


def format_times(report: Report) -> str:
    header = ["measurement", "time (s)"]
    rows = [
        [DESCRIPTIONS[key], format_seconds(measurement)]
        for key, measurement in report.warm.items()
    ]
    return markdown_table(header, rows)


def format_cold(report: Report) -> str:
    header = ["agent", "time (s), 1 run", "pip cache", "Docker layer reused"]
    rows = []
    for cold in report.cold:
        seconds = (
            f"{cold.measurement.seconds[0]:.3f}"
            if cold.measurement.ok
            else cold.measurement.status
        )
        rows.append([cold.agent, seconds, cold.pip_cache, cold.layer_cache])
    return markdown_table(header, rows)


def collect_notes(report: Report) -> list[str]:
    labelled = [
        (f"cold apply [{cold.agent}]", cold.measurement) for cold in report.cold
    ]
    labelled += list(report.warm.items())
    notes = list(report.notes)
    notes += [f"- {label}: {m.status}, {m.note}" for label, m in labelled if m.note]
    return notes


def format_report(report: Report) -> str:
    versions = ", ".join(f"{name} {value}" for name, value in report.versions.items())
    runs = "1 run" if report.repeat == 1 else f"{report.repeat} runs"
    machine = machine_description()
    parts = [
        "# Prism agents benchmark",
        "",
        f"Machine: {machine}. Versions: {versions}. Image: {report.image}.",
        "",
        f"Each time is the median (best) wall clock of {runs} of a whole process, "
        "after one untimed check run, interleaved across the measurements. Each "
        "ratio divides the medians (the bests) of two measurements of this run. The "
        f"slow variant adds a task that sleeps {report.slow_seconds:g} s after the "
        "report.",
        "",
        "## Ratios",
        "",
        format_ratios(report),
        "",
        "## Times",
        "",
        format_times(report),
        "",
        "## Cold apply",
        "",
        "No environment and no wheelhouse, with the base image already present.",
        "",
        format_cold(report),
    ]
    notes = collect_notes(report)
    if notes:
        parts += ["", "## Notes", "", *notes]
    return "\n".join(parts) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="timed runs per measurement after one check run (default: 5)",
    )
    parser.add_argument(
        "--prism",
        type=Path,
        default=OURS_PRISM,
        help=f"the `prism` executable (default: {OURS_PRISM})",
    )
    parser.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        help=f"base image of the Docker agent and the floor (default: {DEFAULT_IMAGE})",
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=SLOW_TASK_SECONDS,
        help="seconds the extra task of the slow variant sleeps "
        f"(default: {SLOW_TASK_SECONDS:g})",
    )
    parser.add_argument(
        "--output", type=Path, help="also write the Markdown report to this file"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.slow_seconds < 0:
        parser.error(f"--slow-seconds must not be negative, got {args.slow_seconds}")
    if not args.prism.exists():
        parser.error(f"--prism {args.prism} not found")
    if shutil.which("docker") is None:
        parser.error("the `docker` command is not on PATH")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    write_report(format_report(run_benchmark(args)), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
