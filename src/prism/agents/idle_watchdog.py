"""Runs an action once a host has been idle for a while: the EC2 idle timeout.

Copied to the host as a single file and run there with the system's Python, so
it imports nothing from Prism and works on Python 3.6 and newer. The host is
busy while someone is logged in over SSH or a Prism run is going on; once
neither has been true for `--timeout` seconds, the watchdog runs `--action`
(by default a shutdown, which EC2 turns into a stop or a termination according
to the instance's shutdown behaviour) and exits.

Usage: python3 idle_watchdog.py --timeout SECONDS --action COMMAND
       [--interval SECONDS]
"""

import argparse
import os
import subprocess
import sys
import time
from typing import List, Optional

RUN_MARKER = b"prism.agents.remote"


def busy_reasons() -> List[str]:
    """Return why the host is busy now: SSH sessions and Prism runs."""
    reasons: List[str] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        # OpenSSH names the process of a logged-in session "sshd: USER@TTY".
        if command.startswith(b"sshd: ") and b"@" in command:
            reasons.append("ssh session (pid %s)" % pid)
        elif RUN_MARKER in command:
            reasons.append("prism run (pid %s)" % pid)
    return reasons


def watch(timeout: float, interval: float, action: str) -> int:
    """Wait until the host has been idle for `timeout` seconds, then act."""
    last_busy = time.monotonic()
    while True:
        if busy_reasons():
            last_busy = time.monotonic()
        elif time.monotonic() - last_busy >= timeout:
            break
        time.sleep(interval)
    log("idle for %d s; running: %s" % (timeout, action))
    result = subprocess.run(action, shell=True)
    log("action exited with %d" % result.returncode)
    return result.returncode


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stdout.write("%s idle-watchdog: %s\n" % (stamp, message))
    sys.stdout.flush()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--action", required=True)
    parser.add_argument("--interval", type=float, default=30.0)
    arguments = parser.parse_args(argv)
    log("started: acting after %d s idle" % arguments.timeout)
    return watch(arguments.timeout, arguments.interval, str(arguments.action))


if __name__ == "__main__":
    sys.exit(main())
