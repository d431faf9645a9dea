"""`prism create`: add files to a project from templates."""

from __future__ import annotations

import re
from pathlib import Path

import click

from prism.cli.main import handle_errors, log_options
from prism.errors import UsageError

__all__ = ["create"]

_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@click.group()
def create() -> None:
    """Create tasks and other project files from templates."""


@create.command(name="task")
@click.option(
    "--type",
    "task_type",
    type=click.Choice(("python", "pyspark")),
    default="python",
    show_default=True,
    help="Kind of task to create.",
)
@click.option("--decorated", is_flag=True, help="Create a function task, not a class.")
@click.option(
    "--number",
    "-n",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many tasks to create.",
)
@click.option(
    "--name",
    default="new_task",
    show_default=True,
    help="Module name of the task: lowercase letters, digits and underscores.",
)
@click.option("--dir", "folder", default="", help="Sub-folder of tasks/ to put it in.")
@log_options
@handle_errors
def create_task(
    task_type: str,
    decorated: bool,
    number: int,
    name: str,
    folder: str,
    log_level: str,
    full_tb: bool,
) -> None:
    """Create task modules that run as they are."""
    from importlib import resources

    from prism.project import find_project

    if not _TASK_NAME.match(name):
        raise UsageError(
            f"Invalid value for --name: {name!r}",
            hint="Use lowercase letters, digits and underscores, starting with a "
            "letter, e.g. --name load_orders.",
        )
    root = find_project(Path.cwd())
    tasks_dir = (root / "tasks" / folder).resolve()
    if not tasks_dir.is_relative_to(root / "tasks"):
        raise UsageError(f"Invalid value for --dir: {folder!r} is outside tasks/")

    names = [name] if number == 1 else [f"{name}_{i}" for i in range(1, number + 1)]
    paths = [tasks_dir / f"{module}.py" for module in names]
    existing = [path for path in paths if path.exists()]
    if existing:
        raise UsageError(
            f"{existing[0].relative_to(root)} already exists",
            hint="Choose another --name, or remove the file.",
        )
    template = "task_function.py.tmpl" if decorated else "task_class.py.tmpl"
    text = (resources.files("prism") / "templates" / template).read_text("utf-8")
    tasks_dir.mkdir(parents=True, exist_ok=True)
    for module, path in zip(names, paths, strict=True):
        class_name = "".join(part.capitalize() for part in module.split("_"))
        path.write_text(
            text.format(class_name=class_name, function_name=module), encoding="utf-8"
        )
        click.echo(f"Created {path.relative_to(root)}")


@create.command(name="trigger")
@log_options
@handle_errors
def create_trigger(log_level: str, full_tb: bool) -> None:
    """Create triggers.yml (or the file TRIGGERS_YML_PATH names) from a template."""
    from importlib import resources

    from prism.project import find_project
    from prism.project.loader import read_triggers_path

    root = find_project(Path.cwd())
    path = read_triggers_path(root)
    if path.exists():
        raise UsageError(
            f"{path} already exists",
            hint="Add the new trigger under its `triggers:` key by hand.",
        )
    text = (resources.files("prism") / "templates" / "triggers.yml").read_text("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"Created {path}")
    click.echo("List the trigger names under TRIGGERS in prism_project.py.")


@create.command(name="agent")
@click.option(
    "--type",
    "agent_type",
    type=click.Choice(("venv", "docker", "ssh", "ec2", "emr")),
    default="venv",
    show_default=True,
    help="Kind of agent to create.",
)
@click.option(
    "--file",
    "-f",
    "agent_file",
    default="agent.yml",
    show_default=True,
    help="Path of the agent file, relative to the project folder.",
)
@log_options
@handle_errors
def create_agent(
    agent_type: str, agent_file: str, log_level: str, full_tb: bool
) -> None:
    """Create an agent file that is valid as written."""
    from importlib import resources

    from prism.project import find_project

    root = find_project(Path.cwd())
    path = Path(agent_file)
    path = path if path.is_absolute() else root / path
    if path.exists():
        raise UsageError(
            f"{path} already exists",
            hint="Choose another --file, or remove the file.",
        )
    template = resources.files("prism") / "templates" / "agents" / f"{agent_type}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template.read_text("utf-8"), encoding="utf-8")
    click.echo(f"Created {path}")
    click.echo(f"Run the project on it with: prism agent build -f {path}")
