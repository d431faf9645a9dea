"""Wheelhouses: an agent's dependencies, resolved on the client, installed offline.

The client downloads (or builds) wheels for the agent's Python version and
platform into a cached folder, together with a wheel of the client's own Prism.
The agent then installs from that folder with `pip install --no-index`, so it
needs no access to a package index, and two agents built from the same inputs
get the same packages.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import prism
from prism.errors import ConfigError, PrismError

__all__ = [
    "DISTRIBUTION",
    "PythonTarget",
    "Wheelhouse",
    "build_wheelhouse",
    "install_command",
    "prism_source_hash",
    "probe_script",
]

logger = logging.getLogger(__name__)

DISTRIBUTION = "prism-pipelines"

# Run by the agent's interpreter to describe itself: the output is one JSON line.
PROBE_SCRIPT = (
    "import json, platform, sys, sysconfig; "
    "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
    "'implementation': sys.implementation.name, "
    "'machine': platform.machine(), 'libc': platform.libc_ver(), "
    "'platform': sysconfig.get_platform()}))"
)


def probe_script() -> str:
    """Return the Python one-liner whose output `PythonTarget.from_probe` reads."""
    return PROBE_SCRIPT


# The oldest Python that Prism itself, installed on every agent, runs on.
MIN_PYTHON = (3, 10)


@dataclass(frozen=True)
class PythonTarget:
    """The interpreter an agent runs: its version and platform."""

    version: str
    implementation: str
    machine: str
    libc: tuple[str, str]
    platform: str

    @classmethod
    def from_probe(cls, output: str) -> PythonTarget:
        data = json.loads(output.strip().splitlines()[-1])
        return cls(
            version=data["version"],
            implementation=data["implementation"],
            machine=data["machine"],
            libc=(str(data["libc"][0]), str(data["libc"][1])),
            platform=data["platform"],
        )

    @property
    def supported(self) -> bool:
        """True when Prism can be installed on this interpreter."""
        major, minor = (int(part) for part in self.version.split(".")[:2])
        return (major, minor) >= MIN_PYTHON

    @classmethod
    def client(cls) -> PythonTarget:
        """Describe the interpreter running Prism on this machine."""
        return _client_target()

    @property
    def key(self) -> str:
        libc = "-".join(self.libc)
        return f"{self.implementation}-{self.version}-{self.platform}-{libc}"

    def pip_platform_args(self) -> list[str]:
        """Return pip's flags that select wheels for this interpreter."""
        nodot = self.version.replace(".", "")
        args = [
            "--only-binary=:all:",
            "--python-version",
            self.version,
            "--implementation",
            "cp" if self.implementation == "cpython" else "py",
            "--abi",
            f"cp{nodot}",
        ]
        for platform in self._platform_tags():
            args += ["--platform", platform]
        return args

    def _platform_tags(self) -> list[str]:
        arch = self.machine
        if self.libc[0] == "glibc" and self.libc[1]:
            major, minor = (int(part) for part in self.libc[1].split(".")[:2])
            tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
            return [*tags, f"manylinux2014_{arch}", f"linux_{arch}"]
        return [self.platform.replace("-", "_").replace(".", "_")]


@functools.cache
def _client_target() -> PythonTarget:
    import platform
    import sysconfig

    # os.confstr returns at once, but platform.libc_ver() scans the interpreter's
    # binary, which costs milliseconds on every command.
    try:
        name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
        libc = ("glibc", version) if name == "glibc" else platform.libc_ver()
    except (ValueError, OSError, AttributeError):
        libc = platform.libc_ver()
    return PythonTarget(
        version=f"{sys.version_info[0]}.{sys.version_info[1]}",
        implementation=sys.implementation.name,
        machine=platform.machine(),
        libc=(libc[0], libc[1]),
        platform=sysconfig.get_platform(),
    )


@dataclass(frozen=True)
class Wheelhouse:
    """A folder of wheels with the requirements file to install from it."""

    path: Path
    key: str

    @property
    def requirements(self) -> Path:
        return self.path / "requirements.txt"


