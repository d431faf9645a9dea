"""Helpers that several benchmark scripts share: the machine line, report output,
the check that a Docker image is present, and the first line of a message.

The scripts run as `python benchmarks/NAME.py`, so they import this module by
its bare name from the benchmarks folder, as they import engine.py.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

IMAGE_CHECK_TIMEOUT_S = 120.0


def machine_description() -> str:
    """Describe the operating system, CPU count and Python of this machine."""
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )


def write_report(text: str, output: Path | None) -> None:
    """Print a Markdown report, and also write it to `output` if one is given."""
    sys.stdout.write(text)
    if output is not None:
        output.write_text(text)


def first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0].strip() if lines else "no output"


def require_image(image: str, hint: str) -> None:
    """Raise SystemExit, ending with `hint`, unless the Docker engine has `image`.

    A benchmark checks first because the container it starts would otherwise
    pull the image, and a benchmark must not reach a registry.
    """
    inspect = ["docker", "image", "inspect", "--format", "{{.Id}}", image]
    result = subprocess.run(
        inspect, capture_output=True, text=True, timeout=IMAGE_CHECK_TIMEOUT_S
    )
    if result.returncode != 0:
        raise SystemExit(
            f"image {image} is not on the Docker engine: {first_line(result.stderr)}. "
            + hint
        )
