"""`prism spark-submit`: run the project's tasks inside Spark's `spark-submit`.

The command runs `SPARK_HOME/bin/spark-submit DRIVER run ARGS...`, where DRIVER is
a fixed bootstrap script that calls `prism run` with ARGS, the flags given to this
command. Arguments are passed as a list, never through a shell or pasted into
code, and the command exits with spark-submit's exit code, which is the exit code
of that `prism run`. Spark is found through `SPARK_HOME`, else through the
installed pyspark package, which ships `bin/spark-submit`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from prism.cli.main import handle_errors, log_options
from prism.cli.run import emit_failure, run_options
from prism.errors import ConfigError, PrismError

# The standard-library modules that only this command needs are imported in the
# functions that use them, to keep `prism` start-up fast.

__all__ = ["find_spark_submit", "run_arguments", "spark_submit"]

DRIVER_SOURCE = """\
import sys

from prism.cli.main import main

sys.argv[0] = "prism"
main()
"""

# Seconds to wait for spark-submit to finish after Ctrl-C before killing it.
INTERRUPT_GRACE = 30.0


@click.command("spark-submit")
@run_options
@log_options
@handle_errors
def spark_submit(
    tasks: tuple[str, ...],
    all_upstream: bool,
    all_downstream: bool,
    full_refresh: bool,
    variables: tuple[str, ...],
    context: str | None,
    log_format: str,
    log_level: str,
    full_tb: bool,
) -> None:
    """Run the project's tasks with Spark's spark-submit (same flags as run)."""
    from prism.project import parse_context, parse_vars

    try:
        parse_context(context)
        parse_vars(variables)
        script = find_spark_submit()
        _check_java()
    except PrismError as error:
        if log_format == "json":
            emit_failure(error.exit_code, str(error))
        raise
    arguments = run_arguments(
        tasks=tasks,
        all_upstream=all_upstream,
        all_downstream=all_downstream,
        full_refresh=full_refresh,
        variables=variables,
        context=context,
        log_format=log_format,
        log_level=log_level,
        full_tb=full_tb,
    )
    with _driver_script() as driver:
        exit_code = _run([str(script), str(driver), *arguments], _spark_env(script))
    sys.exit(exit_code)


def run_arguments(
    *,
    tasks: tuple[str, ...] = (),
    all_upstream: bool = False,
    all_downstream: bool = False,
    full_refresh: bool = False,
    variables: tuple[str, ...] = (),
    context: str | None = None,
    log_format: str = "text",
    log_level: str = "info",
    full_tb: bool = False,
) -> list[str]:
    """Return the `prism run` arguments that repeat these flags."""
    arguments = ["run"]
    for task in tasks:
        arguments += ["--task", task]
    flags = {
        "--all-upstream": all_upstream,
        "--all-downstream": all_downstream,
        "--full-refresh": full_refresh,
        "--full-tb": full_tb,
    }
    arguments += [flag for flag, given in flags.items() if given]
    for variable in variables:
        arguments += ["--vars", variable]
    if context is not None:
        arguments += ["--context", context]
    arguments += ["--log-format", log_format, "--log-level", log_level]
    return arguments


def find_spark_submit() -> Path:
    """Return `bin/spark-submit` of SPARK_HOME, else of the installed pyspark.

    Raises:
        ConfigError: neither has a `bin/spark-submit`.
    """
    homes: list[Path] = []
    if os.environ.get("SPARK_HOME"):
        homes.append(Path(os.environ["SPARK_HOME"]))
    package = _pyspark_folder()
    if package is not None:
        homes.append(package)
    for home in homes:
        script = home / "bin" / "spark-submit"
        if script.is_file():
            return script
    searched = ", ".join(str(home) for home in homes) or "nowhere"
    raise ConfigError(
        f"spark-submit: Spark's bin/spark-submit was not found (searched: {searched})",
        hint="Install pyspark with: pip install 'prism-pipelines[pyspark]', or set "
        "SPARK_HOME to a Spark installation.",
    )


def _pyspark_folder() -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("pyspark")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _check_java() -> None:
    import shutil

    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return
    if shutil.which("java"):
        return
    raise ConfigError(
        "spark-submit: Java was not found (no `java` on PATH and JAVA_HOME is not set)",
        hint="Spark needs Java 17 or newer; install a JRE, e.g. Debian's "
        "openjdk-17-jre-headless.",
    )


def _spark_env(script: Path) -> dict[str, str]:
    # The driver must run on this interpreter, which has Prism installed, unless
    # the user chose another with PYSPARK_DRIVER_PYTHON or PYSPARK_PYTHON.
    env = dict(os.environ)
    env["SPARK_HOME"] = str(script.parent.parent)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    return env


@contextmanager
def _driver_script() -> Iterator[Path]:
    import tempfile

    # A file of its own in an empty folder: Python puts the script's folder first
    # on sys.path, so no module beside it can shadow one the run imports.
    with tempfile.TemporaryDirectory(prefix="prism-spark-") as folder:
        path = Path(folder) / "prism_spark_driver.py"
        path.write_text(DRIVER_SOURCE, encoding="utf-8")
        yield path


def _run(command: list[str], env: dict[str, str]) -> int:
    import subprocess

    process = subprocess.Popen(command, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached spark-submit too, so give it time to stop its run, then
        # re-raise so the command exits 130.
        try:
            process.wait(timeout=INTERRUPT_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
