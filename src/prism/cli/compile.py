"""`prism compile`: check the project and write `.compiled/manifest.json`."""

from __future__ import annotations

from pathlib import Path

import click

from prism.cli.main import handle_errors, log_options

__all__ = ["compile_"]


@click.command(name="compile")
@log_options
@handle_errors
def compile_(log_level: str, full_tb: bool) -> None:
    """Parse every task, check the graph and write .compiled/manifest.json.

    Neither prism_project.py nor any task is executed.
    """
    from prism.engine.run import compile_project

    compiled = compile_project(Path.cwd())
    count = len(compiled.graph.tasks)
    noun = "task" if count == 1 else "tasks"
    manifest = compiled.manifest_path.relative_to(compiled.root)
    click.echo(f"Compiled {count} {noun}; wrote {manifest}")
