"""The far side of an EMR step run: the project, then its outputs in one tar file.

An EMR step runs `python -m prism.agents.steprun FOLDER OUTPUTS [ARTIFACT ...]`
in the project's folder on the master, with the run's request on standard
input. It runs `python -m prism.agents.remote` with the Spark variables of
`prism.agents.sparkenv`, passes its event lines through to standard output
(which EMR keeps as the step's `stdout` log), and then packs the folders the
run's targets wrote, plus the artifacts, into OUTPUTS with paths relative to
the project. `OUTPUTS_MANIFEST` inside it lists the written targets. The exit
code is the run's.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

__all__ = ["OUTPUTS_MANIFEST", "main"]

OUTPUTS_MANIFEST = ".prism-outputs.json"


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    folder, outputs, *artifacts = arguments
    root = Path.cwd()
    environment = {**os.environ, **_spark_variables(folder)}
    process = subprocess.Popen(
        [sys.executable, "-m", "prism.agents.remote"],
        stdin=sys.stdin,
        stdout=subprocess.PIPE,
        env=environment,
    )
    assert process.stdout is not None
    written: set[str] = set()
    for raw in process.stdout:
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
        written.update(_targets(raw, root))
    status = process.wait()
    write_outputs(root, Path(outputs), written, tuple(artifacts))
    return status


def _spark_variables(folder: str) -> dict[str, str]:
    from prism.agents.sparkenv import run_environment

    mode_file = Path(folder) / "spark" / "mode"
    mode = mode_file.read_text().strip() if mode_file.is_file() else "local"
    return run_environment(mode, folder)


def _targets(raw: bytes, root: Path) -> list[str]:
    if not raw.startswith(b"{"):
        return []
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(data, dict) or data.get("event") != "task_finished":
        return []
    return [
        str(Path(path).relative_to(root))
        for path in data.get("targets") or []
        if Path(path).is_relative_to(root)
    ]


def write_outputs(
    root: Path, archive: Path, written: set[str], artifacts: tuple[str, ...]
) -> None:
    """Pack the target folders and artifacts under `root` into `archive`."""
    from prism.agents.bundle import output_paths

    absolute = {str(root / path) for path in written}
    with tarfile.open(archive, "w") as tar:
        for path in output_paths(root, absolute, artifacts):
            if path.exists():
                tar.add(path, arcname=str(path.relative_to(root)))
        manifest = json.dumps(sorted(written)).encode()
        info = tarfile.TarInfo(OUTPUTS_MANIFEST)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))


if __name__ == "__main__":
    sys.exit(main())
