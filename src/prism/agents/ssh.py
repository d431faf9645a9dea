"""The SSH agent: a host the user can already reach with `ssh`.

Everything lives in one folder on the host, `workdir` (default
`~/.prism/<project>/<agent>`). It contains `venv/` with the dependencies,
installed offline from a wheelhouse the client builds for the host's Python and
platform, and `wheelhouses/`. It also contains `files/`, where the project is
mirrored at its local absolute path, so relative paths between the project and
the folders it imports from stay the same.

Each run copies only what changed (rsync) and runs the project there with `env`
sent on standard input. It streams the events back and copies the target folders
and `artifacts` back, also when the run fails.

Not supported: password or keyboard-interactive logins (use a key or an agent),
and hosts without rsync or without Python's venv module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prism.agents.base import Agent
from prism.agents.bundle import collect_bundle, output_paths
from prism.agents.deps import (
    PythonTarget,
    build_wheelhouse,
    install_command,
    prism_source_hash,
    probe_script,
)
from prism.agents.openssh import SshConnection, SshEndpoint
from prism.engine.manifest import record_targets
from prism.errors import ConfigError

if TYPE_CHECKING:
    from prism.agents.remote import RemoteRun
    from prism.engine.events import EventSink, RunFinished

__all__ = ["SshAgent"]

logger = logging.getLogger(__name__)

# Run on the host with the list of shipped files on stdin: removes files under
# the mirrored project that are no longer part of it, such as a deleted task.
_PRUNE = """
import os, sys
root, keep = sys.argv[1], set(sys.stdin.read().split("\\0"))
for folder, _, names in os.walk(root):
    for name in names:
        path = os.path.join(folder, name)
        if path not in keep:
            os.remove(path)
