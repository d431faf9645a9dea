"""The interface every agent type implements, and the behaviour they share.

An agent type subclasses `Agent` and fills in the private hooks. The public
methods add what every type needs: a log line and timing per step, the state
database, run records, secret masking and the exit code.

Implementers must guarantee:

- `_apply` is idempotent and can be re-run after a crash or Ctrl-C at any point.
  It finds and reuses or replaces what an interrupted apply left behind.
- `_start` starts the far side and returns a function that follows the run. That
  function streams events as they arrive, copies outputs back even when the run
  fails, and returns the closing event. It leaves nothing running when it returns
  or raises, including on KeyboardInterrupt.
- `_delete` removes everything the agent created, and nothing else.
- No `env` value is ever written to disk, an image, the state database or a log.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from prism.agents.config import AgentConfig, resolve_env, secret_values
from prism.agents.state import State
from prism.errors import ConfigError

if TYPE_CHECKING:
    from prism.agents.remote import RemoteRun
    from prism.engine.events import EventSink, RunFinished

__all__ = ["Agent", "ApplyResult", "StartedRun", "StatusReport"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of `apply`: `changed` is False when all was already in place."""

    changed: bool
    summary: str


@dataclass(frozen=True)
class StatusReport:
    """The resources of an agent, as label and value pairs for display."""

    name: str
    type: str
    exists: bool
    fields: tuple[tuple[str, str], ...]


