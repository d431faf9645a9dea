"""Agents: the same project, run inside another runtime environment."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prism.agents.base import Agent
    from prism.agents.config import AgentConfig

__all__ = ["AGENT_TYPES", "create_agent"]

# Agent type name to "module:Class"; a module is imported only when its type is
# used, because SDKs such as docker take a while to import. The package itself
# imports nothing, so the far side (`python -m prism.agents.remote`) stays lean.
AGENT_TYPES: dict[str, str] = {
    "venv": "prism.agents.venv:VenvAgent",
    "docker": "prism.agents.docker:DockerAgent",
    "ssh": "prism.agents.ssh:SshAgent",
    "ec2": "prism.agents.ec2:Ec2Agent",
    "emr": "prism.agents.emr:EmrAgent",
}


def create_agent(config: AgentConfig, project_root: Path) -> Agent:
    """Return the agent object for a validated agent file."""
    module_name, _, class_name = AGENT_TYPES[config.type].partition(":")
    cls: type[Agent] = getattr(importlib.import_module(module_name), class_name)
    return cls(config, project_root)
