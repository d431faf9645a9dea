from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from prism.engine.graph import Graph, build_graph
from prism.engine.parser import ModuleSpec, parse_module


@pytest.fixture
def parse() -> Callable[..., list[ModuleSpec]]:
    """Parse `{module_name: source}` into module specs without touching the disk."""

    def parse_sources(sources: dict[str, str]) -> list[ModuleSpec]:
        return [
            parse_module(
                textwrap.dedent(source),
                name=name,
                path=Path(f"/project/tasks/{name}.py"),
                file=f"tasks/{name}.py",
            )
            for name, source in sources.items()
        ]

    return parse_sources


@pytest.fixture
def graph_of(parse: Callable[..., list[ModuleSpec]]) -> Callable[..., Graph]:
    """Build the graph of `{module_name: source}`."""

    def build(sources: dict[str, str]) -> Graph:
        return build_graph(parse(sources))

    return build


def function_task(name: str, *refs: str) -> str:
    """Return the source of a module with one function task that refs `refs`."""
    calls = "".join(f"    tasks.ref({ref!r})\n" for ref in refs)
    return (
        f"from prism.decorators import task\n"
        f"@task()\n"
        f"def {name}(tasks, hooks):\n"
        f"{calls}    return 1\n"
    )
