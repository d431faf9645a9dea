"""Benchmark `prism run` and `prism compile` as whole processes.

Compares this repository's Prism ("ours") with Prism 0.2.8 (`prism-ds` on PyPI) and,
optionally, with Hamilton and Kedro on generated projects of N trivial tasks. Every
tool runs as a separate process, timed by wall clock from spawn to exit, with its peak
RSS read from `os.wait4`. See benchmarks/README.md for what each number means.

Linux only, because it waits on child processes through `os.pidfd_open`.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import machine_description, write_report

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work"
PROJECTS_DIR = WORK_DIR / "projects"
LOGS_DIR = WORK_DIR / "logs"
OURS_PRISM = REPO_DIR / ".venv" / "bin" / "prism"

RUN_TIMEOUT_S = 300.0
COMPILE_028_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 900.0
COMPILE_TASKS = 2000
THREADED_FAN_THREADS = 4
THREADED_FAN_MIN_N = 100
BASELINE_MIN_N = 100
RESULT_ENV = "PRISM_BENCH_RESULT"
GNU_TIME = Path("/usr/bin/time")

# Hamilton 1.90 has no telemetry (its `hamilton.telemetry` is a no-op), but Kedro
# 1.7 depends on kedro-telemetry. These variables opt both tools out, so that no run
# contacts a server, whichever version pip installs.
CHILD_ENV_OVERRIDES = {
    "HAMILTON_TELEMETRY_ENABLED": "false",
    "KEDRO_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}


@dataclass(frozen=True)
class Venv:
    """A virtual environment that the benchmark creates under WORK_DIR on demand."""

    name: str
    requirements: tuple[str, ...]
    distribution: str
    probe_import: str

    @property
    def path(self) -> Path:
        return WORK_DIR / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


PRISM_028 = Venv("venv-prism-028", ("prism-ds==0.2.8",), "prism-ds", "prism.main")
HAMILTON = Venv("venv-hamilton", ("sf-hamilton",), "sf-hamilton", "hamilton.driver")
KEDRO = Venv("venv-kedro", ("kedro",), "kedro", "kedro.runner")


@dataclass(frozen=True)
class Command:
    """One process to time: its argv, working directory and timeout in seconds.

    When `expected_result` is set, the check run passes RESULT_ENV to the process,
    which must write exactly that text to the named file.
    """

    argv: tuple[str, ...]
    cwd: Path
    timeout: float
    expected_result: str | None = None


@dataclass(frozen=True)
class Sample:
    """One finished (or killed) process run."""

    seconds: float
    max_rss_kib: int
    exit_code: int
    timed_out: bool


@dataclass
class Measurement:
    """Wall-clock samples of one command, or why there are none."""

    status: str = "ok"
    seconds: list[float] = field(default_factory=list)
    max_rss_kib: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)


def skipped(note: str) -> Measurement:
    return Measurement(status="skipped", note=note)


@dataclass(frozen=True)
class Case:
    """One generated project shape: `chain` or `fan`, N tasks, THREADS."""

    shape: str
    n: int
    threads: int

    @property
    def name(self) -> str:
        return f"{self.shape}-{self.n:05d}-t{self.threads}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CHILD_ENV_OVERRIDES)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait until process `pid` exits, without reaping it. Return False on timeout."""
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(pidfd)


