"""The far side of an agent run: read the run's environment, then run `prism run`.

`python -m prism.agents.remote ARGS...` reads one JSON object from standard input,
adds it to the process environment, and runs `prism run ARGS...`. Passing `env`
this way keeps secret values out of the container's configuration (`docker
inspect`), the remote command line (`ps`) and every file on the agent.
"""

from __future__ import annotations

import json
import os
import sys

__all__ = ["main"]


def main() -> None:
    """Read the environment from stdin, then hand over to `prism run`."""
    line = sys.stdin.readline()
    values = json.loads(line) if line.strip() else {}
    if not isinstance(values, dict):
        sys.exit("prism.agents.remote: expected a JSON object on standard input")
    os.environ.update({str(key): str(value) for key, value in values.items()})
    os.environ["PRISM_NO_LOG_FILE"] = "1"

    from prism.cli.main import cli

    cli(["run", *sys.argv[1:]], prog_name="prism")


if __name__ == "__main__":
    main()
