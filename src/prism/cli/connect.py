"""`prism connect`: add a template adapter to the project's profile.yml."""

from __future__ import annotations

from pathlib import Path

import click

from prism.cli.main import handle_errors, log_options

__all__ = ["connect"]


@click.command()
@click.option(
    "--type",
    "adapter_type",
    required=True,
    metavar="TYPE",
    help="Type of the adapter to add: postgres, redshift, sqlite, duckdb, "
    "sqlalchemy, snowflake, bigquery, trino, presto, pyspark or dbt.",
)
@click.option(
    "--vars",
    "-v",
    "variables",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set prism_project.KEY to the string VALUE first (e.g. PROFILE=dev).",
)
@click.option(
    "--context",
    metavar="JSON",
    help="A JSON object whose keys are set on prism_project first.",
)
@log_options
@handle_errors
def connect(
    adapter_type: str,
    variables: tuple[str, ...],
    context: str | None,
    log_level: str,
    full_tb: bool,
) -> None:
    """Add an adapter of type TYPE to the profile that PROFILE names.

    The profile file (PROFILE_YML_PATH, or profile.yml beside prism_project.py)
    is created if missing. Its comments and formatting are kept.
    """
    from prism.connectors.connect import add_adapter
    from prism.connectors.profile import default_profile_path
    from prism.project import find_project, load_project, parse_context, parse_vars

    _check_type(adapter_type)
    overrides = {**parse_context(context), **parse_vars(variables)}
    root = find_project(Path.cwd())
    project = load_project(root, overrides)
    path = default_profile_path(root, project.profile_path)
    label = project.relative(path)
    added = add_adapter(path, project.profile, adapter_type, label)
    action = "Created" if added.created_file else "Updated"
    click.echo(
        f"{action} {label}: added the {adapter_type} adapter {added.adapter!r} to "
        f"profile {added.profile!r}."
    )
    click.echo(
        f"  Fill in its settings, then use it in a task as "
        f"hooks.sql({added.adapter!r}, ...)."
        if adapter_type not in ("pyspark", "dbt")
        else "  Fill in its settings."
    )
    if not project.profile:
        click.echo(
            f"  PROFILE is not set: add PROFILE = {added.profile!r} to "
            "prism_project.py, or the run uses no profile."
        )


def _check_type(adapter_type: str) -> None:
    import difflib

    from prism.connectors.connect import known_types
    from prism.errors import UsageError

    types = known_types()
    if adapter_type in types:
        return
    matches = difflib.get_close_matches(adapter_type, types, n=1)
    suggestion = f"Did you mean {matches[0]!r}? " if matches else ""
    raise UsageError(
        f"Invalid value for --type: unknown adapter type {adapter_type!r}",
        hint=f"{suggestion}The types are: {', '.join(types)}.",
    )