@functools.cache
def gnu_time_available() -> bool:
    """Return whether GNU_TIME is GNU time, which reports a child's peak RSS.

    Linux keeps a process's peak RSS across exec, so a child forked from this script
    reports at least this script's RSS (about 16 MiB on Python 3.11) through
    `os.wait4`. GNU time 1.9 itself peaks at about 1.5 MiB, so its floor is far lower.
    """
    try:
        result = subprocess.run(
            [str(GNU_TIME), "--version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "GNU" in result.stdout + result.stderr


def read_gnu_time_rss(path: Path) -> int | None:
    """Return the KiB that GNU time wrote as its last line, or None if missing."""
    if not path.exists():
        return None
    lines = path.read_text().split()
    return int(lines[-1]) if lines and lines[-1].isdigit() else None


def run_process(
    command: Command, log_path: Path, extra_env: dict[str, str] | None = None
) -> Sample:
    """Run `command` once with output to `log_path` and return its time and peak RSS.

    The child leads its own process group, so a timeout kills the whole group. The
    group is killed before the child is reaped, so its id cannot have been reused.
    When GNU time is available it starts the command and reports its peak RSS.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rss_path = log_path.with_suffix(".rss")
    rss_path.unlink(missing_ok=True)
    argv = command.argv
    if gnu_time_available():
        argv = (str(GNU_TIME), "--format=%M", f"--output={rss_path}", *argv)
    with log_path.open("wb") as output:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv,
            cwd=command.cwd,
            env={**child_env(), **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        finished = wait_for_exit(process.pid, command.timeout)
        if not finished:
            os.killpg(process.pid, signal.SIGKILL)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    max_rss_kib = read_gnu_time_rss(rss_path) or usage.ru_maxrss
    return Sample(seconds, max_rss_kib, process.returncode, not finished)


def failure_of(sample: Sample, command: Command, log_path: Path) -> Measurement | None:
    if sample.timed_out:
        note = f"timed out after {command.timeout:.0f} s; output in {log_path}"
        return Measurement(status="timeout", note=note)
    if sample.exit_code != 0:
        note = f"exit code {sample.exit_code}; output in {log_path}"
        return Measurement(status="failed", note=note)
    return None


def check_run(command: Command, log_path: Path) -> Measurement | None:
    """Run `command` once untimed and return why it failed, or None if it passed."""
    if command.expected_result is None:
        sample = run_process(command, log_path)
        return failure_of(sample, command, log_path)
    result_path = log_path.with_suffix(".result")
    result_path.unlink(missing_ok=True)
    sample = run_process(command, log_path, {RESULT_ENV: str(result_path)})
    failure = failure_of(sample, command, log_path)
    if failure is not None:
        return failure
    if not result_path.exists():
        note = f"exit code 0 but the last task did not run; output in {log_path}"
        return Measurement(status="failed", note=note)
    found = result_path.read_text()
    if found != command.expected_result:
        note = (
            f"exit code 0 but the last task returned {found!r}, expected "
            f"{command.expected_result!r}; output in {log_path}"
        )
        return Measurement(status="failed", note=note)
    return None


def measure_group(
    commands: dict[str, Command | None], label: str, repeat: int
) -> dict[str, Measurement]:
    """Time each command `repeat` times after one untimed check run.

    The check run must exit 0, and it also fills `__pycache__`, so timed runs start
    warm. Repeats are interleaved across the commands so that drift in machine load
    affects all of them alike. A command that fails or times out is not run again.
    """
    results: dict[str, Measurement] = {}
    active: dict[str, Command] = {}
    for tool, command in commands.items():
        if command is None:
            results[tool] = skipped("not available")
            continue
        log_path = LOGS_DIR / f"{label}-{tool}-check.log"
        log(f"  check   {label} [{tool}]")
        failure = check_run(command, log_path)
        if failure is not None:
            log(f"    {failure.status}: {failure.note}")
            results[tool] = failure
            continue
        results[tool] = Measurement()
        active[tool] = command
    for attempt in range(1, repeat + 1):
        for tool, command in list(active.items()):
            log_path = LOGS_DIR / f"{label}-{tool}-{attempt}.log"
            sample = run_process(command, log_path)
            log(f"  run {attempt}/{repeat} {label} [{tool}] {sample.seconds:.3f} s")
            failure = failure_of(sample, command, log_path)
            if failure is not None:
                log(f"    {failure.status}: {failure.note}")
                results[tool] = failure
                del active[tool]
                continue
            results[tool].seconds.append(sample.seconds)
            results[tool].max_rss_kib = max(
                results[tool].max_rss_kib, sample.max_rss_kib
            )
    return results


def task_name(index: int, width: int) -> str:
    return f"task_{index:0{width}d}"


def class_name(index: int, width: int) -> str:
    return f"Task{index:0{width}d}"


def task_value(refs: Sequence[str]) -> str:
    if not refs:
        return "0"
    if len(refs) == 1:
        return f'tasks.ref("{refs[0]}") + 1'
    items = "".join(f'                tasks.ref("{ref}"),\n' for ref in refs)
    return f"sum(\n            [\n{items}            ]\n        )"


def task_source(index: int, width: int, refs: Sequence[str], last: bool) -> str:
    """Return a task module, whose `run` returns its value.

    The last task of a project also writes its value to the file named by RESULT_ENV
    when that variable is set, which only the check run does.
    """
    header = f"class {class_name(index, width)}(prism.task.PrismTask):\n"
    header += "    def run(self, tasks, hooks):\n"
    if not last:
        return f"import prism.task\n\n\n{header}        return {task_value(refs)}\n"
    return (
        f"import os\n\nimport prism.task\n\n\n{header}"
        f"        value = {task_value(refs)}\n"
        f'        result_path = os.environ.get("{RESULT_ENV}")\n'
        "        if result_path:\n"
        '            with open(result_path, "w") as handle:\n'
        "                handle.write(str(value))\n"
        "        return value\n"
    )


def expected_result(case: Case) -> str:
    """Return the last task's value: N-1 for a chain, N-2 for a fan."""
    return str(case.n - 1 if case.shape == "chain" else case.n - 2)


def project_source(threads: int) -> str:
    return (
        "from pathlib import Path\n\n"
        "from prism.admin import generate_run_id, generate_run_slug\n\n"
        "RUN_ID = generate_run_id()\n"
        "SLUG = generate_run_slug()\n"
        "SYS_PATH_CONF = [Path(__file__).parent]\n"
        f"THREADS = {threads}\n"
    )


def task_refs(shape: str, n: int, index: int, width: int) -> list[str]:
    """Return the tasks that task `index` refs in a `chain` or `fan` of `n` tasks."""
    if index == 0:
        return []
    if shape == "chain":
        return [task_name(index - 1, width)]
    if index < n - 1:
        return [task_name(0, width)]
    return [task_name(middle, width) for middle in range(1, n - 1)]


def write_project(path: Path, case: Case) -> Path:
    """Write a fresh Prism project for `case` at `path`, deleting what was there."""
    if case.shape == "fan" and case.n < 3:
        raise ValueError(f"a fan needs at least 3 tasks, got N={case.n}")
    if path.exists():
        shutil.rmtree(path)
    tasks_dir = path / "tasks"
    tasks_dir.mkdir(parents=True)
    (path / "prism_project.py").write_text(project_source(case.threads))
    width = max(4, len(str(case.n - 1)))
    for index in range(case.n):
        refs = task_refs(case.shape, case.n, index, width)
        source = task_source(index, width, refs, last=index == case.n - 1)
        (tasks_dir / f"{task_name(index, width)}.py").write_text(source)
    return path


def venv_ready(venv: Venv) -> bool:
    if not venv.python.exists():
        return False
    probe = [str(venv.python), "-c", f"import {venv.probe_import}"]
    result = subprocess.run(probe, capture_output=True, timeout=STARTUP_TIMEOUT_S)
    return result.returncode == 0


def ensure_venv(venv: Venv) -> tuple[Path | None, str]:
    """Create `venv` and pip-install its requirements unless it already works.

    Returns the venv's python, or None and the reason when the install failed.
    """
    if venv_ready(venv):
        return venv.python, ""
    log(f"installing {' '.join(venv.requirements)} into {venv.path}")
    log_path = LOGS_DIR / f"install-{venv.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv.path)],
        [str(venv.python), "-m", "pip", "install", "-q", *venv.requirements],
    ]
    with log_path.open("wb") as output:
        for step in steps:
            try:
                result = subprocess.run(
                    step,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    timeout=INSTALL_TIMEOUT_S,
                    env=child_env(),
                )
            except subprocess.TimeoutExpired:
                return None, f"install timed out; output in {log_path}"
            if result.returncode != 0:
                return None, f"install failed; output in {log_path}"
    if not venv_ready(venv):
        return None, f"`import {venv.probe_import}` failed after install"
    return venv.python, ""


def distribution_version(python: Path, distribution: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    result = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def interpreter_of(script: Path) -> Path:
    """Return the Python that runs the console script `script`, from its shebang."""
    with script.open("rb") as handle:
        first_line = handle.readline().decode(errors="replace").strip()
    if first_line.startswith("#!"):
        candidate = Path(first_line[2:].split()[0])
        if candidate.name.startswith("python") and candidate.exists():
            return candidate
    sibling = script.parent / "python"
    return sibling if sibling.exists() else Path(sys.executable)


@dataclass(frozen=True)
class Tool:
    """A Prism to benchmark: its CLI, its Python, and the module its CLI imports."""

    name: str
    prism: Path
    python: Path
    cli_module: str

    def run_command(self, project: Path, expected: str) -> Command:
        return Command((str(self.prism), "run"), project, RUN_TIMEOUT_S, expected)

    def compile_command(self, project: Path, timeout: float) -> Command:
        return Command((str(self.prism), "compile"), project, timeout)


def tool_project(tool: Tool | None, case: Case) -> Command | None:
    if tool is None:
        return None
    project = write_project(PROJECTS_DIR / tool.name / case.name, case)
    return tool.run_command(project, expected_result(case))


def build_cases(sizes: Sequence[int]) -> list[Case]:
    cases: list[Case] = []
    for n in sizes:
        cases.append(Case("chain", n, 1))
        if n >= 3:
            cases.append(Case("fan", n, 1))
        if n >= THREADED_FAN_MIN_N:
            cases.append(Case("fan", n, THREADED_FAN_THREADS))
    return cases


def measure_startup(
    tools: Sequence[Tool], threads: Sequence[int], repeat: int
) -> dict[str, dict[str, Measurement]]:
    """Time `python -c pass`, the CLI import and a 1-task project for each tool."""
    rows: dict[str, dict[str, Measurement]] = {}
    cwd = WORK_DIR
    rows["python -c pass"] = measure_group(
        {
            t.name: Command((str(t.python), "-c", "pass"), cwd, STARTUP_TIMEOUT_S)
            for t in tools
        },
        "python-pass",
        repeat,
    )
    rows["import CLI module"] = measure_group(
        {
            t.name: Command(
                (str(t.python), "-c", f"import {t.cli_module}"), cwd, STARTUP_TIMEOUT_S
            )
            for t in tools
        },
        "import-cli",
        repeat,
    )
    for count in threads:
        case = Case("chain", 1, count)
        rows[f"run 1-task project, THREADS={count}"] = measure_group(
            {t.name: tool_project(t, case) for t in tools}, case.name, repeat
        )
    return rows


def hamilton_sources(n: int) -> tuple[str, str]:
    """Return (module, driver script) for a Hamilton chain of `n` functions."""
    width = max(4, len(str(n - 1)))
    functions = [f"def f_{0:0{width}d}() -> int:\n    return 0\n"]
    for index in range(1, n):
        previous = f"f_{index - 1:0{width}d}"
        functions.append(
            f"def f_{index:0{width}d}({previous}: int) -> int:\n"
            f"    return {previous} + 1\n"
        )
    last = f"f_{n - 1:0{width}d}"
    script = (
        "import sys\n\n"
        "from hamilton import base, driver\n\n"
        "import chain_module\n\n"
        "# Hamilton's default executor recurses a few frames per node of a chain,\n"
        "# so the default limit of 1000 fails on a chain of 1000 nodes.\n"
        f"sys.setrecursionlimit({10 * n + 1000})\n"
        "dr = driver.Driver({}, chain_module, adapter=base.DictResult())\n"
        f"result = dr.execute([{last!r}])\n"
        f"if result[{last!r}] != {n - 1}:\n"
        "    sys.exit(f'wrong result: {result!r}')\n"
    )
    return "\n\n".join(functions), script


def kedro_script(n: int) -> str:
    """Return a script that runs a Kedro chain of `n` nodes with SequentialRunner.

    Every dataset except the last is a registered MemoryDataset. The last one is a
    free output, which `run` returns as a dataset in Kedro 1.7. The script loads it
    when it has `load`, and takes it as plain data otherwise.
    """
    width = max(4, len(str(n - 1)))
    last = f"d_{n - 1:0{width}d}"
    return (
        "import sys\n\n"
        "from kedro.io import DataCatalog, MemoryDataset\n"
        "from kedro.pipeline import Pipeline, node\n"
        "from kedro.runner import SequentialRunner\n\n\n"
        "def first():\n    return 0\n\n\n"
        "def increment(value):\n    return value + 1\n\n\n"
        f"N = {n}\n"
        "names = [f'd_{index:0" + str(width) + "d}' for index in range(N)]\n"
        "nodes = [node(first, inputs=None, outputs=names[0], name='n_' + names[0])]\n"
        "for previous, current in zip(names, names[1:]):\n"
        "    nodes.append(node(increment, inputs=previous, outputs=current,\n"
        "                      name='n_' + current))\n"
        "catalog = DataCatalog({name: MemoryDataset() for name in names[:-1]})\n"
        "outputs = SequentialRunner().run(Pipeline(nodes), catalog)\n"
        f"value = outputs[{last!r}]\n"
        "if hasattr(value, 'load'):\n    value = value.load()\n"
        f"if value != {n - 1}:\n"
        "    sys.exit(f'wrong result: {value!r}')\n"
    )


def baseline_command(tool: str, python: Path, n: int) -> Command:
    folder = WORK_DIR / "baselines" / f"{tool}-chain-{n:05d}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if tool == "hamilton":
        module, script = hamilton_sources(n)
        (folder / "chain_module.py").write_text(module)
    else:
        script = kedro_script(n)
    (folder / "run_chain.py").write_text(script)
    return Command((str(python), "run_chain.py"), folder, RUN_TIMEOUT_S)


def measure_baselines(
    ours: Tool, sizes: Sequence[int], repeat: int, versions: dict[str, str]
) -> list[tuple[str, int, Measurement, Measurement]]:
    """Time Hamilton and Kedro chains against our chain of the same length."""
    rows: list[tuple[str, int, Measurement, Measurement]] = []
    baseline_sizes = [n for n in sizes if n >= BASELINE_MIN_N]
    if not baseline_sizes:
        return rows
    for name, venv in (("hamilton", HAMILTON), ("kedro", KEDRO)):
        python, reason = ensure_venv(venv)
        if python is None:
            log(f"skipping {name}: {reason}")
            for n in baseline_sizes:
                rows.append((name, n, skipped(reason), skipped(reason)))
            continue
        versions[venv.distribution] = distribution_version(python, venv.distribution)
        for n in baseline_sizes:
            case = Case("chain", n, 1)
            commands = {
                name: baseline_command(name, python, n),
                "ours": tool_project(ours, case),
            }
            result = measure_group(commands, f"{name}-{case.name}", repeat)
            rows.append((name, n, result[name], result["ours"]))
    return rows


def format_seconds(measurement: Measurement) -> str:
    if not measurement.ok:
        return measurement.status
    return f"{measurement.median:.3f} ({measurement.best:.3f})"


def format_ratio(numerator: Measurement, denominator: Measurement) -> str:
    if not (numerator.ok and denominator.ok):
        return "n/a"
    return f"{numerator.median / denominator.median:.2f}x"


def format_rss(measurement: Measurement) -> str:
    return f"{measurement.max_rss_kib / 1024:.1f}" if measurement.ok else "n/a"


def per_task_ms(run: Measurement, empty: Measurement | None, n: int) -> str:
    if empty is None or not (run.ok and empty.ok):
        return "n/a"
    return f"{(run.median - empty.median) / n * 1000:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
            + " |"
        )

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def notes_of(labelled: Sequence[tuple[str, Measurement]]) -> list[str]:
    return [
        f"- {label}: {m.status}, {m.note}"
        for label, m in labelled
        if m.note and m.status != "skipped"
    ]


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid --sizes {text!r}: {error}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"--sizes needs positive integers, got {text!r}"
        )
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[10, 100, 1000],
        help="comma-separated task counts N (default: 10,100,1000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs per measurement after one check run (default: 3)",
    )
    parser.add_argument(
        "--prism",
        type=Path,
        default=OURS_PRISM,
        help=f"our `prism` executable (default: {OURS_PRISM})",
    )
    parser.add_argument(
        "--skip-028", action="store_true", help="do not install or time Prism 0.2.8"
    )
    parser.add_argument(
        "--skip-baselines",
        action="store_true",
        help="do not install or time Hamilton and Kedro",
    )
    parser.add_argument(
        "--output", type=Path, help="also write the Markdown report to this file"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if not args.prism.exists():
        parser.error(f"--prism {args.prism} not found")
    return args


def version_of_ours(prism: Path) -> str:
    result = subprocess.run(
        [str(prism), "--version"],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
        env=child_env(),
    )
    if result.returncode != 0:
        return "unknown (`prism --version` failed)"
    words = result.stdout.split()
    return words[-1] if words else "unknown"


@dataclass
class Report:
    """Everything one benchmark invocation measured, ready to format."""

    repeat: int
    versions: dict[str, str]
    startup: dict[str, dict[str, Measurement]] = field(default_factory=dict)
    runs: list[tuple[Case, dict[str, Measurement]]] = field(default_factory=list)
    compile: dict[str, Measurement] = field(default_factory=dict)
    baselines: list[tuple[str, int, Measurement, Measurement]] = field(
        default_factory=list
    )
    notes: list[str] = field(default_factory=list)


def run_benchmark(args: argparse.Namespace) -> Report:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    ours = Tool("ours", args.prism, interpreter_of(args.prism), "prism.cli.main")
    versions = {"ours": version_of_ours(args.prism)}
    old: Tool | None = None
    report = Report(args.repeat, versions)
    if not args.skip_028:
        python, reason = ensure_venv(PRISM_028)
        if python is None:
            report.notes.append(f"- Prism 0.2.8 skipped: {reason}")
        else:
            old = Tool("0.2.8", PRISM_028.path / "bin" / "prism", python, "prism.main")
            versions["prism-ds"] = distribution_version(python, "prism-ds")
    tools = [ours] if old is None else [ours, old]
    cases = build_cases(args.sizes)
    threads = sorted({case.threads for case in cases})

    log("start-up")
    report.startup = measure_startup(tools, threads, args.repeat)
    for case in cases:
        log(f"{case.name}")
        commands = {"ours": tool_project(ours, case), "0.2.8": tool_project(old, case)}
        report.runs.append((case, measure_group(commands, case.name, args.repeat)))

    log(f"compile, chain of {COMPILE_TASKS}")
    report.compile = measure_compile(ours, old, args.repeat)
    if not args.skip_baselines:
        report.baselines = measure_baselines(ours, args.sizes, args.repeat, versions)
    return report


def measure_compile(
    ours: Tool, old: Tool | None, repeat: int
) -> dict[str, Measurement]:
    case = Case("chain", COMPILE_TASKS, 1)
    commands: dict[str, Command | None] = {}
    for tool, timeout in ((ours, RUN_TIMEOUT_S), (old, COMPILE_028_TIMEOUT_S)):
        if tool is not None:
            project = write_project(
                PROJECTS_DIR / tool.name / f"compile-{case.name}", case
            )
            commands[tool.name] = tool.compile_command(project, timeout)
    commands.setdefault("0.2.8", None)
    return measure_group(commands, f"compile-{case.name}", repeat)


def format_runs(report: Report) -> str:
    header = [
        "shape",
        "N",
        "threads",
        "ours (s)",
        "0.2.8 (s)",
        "speed-up",
        "ours per-task overhead (ms)",
        "ours peak RSS (MiB)",
        "0.2.8 peak RSS (MiB)",
    ]
    rows = []
    for case, result in report.runs:
        empty = report.startup.get(f"run 1-task project, THREADS={case.threads}", {})
        rows.append(
            [
                case.shape,
                str(case.n),
                str(case.threads),
                format_seconds(result["ours"]),
                format_seconds(result["0.2.8"]),
                format_ratio(result["0.2.8"], result["ours"]),
                per_task_ms(result["ours"], empty.get("ours"), case.n),
                format_rss(result["ours"]),
                format_rss(result["0.2.8"]),
            ]
        )
    return markdown_table(header, rows)


def format_startup(report: Report) -> str:
    header = [
        "measurement",
        "ours (s)",
        "0.2.8 (s)",
        "ours peak RSS (MiB)",
        "0.2.8 peak RSS (MiB)",
    ]
    rows = []
    for label, result in report.startup.items():
        old = result.get("0.2.8", skipped("not run"))
        rows.append(
            [
                label,
                format_seconds(result["ours"]),
                format_seconds(old),
                format_rss(result["ours"]),
                format_rss(old),
            ]
        )
    return markdown_table(header, rows)


def format_others(report: Report) -> str:
    header = [
        "benchmark",
        "other (s)",
        "ours (s)",
        "ours / other",
        "other peak RSS (MiB)",
        "ours peak RSS (MiB)",
    ]
    compile_ours = report.compile["ours"]
    compile_old = report.compile["0.2.8"]
    rows = [
        [
            f"`prism compile`, chain of {COMPILE_TASKS}, vs 0.2.8",
            format_seconds(compile_old),
            format_seconds(compile_ours),
            format_ratio(compile_ours, compile_old),
            format_rss(compile_old),
            format_rss(compile_ours),
        ]
    ]
    for name, n, other, ours in report.baselines:
        rows.append(
            [
                f"{name} chain of {n} vs `prism run`",
                format_seconds(other),
                format_seconds(ours),
                format_ratio(ours, other),
                format_rss(other),
                format_rss(ours),
            ]
        )
    return markdown_table(header, rows)


def collect_notes(report: Report) -> list[str]:
    labelled: list[tuple[str, Measurement]] = []
    for label, result in report.startup.items():
        labelled += [(f"{label} [{tool}]", m) for tool, m in result.items()]
    for case, result in report.runs:
        labelled += [(f"{case.name} [{tool}]", m) for tool, m in result.items()]
    labelled += [(f"compile [{tool}]", m) for tool, m in report.compile.items()]
    for name, n, other, ours in report.baselines:
        labelled += [
            (f"{name} chain {n} [{name}]", other),
            (f"{name} chain {n} [ours]", ours),
        ]
    skipped_notes = {
        f"- {name} skipped: {other.note}"
        for name, _, other, _ in report.baselines
        if other.status == "skipped"
    }
    return report.notes + sorted(skipped_notes) + notes_of(labelled)


def rss_method() -> str:
    if gnu_time_available():
        return "Peak RSS is the child's max RSS as GNU time (`%M`) reports it."
    own_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (
        "Peak RSS is the child's max RSS from `os.wait4`, because GNU time was not "
        f"found at {GNU_TIME}. Linux keeps the RSS at fork, so values at or below "
        f"this script's own {own_mib:.1f} MiB show that floor, not the child."
    )


def format_report(report: Report) -> str:
    versions = ", ".join(
        f"{name} {version}" for name, version in report.versions.items()
    )
    runs = "1 run" if report.repeat == 1 else f"{report.repeat} runs"
    machine = machine_description()
    parts = [
        "# Prism engine benchmark",
        "",
        f"Machine: {machine}. Versions: {versions}.",
        "",
        f"Each time is the median (best) wall clock of {runs} of a whole process. "
        "Before them, one untimed check run must exit 0 and, for `prism run`, leave "
        "the expected value of the last task. Speed-up is 0.2.8's median divided by "
        "ours. Per-task overhead is (median run - median 1-task run with the same "
        "THREADS) / N. " + rss_method(),
        "",
        "## `prism run`",
        "",
        format_runs(report),
        "",
        "## Start-up",
        "",
        format_startup(report),
        "",
        "## Compile and other tools",
        "",
        "A ratio `ours / other` below 1 means ours is faster.",
        "",
        format_others(report),
    ]
    notes = collect_notes(report)
    if notes:
        parts += ["", "## Notes", "", *notes]
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    write_report(format_report(run_benchmark(args)), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
