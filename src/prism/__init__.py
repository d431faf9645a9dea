"""Prism runs Python data pipelines anywhere: locally or inside an agent."""

__version__ = "0.3.0"