def install_command(python: str, wheelhouse: str) -> list[str]:
    """Return the command that installs a wheelhouse offline with `python -m pip`."""
    return [
        python,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--quiet",
        "--find-links",
        wheelhouse,
        "-r",
        f"{wheelhouse}/requirements.txt",
    ]


def cache_folder() -> Path:
    """Return Prism's cache folder, `$XDG_CACHE_HOME/prism` or `~/.cache/prism`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prism"


def build_wheelhouse(requirements: Path | None, target: PythonTarget) -> Wheelhouse:
    """Return a wheelhouse for `requirements` and this Prism, building it if needed.

    Wheelhouses are cached by the requirements' text, the Prism source and the
    target interpreter; a cached one is reused without touching the network.

    Raises:
        PrismError: pip cannot resolve or download a requirement.
    """
    import shutil
    import tempfile

    text = requirements.read_text(encoding="utf-8") if requirements else ""
    key = hashlib.sha256(
        json.dumps([text, prism_source_hash(), target.key]).encode()
    ).hexdigest()[:20]
    folder = cache_folder() / "wheelhouses" / key
    if (folder / "requirements.txt").is_file():
        logger.debug("Reusing wheelhouse %s", folder)
        return Wheelhouse(path=folder, key=key)

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{key}-"))
    try:
        prism_wheel = _build_prism_wheel(staging)
        _fetch_requirements(requirements, prism_wheel, staging, target)
        lines = [DISTRIBUTION]
        if text.strip():
            (staging / "user-requirements.txt").write_text(text, encoding="utf-8")
            lines.append("-r user-requirements.txt")
        (staging / "requirements.txt").write_text("\n".join(lines) + "\n")
        try:
            staging.rename(folder)
        except OSError:
            # Another process built the same wheelhouse first; use that one.
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Wheelhouse(path=folder, key=key)


@functools.cache
def prism_source_hash() -> str:
    """Return a hash of the installed Prism package's files."""
    # The version alone is not enough: an editable install changes without one.
    digest = hashlib.sha256(prism.__version__.encode())
    package = Path(prism.__file__).parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _build_prism_wheel(destination: Path) -> Path:
    source = _prism_source_folder()
    if source is not None:
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(destination),
            str(source),
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--dest",
            str(destination),
            f"{DISTRIBUTION}=={prism.__version__}",
        ]
    _run_pip(command, f"build a wheel of Prism {prism.__version__}")
    wheels = sorted(destination.glob("prism_pipelines-*.whl"))
    if not wheels:
        raise PrismError(f"pip did not produce a wheel of {DISTRIBUTION}")
    return wheels[-1]


def _prism_source_folder() -> Path | None:
    # An install from a folder (editable or not) records that folder in
    # direct_url.json; build the wheel from it so the agent gets this exact code.
    from importlib import metadata

    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    text = distribution.read_text("direct_url.json")
    if not text:
        return None
    url = json.loads(text).get("url", "")
    if not url.startswith("file://"):
        return None
    folder = Path(url[len("file://") :])
    return folder if (folder / "pyproject.toml").is_file() else None


def _fetch_requirements(
    requirements: Path | None,
    prism_wheel: Path,
    destination: Path,
    target: PythonTarget,
) -> None:
    inputs = [str(prism_wheel)]
    if requirements is not None:
        inputs += ["-r", str(requirements)]
    if target.key == PythonTarget.client().key:
        # Same interpreter kind as the client: build wheels for packages that
        # only publish source distributions too.
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--wheel-dir",
            str(destination),
            *inputs,
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(destination),
            *target.pip_platform_args(),
            *inputs,
        ]
    _run_pip(command, "download the agent's requirements")


def _run_pip(command: list[str], purpose: str) -> None:
    import subprocess

    logger.debug("Running %s", " ".join(command))
    environment = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        lines = [
            line
            for line in result.stderr.splitlines()
            if line.strip() and not line.startswith("WARNING: Location")
        ]
        detail = "\n  ".join(lines[-8:]) or f"pip exited with {result.returncode}"
        raise ConfigError(
            f"Failed to {purpose}:\n  {detail}",
            hint="Check the requirements file and that this machine can reach the "
            "package index (pip's own settings apply).",
        )
