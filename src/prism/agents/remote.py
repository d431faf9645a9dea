"""The far side of an agent run, and the request the client sends it.

The client starts `python -m prism.agents.remote` on the agent and writes one
JSON line to its standard input: the run's `env` and the `prism run` request,
with flags already parsed and checked on the client. The far side adds `env` to
its environment and runs the project with JSON events on standard output.

Sending `env` this way keeps secret values out of the container's configuration
(`docker inspect`), the remote command line (`ps`) and every file on the agent.
Skipping the command-line parser also makes the far side start sooner.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RemoteRun", "main"]


@dataclass(frozen=True)
class RemoteRun:
    """The `prism run` flags of one agent run, already parsed."""

    selectors: tuple[str, ...] = ()
    all_upstream: bool = False
    all_downstream: bool = False
    full_refresh: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"
    full_tb: bool = False

    def payload(self, env: dict[str, str]) -> bytes:
        """Return the line the far side reads: `env` and this request."""
        request = {**asdict(self), "selectors": list(self.selectors)}
        return json.dumps({"env": env, "run": request}).encode() + b"\n"

    def describe(self) -> str:
        """Return the equivalent command, with `-v` values left out."""
        words = ["prism", "run"]
        for selector in self.selectors:
            words += ["-t", selector]
        for flag in ("all_upstream", "all_downstream", "full_refresh"):
            if getattr(self, flag):
                words.append("--" + flag.replace("_", "-"))
        for key in self.overrides:
            words += ["-v", f"{key}=..."]
        return shlex.join(words)


def main() -> None:
    """Read the request from stdin, then run the project in the current folder.

    The modules a run needs are imported first: a client may start this process
    before it has checked the agent, and then either sends the request or closes
    stdin, which ends the process without doing anything.
    """
    from prism.console.session import run_session
    from prism.engine.run import RunRequest

    line = sys.stdin.readline()
    if not line.strip():
        return
    try:
        message = json.loads(line)
        env = {str(key): str(value) for key, value in message["env"].items()}
        run = RemoteRun(
            **{**message["run"], "selectors": tuple(message["run"]["selectors"])}
        )
    except (ValueError, KeyError, TypeError) as error:
        sys.exit(f"prism.agents.remote: invalid request on standard input: {error}")
    os.environ.update(env)

    request = RunRequest(
        cwd=Path.cwd(),
        selectors=run.selectors,
        all_upstream=run.all_upstream,
        all_downstream=run.all_downstream,
        full_refresh=run.full_refresh,
        overrides=run.overrides,
    )
    sys.exit(
        run_session(
            request,
            log_format="json",
            log_level=run.log_level,
            full_tb=run.full_tb,
            log_file=None,
        )
    )


if __name__ == "__main__":
    main()