"""


class SshAgent(Agent):
    """Runs the project in a virtual environment on a host reached over SSH."""

    type = "ssh"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection: SshConnection | None = None
        self._home: str | None = None

    @property
    def endpoint(self) -> SshEndpoint:
        spec = self.config.spec
        return SshEndpoint(
            host=spec.host or "",
            user=spec.user,
            port=spec.port,
            identity_file=spec.identity_file,
            config_file=spec.ssh_config,
        )

    @property
    def connection(self) -> SshConnection:
        if self._connection is None:
            self._connection = SshConnection(self.endpoint)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _workdir(self) -> str | None:
        # `~/x` and a relative `x` both mean x under the login's home folder.
        workdir = self.config.spec.workdir
        if workdir is None:
            return None
        return workdir[2:] if workdir.startswith("~/") else workdir

    @property
    def folder(self) -> str:
        """The agent's folder on the host, for the remote shell (may use $HOME)."""
        workdir = self._workdir()
        if workdir is not None:
            quoted = shlex.quote(workdir)
            return quoted if workdir.startswith("/") else f"$HOME/{quoted}"
        digest = hashlib.sha256(str(self.project_root).encode()).hexdigest()[:8]
        name = shlex.quote(f"{self.project_root.name}-{digest}")
        return f"$HOME/.prism/{name}/{self.name}"

    @property
    def rsync_folder(self) -> str:
        """The agent's folder as rsync names it: relative paths start at home."""
        workdir = self._workdir()
        if workdir is not None:
            return workdir
        digest = hashlib.sha256(str(self.project_root).encode()).hexdigest()[:8]
        return f".prism/{self.project_root.name}-{digest}/{self.name}"

    def _fingerprint_parts(self) -> tuple[str, ...]:
        return (prism_source_hash(),)

    def _is_current(self, fingerprint: str | None) -> bool:
        if fingerprint is None:
            return False
        result = self.connection.run(
            f"test -x {self.folder}/venv/bin/python && cat {self.folder}/fingerprint",
            check=False,
        )
        if result.returncode == 255:
            raise self.connection.error_for("reach the host", result)
        return result.returncode == 0 and result.stdout.decode().strip() == fingerprint

    def _probe(self) -> PythonTarget:
        python = self.config.spec.python or "python3"
        result = self.connection.run(
            f"{shlex.quote(python)} -c {shlex.quote(probe_script())}",
            check=False,
        )
        if result.returncode == 255:
            raise self.connection.error_for("reach the host", result)
        if result.returncode != 0:
            raise ConfigError(
                f"{self.config.path}: agent.python: {python!r} does not run on "
                f"{self.config.spec.host}",
                hint="Install Python 3.8 or newer with its venv module there, or set "
                "agent.python to its path.",
            )
        return PythonTarget.from_probe(result.stdout.decode())

    def _apply(self, fingerprint: str) -> str:
        target = self._probe()
        with self.step("Building the wheelhouse"):
            wheelhouse = build_wheelhouse(self.config.requirements_path, target)
        remote_wheelhouse = f"wheelhouses/{wheelhouse.key}"
        with self.step(f"Copying the wheelhouse to {self.config.spec.host}"):
            self.connection.run(f"mkdir -p {self.folder}/wheelhouses")
            self.connection.push_folder(
                wheelhouse.path, f"{self.rsync_folder}/{remote_wheelhouse}"
            )
        python = shlex.quote(self.config.spec.python or "python3")
        install = shlex.join(install_command("venv.new/bin/python", remote_wheelhouse))
        # Build beside the old environment and swap, so an interrupted apply
        # leaves the previous one working.
        script = " && ".join(
            [
                f"cd {self.folder}",
                "rm -rf venv.new",
                f"{python} -m venv venv.new",
                install,
                "rm -rf venv",
                "mv venv.new venv",
                f"echo {fingerprint} > fingerprint",
                f"find wheelhouses -mindepth 1 -maxdepth 1 ! -name {wheelhouse.key} "
                "-exec rm -rf {} +",
            ]
        )
        with self.step(f"Installing requirements on {self.config.spec.host}"):
            self.connection.run(script, action="create the virtual environment")
        self._forget_old_locations()
        self.state.add_resource(
            self.name,
            "folder",
            self._location(),
            {
                "python": target.version,
                "connection": self._connection_key(),
                "folder": self.folder,
            },
        )
        return (
            f"Agent {self.name}: environment ready on {self.config.spec.host} "
            f"(Python {target.version})"
        )

    def _start(
        self, request: RemoteRun, payload: bytes, early: Any = None
    ) -> Callable[[EventSink], RunFinished]:
        # Runs share the host's mirror of the project, so one runs at a time.
        run_lock = contextlib.ExitStack()
        run_lock.enter_context(self._lock("run"))
        try:
            return self._start_locked(request, payload, run_lock)
        except BaseException:
            run_lock.close()
            raise

    def _start_locked(
        self, request: RemoteRun, payload: bytes, run_lock: contextlib.ExitStack
    ) -> Callable[[EventSink], RunFinished]:
        bundle = collect_bundle(self.project_root, with_targets=bool(request.selectors))
        files = [str(path).lstrip("/") for path in bundle.files]
        sent = self.connection.push(Path("/"), files, f"{self.rsync_folder}/files")
        logger.debug("Sent %d bytes of project files", sent)
        self._prune(bundle.files)

        remote_root = f"{self.folder}/files{shlex.quote(str(self.project_root))}"
        command = (
            f"cd {remote_root} && echo $$ > {self.folder}/run.pid && "
            f"exec {self.folder}/venv/bin/python -m prism.agents.remote"
        )
        process = self.connection.popen(command)
        assert process.stdin is not None
        process.stdin.write(payload)
        process.stdin.close()

        def follow(sink: EventSink) -> RunFinished:
            from prism.agents.process import stream_process
            from prism.engine.events import TaskFinished

            written: set[str] = set()
            mirror = f"{self._home_path()}/files"

            def collect(event: Any) -> None:
                # Targets come as the host's paths; the mirror prefix maps them
                # back to this machine's.
                if isinstance(event, TaskFinished):
                    written.update(
                        path[len(mirror) :]
                        for path in event.targets
                        if path.startswith(mirror + "/")
                    )
                sink(event)

            try:
                finished = stream_process(
                    process,
                    collect,
                    timeout=self.config.spec.timeout,
                    stop=lambda: self._signal_run("TERM"),
                    kill=lambda: self._kill(process),
                )
                if finished.exit_code == 255:
                    # ssh itself exits 255 when the connection fails.
                    return dataclasses.replace(
                        finished,
                        exit_code=1,
                        error=f"Lost the SSH connection to {self.config.spec.host} "
                        f"during the run: {finished.error}",
                    )
                return finished
            finally:
                try:
                    self._copy_outputs(written)
                finally:
                    run_lock.close()

        return follow

    def _prune(self, files: tuple[Path, ...]) -> None:
        remote_files = "\0".join(f"{self._home_path()}/files{path}" for path in files)
        root = f"{self._home_path()}/files{self.project_root}"
        self.connection.run(
            f"{self.folder}/venv/bin/python -c {shlex.quote(_PRUNE)} "
            f"{shlex.quote(root)}",
            input=remote_files.encode(),
            action="remove deleted project files",
        )

    def _home_path(self) -> str:
        # The folder without shell syntax, for use inside remote Python code.
        workdir = self._workdir()
        if workdir is not None and workdir.startswith("/"):
            return workdir
        if self._home is None:
            result = self.connection.run("echo $HOME", action="find the home folder")
            self._home = result.stdout.decode().strip()
        return f"{self._home}/{self.rsync_folder}"

    def _signal_run(self, signal: str) -> None:
        self.connection.run(
            f"kill -{signal} -- -$(cat {self.folder}/run.pid) 2>/dev/null; true",
            check=False,
        )

    def _kill(self, process: Any) -> None:
        self._signal_run("KILL")
        process.kill()

    def _copy_outputs(self, written: set[str]) -> None:
        for path in output_paths(
            self.project_root, written, self.config.spec.artifacts
        ):
            remote = f"{self.rsync_folder}/files{path}"
            self.connection.pull(remote, path)
        record_targets(self.project_root, written)

    def _delete(self) -> list[str]:
        result = self.connection.run(
            f"test -f {self.folder}/fingerprint -o -d {self.folder}/files "
            f"&& rm -rf {self.folder} && echo removed; "
            f"{self._remove_empty_parent()}true",
            check=False,
        )
        if result.returncode == 255:
            raise self.connection.error_for("reach the host", result)
        if b"removed" in result.stdout:
            return [f"removed {self.config.spec.host}:{self.rsync_folder}"]
        return []

    def _connection_key(self) -> str:
        spec = self.config.spec
        return (
            f"{spec.user or ''}@{spec.host}:{spec.port or ''}:{spec.ssh_config or ''}"
        )

    def _location(self) -> str:
        user = f"{self.config.spec.user}@" if self.config.spec.user else ""
        return f"{user}{self.config.spec.host}:{self.rsync_folder}"

    def _forget_old_locations(self) -> None:
        # A changed host, user, port or workdir moves the agent. An old folder on
        # the same connection is removed; one elsewhere is named so it can be.
        for resource in self.state.resources(self.name):
            if resource.kind != "folder" or resource.id == self._location():
                continue
            old_folder = resource.details.get("folder")
            if (
                resource.details.get("connection") == self._connection_key()
                and old_folder
            ):
                self.connection.run(
                    f"test -f {old_folder}/fingerprint && rm -rf {old_folder}; true",
                    check=False,
                )
                logger.info("Removed the agent's previous folder %s", resource.id)
            else:
                logger.warning(
                    "Agent %s moved; its previous environment at %s was left in "
                    "place. Remove it there by hand if it is no longer needed.",
                    self.name,
                    resource.id,
                )
            self.state.remove_resource(self.name, resource.kind, resource.id)

    def _remove_empty_parent(self) -> str:
        # The default folder sits in one folder per project; drop it once empty.
        if self.config.spec.workdir:
            return ""
        return f"rmdir {self.folder.rsplit('/', 1)[0]} 2>/dev/null; "

    def _status(self) -> list[tuple[str, str]]:
        result = self.connection.run(
            f"cd {self.folder} 2>/dev/null && du -sh . | cut -f1 && "
            "venv/bin/python -c 'import sys; print(sys.version.split()[0])'",
            check=False,
        )
        if result.returncode == 255:
            raise self.connection.error_for("reach the host", result)
        lines = result.stdout.decode().split()
        host = f"{self.config.spec.host}:{self.rsync_folder}"
        if result.returncode != 0 or len(lines) < 2:
            return [("host folder", f"{host} (none)")]
        return [("host folder", host), ("size", lines[0]), ("python", lines[1])]