class Agent(ABC):
    """One agent of one project, described by its agent file."""

    type: ClassVar[str]

    def __init__(self, config: AgentConfig, project_root: Path) -> None:
        self.config = config
        self.name = config.name
        self.project_root = project_root
        self.state = State(project_root)

    def fingerprint(self) -> str:
        """Return the hash of everything that shapes the environment."""
        return self.config.fingerprint(*self._fingerprint_parts())

    def apply(self) -> ApplyResult:
        """Create or update the environment; do nothing if it is up to date."""
        # Every `${NAME}` must resolve before anything is created, although the
        # values are only used when a run starts.
        resolve_env(self.config)
        self._check_name_is_free()
        with self.lock("apply"):
            return self._apply_unlocked()

    def _apply_unlocked(self) -> ApplyResult:
        fingerprint = self.fingerprint()
        record = self.state.agent(self.name)
        if (
            record
            and record.fingerprint == fingerprint
            and self._is_current(fingerprint)
        ):
            return ApplyResult(
                False, f"Agent {self.name} is up to date; nothing to do."
            )
        with self.step(f"Applying agent {self.name} ({self.type})"):
            summary = self._apply(fingerprint)
        self.state.save_agent(self.name, self.type, str(self.config.path), fingerprint)
        return ApplyResult(True, summary)

    def run(self, request: RemoteRun, sink: EventSink) -> int:
        """Run the project on the agent; return the far side's exit code.

        Every event reaches `sink` with secret values masked, `run_finished` last.
        """
        return self.start(request).wait(sink)

    def start(self, request: RemoteRun, early: Any = None) -> StartedRun:
        """Check the agent, then start the project on it.

        Starting before the caller sets up its output lets the far side boot while
        the client gets ready to render events. `early` is a far side the agent
        type started before the checks (see `prism.agents.venv.launch_early`).
        """
        fingerprint = self.fingerprint()
        record = self.state.agent(self.name)
        apply_hint = f"Run `prism agent apply -f {self.config.path}` first."
        if record is not None and record.fingerprint == fingerprint:
            self._prepare_run()
        if record is None:
            raise ConfigError(
                f"Agent {self.name} has not been applied",
                hint=f"{apply_hint} `prism agent build` applies and runs.",
            )
        if record.fingerprint != fingerprint:
            raise ConfigError(
                f"Agent {self.name} changed since it was applied (its file, its "
                "requirements or Prism itself)",
                hint=apply_hint,
            )
        if not self._is_current(fingerprint):
            raise ConfigError(
                f"The environment of agent {self.name} no longer exists",
                hint=apply_hint,
            )
        env = resolve_env(self.config)
        secrets = secret_values(self.config)
        run_id = self.state.start_run(self.name, request.describe())
        try:
            stream = self._start(request, request.payload(env), early)
        except BaseException:
            self.state.finish_run(run_id, 1)
            raise
        return StartedRun(self.state, run_id, secrets, stream)

    def delete(self) -> list[str]:
        """Remove everything the agent created; return a line per thing removed."""
        with self.lock("delete"):
            removed = self._delete()
            self.state.forget_agent(self.name)
        return removed

    def _check_name_is_free(self) -> None:
        record = self.state.agent(self.name)
        if record is None or record.file == str(self.config.path):
            return
        if Path(record.file).exists():
            raise ConfigError(
                f"The agent name {self.name!r} is already used by {record.file}",
                hint="An agent is named after its file, up to the first dot; rename "
                f"{self.config.path.name} or delete the other agent first.",
            )

    @contextmanager
    def lock(self, action: str) -> Iterator[None]:
        """Hold this agent's lock, or fail at once if another command holds it."""
        import fcntl
        import os

        folder = self.project_root / ".prism" / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{self.name}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise ConfigError(
                    f"Agent {self.name} is busy: {holder} is using it",
                    hint=f"Wait for it to finish, then try the {action} again.",
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"prism agent {action} (pid {os.getpid()})")
            handle.flush()
            yield

    def status(self) -> StatusReport:
        """Describe what exists for this agent and its last run."""
        record = self.state.agent(self.name)
        fields = list(self._status())
        if record is not None and record.applied_at:
            fields.append(("applied", _format_time(record.applied_at)))
            fields.append(("fingerprint", (record.fingerprint or "")[:12]))
        last = self.state.last_run(self.name)
        if last is not None:
            result = (
                "running or stopped"
                if last.exit_code is None
                else (f"exit {last.exit_code}")
            )
            fields.append(("last run", f"{_format_time(last.started_at)}, {result}"))
        try:
            exists = self._is_current(record.fingerprint) if record else False
        except ConfigError:
            # The host is unreachable; the fields above describe what is known.
            exists = False
        return StatusReport(
            name=self.name, type=self.type, exists=exists, fields=tuple(fields)
        )

    def close(self) -> None:  # noqa: B027 - optional hook, most agents hold nothing
        """Release connections the agent opened; called when a command ends."""

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        """Log the start and the duration of one lifecycle step."""
        logger.info("%s ...", description)
        started = time.perf_counter()
        yield
        logger.info("%s: done in %.1fs", description, time.perf_counter() - started)

    def _prepare_run(self) -> None:  # noqa: B027 - optional hook
        """Bring a stopped environment back before a run, e.g. start an instance."""

    @abstractmethod
    def _fingerprint_parts(self) -> tuple[str, ...]:
        """Return what, beyond the agent file, shapes the environment."""

    @abstractmethod
    def _is_current(self, fingerprint: str | None) -> bool:
        """Return True when the environment built for `fingerprint` exists."""

    @abstractmethod
    def _apply(self, fingerprint: str) -> str:
        """Build the environment for `fingerprint`; return a one-line summary."""

    @abstractmethod
    def _start(
        self, request: RemoteRun, payload: bytes, early: Any = None
    ) -> Callable[[EventSink], RunFinished]:
        """Ship the project and start it; return the function that follows the run.

        `early` is a far side this agent type started before the checks, or None.

        When `request` selects tasks, the target files of earlier runs are shipped
        too (`collect_bundle(..., with_targets=True)`).

        The far side runs `python -m prism.agents.remote` in the project folder,
        and `payload` (the run's request and `env`) goes to its standard input.

        The returned function streams events to its sink as they arrive, brings
        outputs back, and returns the far side's closing event without emitting
        it. It must leave nothing running, also when interrupted.
        """

    @abstractmethod
    def _delete(self) -> list[str]:
        """Remove what the agent created."""

    @abstractmethod
    def _status(self) -> list[tuple[str, str]]:
        """Describe the environment as label and value pairs."""


class StartedRun:
    """A run that has started on an agent; `wait` follows it to the end."""

    def __init__(
        self,
        state: State,
        run_id: int,
        secrets: frozenset[str],
        stream: Callable[[EventSink], RunFinished],
    ) -> None:
        self._state = state
        self._run_id = run_id
        self._secrets = secrets
        self._stream = stream

    def wait(self, sink: EventSink) -> int:
        """Stream the run's events to `sink`, secrets masked; return its exit code."""
        from prism.agents.stream import mask_secrets

        masked = mask_secrets(sink, self._secrets)
        exit_code = 130
        try:
            finished = self._stream(masked)
            exit_code = finished.exit_code
        finally:
            self._state.finish_run(self._run_id, exit_code)
        masked(finished)
        return exit_code


def _format_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
