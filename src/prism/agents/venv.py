"""The venv agent: a virtual environment on this machine, under `.prism/agents/`.

The environment is made with the interpreter `python` names (the one running
Prism by default) and gets `requirements` and this Prism from a wheelhouse, so
none of the client's own packages are visible to it. The project runs in place, in a
subprocess with a clean environment plus `env`; its outputs are already where a
local run would put them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prism.agents.base import Agent
from prism.agents.deps import (
    PythonTarget,
    build_wheelhouse,
    install_command,
    prism_source_hash,
    probe_script,
)
from prism.errors import ConfigError

if TYPE_CHECKING:
    from prism.agents.remote import RemoteRun
    from prism.engine.events import EventSink, RunFinished

__all__ = ["VenvAgent"]

logger = logging.getLogger(__name__)

# Variables a subprocess needs from the client to behave like a login shell.
_PASSED_VARIABLES = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "SYSTEMROOT",
)


class VenvAgent(Agent):
    """Runs the project in a virtual environment of its own on this machine.

    Not supported: `resources` limits (use the Docker agent), and interpreters
    without the `venv` module.
    """

    type = "venv"

    @property
    def folder(self) -> Path:
        return self.project_root / ".prism" / "agents" / self.name

    @property
    def python(self) -> Path:
        return self.folder / "venv" / "bin" / "python"

    def _interpreter(self) -> str:
        spec_python: str | None = getattr(self.config.spec, "python", None)
        if not spec_python:
            return sys.executable
        found = shutil.which(spec_python)
        if found is None:
            where = "does not exist" if "/" in spec_python else "is not on PATH"
            raise ConfigError(
                f"{self.config.path}: agent.python: {spec_python!r} {where}",
                hint="Give the path of an installed interpreter, e.g. "
                "/usr/bin/python3.12.",
            )
        return found

    def _target(self) -> PythonTarget:
        interpreter = self._interpreter()
        if interpreter == sys.executable:
            return PythonTarget.client()
        result = subprocess.run(
            [interpreter, "-c", probe_script()], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ConfigError(
                f"{self.config.path}: agent.python: {interpreter} failed to start: "
                f"{result.stderr.strip()[-300:]}"
            )
        return PythonTarget.from_probe(result.stdout)

    def _fingerprint_parts(self) -> tuple[str, ...]:
        return (self._target().key, prism_source_hash())

    def _is_current(self, fingerprint: str | None) -> bool:
        marker = self.folder / "fingerprint"
        return (
            fingerprint is not None
            and self.python.exists()
            and marker.is_file()
            and marker.read_text().strip() == fingerprint
        )

    def _apply(self, fingerprint: str) -> str:
        target = self._target()
        with self.step("Building the wheelhouse"):
            wheelhouse = build_wheelhouse(self.config.requirements_path, target)

        # Each environment is built in envs/<key> and `venv` is a symbolic link
        # to it, swapped in one step: an interrupted apply leaves the previous
        # environment working, and console scripts keep valid #! lines.
        envs = self.folder / "envs"
        staging = envs / fingerprint[:16]
        shutil.rmtree(staging, ignore_errors=True)
        envs.mkdir(parents=True, exist_ok=True)
        with self.step(
            f"Creating the virtual environment with Python {target.version}"
        ):
            _run_checked([self._interpreter(), "-m", "venv", str(staging)], "create")
        with self.step("Installing requirements offline from the wheelhouse"):
            _run_checked(
                install_command(str(staging / "bin" / "python"), str(wheelhouse.path)),
                "install",
            )
        old = self.folder / "venv"
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        link = self.folder / "venv.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(staging.relative_to(self.folder))
        os.replace(link, old)
        for other in envs.iterdir():
            if other != staging:
                shutil.rmtree(other, ignore_errors=True)
        (self.folder / "fingerprint").write_text(fingerprint)
        self.state.add_resource(self.name, "venv", str(old), {"python": target.version})
        return f"Agent {self.name}: virtual environment ready at {old}"

    def _start(
        self, request: RemoteRun, payload: bytes, early: Any = None
    ) -> Callable[[EventSink], RunFinished]:
        if self.config.spec.artifacts:
            logger.warning(
                "agent.artifacts is ignored by a venv agent: it runs in the project "
                "folder, so its files are already here"
            )
        if (
            isinstance(early, EarlyStart)
            and early.python == self.python
            and early.is_waiting()
        ):
            process = early.take()
        else:
            process = _launch(self.project_root, self.python)
        assert process.stdin is not None
        process.stdin.write(payload)
        process.stdin.close()

        def follow(sink: EventSink) -> RunFinished:
            from prism.agents.process import stream_process

            return stream_process(
                process,
                sink,
                timeout=self.config.spec.timeout,
                stop=lambda: _signal_group(process, signal.SIGTERM),
                kill=lambda: _signal_group(process, signal.SIGKILL),
            )

        return follow

    def _delete(self) -> list[str]:
        if not self.folder.exists():
            return []
        shutil.rmtree(self.folder)
        return [f"removed {self.folder}"]

    def _status(self) -> list[tuple[str, str]]:
        if not self.python.exists():
            return [("virtual environment", "none")]
        size = sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())
        version = (self.folder / "venv" / "pyvenv.cfg").read_text()
        python = next(
            (
                line.split("=", 1)[1].strip()
                for line in version.splitlines()
                if line.startswith("version")
            ),
            "unknown",
        )
        return [
            ("virtual environment", str(self.folder / "venv")),
            ("python", python),
            ("size", f"{size / 1e6:.1f} MB"),
        ]


class EarlyStart:
    """A far side started before the client checked the agent, waiting on stdin.

    It does nothing until it reads a request, so `release` (closing its stdin)
    ends it harmlessly when the run does not go ahead.
    """

    def __init__(self, python: Path, process: subprocess.Popen[bytes]) -> None:
        self.python = python
        self._process: subprocess.Popen[bytes] | None = process

    def is_waiting(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def take(self) -> subprocess.Popen[bytes]:
        assert self._process is not None
        process, self._process = self._process, None
        return process

    def release(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def launch_early(project_root: Path, agent_file: Path) -> EarlyStart | None:
    """Start the far side of the venv agent that `agent_file` names, if it exists.

    This overlaps the far side's start-up with the client's checks; the process
    waits for its request on stdin.
    """
    from prism.agents.config import agent_name

    python = project_root / ".prism" / "agents" / agent_name(agent_file) / "venv"
    python = python / "bin" / "python"
    if not python.exists():
        return None
    return EarlyStart(python, _launch(project_root, python))


def _launch(project_root: Path, python: Path) -> subprocess.Popen[bytes]:
    environment = {
        name: os.environ[name] for name in _PASSED_VARIABLES if name in os.environ
    }
    environment["PATH"] = f"{python.parent}{os.pathsep}{environment.get('PATH', '')}"
    return subprocess.Popen(
        [str(python), "-m", "prism.agents.remote"],
        cwd=project_root,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE,
        start_new_session=True,
    )


def _run_checked(command: list[str], action: str) -> None:
    logger.debug("Running %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        detail = "\n  ".join(result.stderr.strip().splitlines()[-8:])
        raise ConfigError(f"Failed to {action} the virtual environment:\n  {detail}")


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
