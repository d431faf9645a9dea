"""`prism init`: create a new project from a template."""

from __future__ import annotations

import re
from pathlib import Path

import click

from prism.cli.main import handle_errors, log_options
from prism.errors import UsageError

__all__ = ["init"]

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@click.command()
@click.option("--project-name", help="Name of the project folder to create.")
@click.option("--minimal", is_flag=True, help="Create a project with fewer files.")
@log_options
@handle_errors
def init(
    project_name: str | None, minimal: bool, log_level: str, full_tb: bool
) -> None:
    """Create a new project folder that runs as it is."""
    if project_name is None:
        try:
            project_name = click.prompt("Project name", type=str)
        except click.exceptions.Abort:
            # Standard input ended before a name was given.
            raise UsageError(
                "Missing option --project-name",
                hint="Pass it when no one can answer the prompt, e.g. "
                "prism init --project-name my_project.",
            ) from None
    name = project_name.strip()
    if not _NAME_PATTERN.match(name):
        raise UsageError(
            f"Invalid project name {project_name!r}",
            hint="Use letters, digits, '_', '-' and '.', starting with a letter "
            "or digit.",
        )
    destination = Path.cwd() / name
    if destination.exists():
        raise UsageError(
            f"{destination} already exists",
            hint="Choose another --project-name, or remove the folder.",
        )
    create_project(destination, template="minimal" if minimal else "starter")
    click.echo(f"Created project {name} in {destination}")
    click.echo(f"Run it with: cd {name} && prism run")


def create_project(destination: Path, *, template: str) -> None:
    """Copy a project template to `destination` and set its NAME."""
    import shutil
    from importlib import resources

    source = resources.files("prism") / "templates" / template
    staging = destination.with_name(f".{destination.name}.creating")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with resources.as_file(source) as folder:
            shutil.copytree(
                folder, staging, ignore=shutil.ignore_patterns("__pycache__")
            )
        (staging / "gitignore").rename(staging / ".gitignore")
        settings = staging / "prism_project.py"
        text = settings.read_text(encoding="utf-8")
        settings.write_text(
            text.replace('NAME = ""', f"NAME = {destination.name!r}", 1),
            encoding="utf-8",
        )
        staging.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
