"""Rendering run events for people (text) and for machines (JSON lines)."""

from prism.console.jsonl import JsonRenderer, capture_output
from prism.console.logs import EventLogHandler, route_logging
from prism.console.text import TextRenderer, level_from_name, wants_colour

__all__ = [
    "EventLogHandler",
    "JsonRenderer",
    "TextRenderer",
    "capture_output",
    "level_from_name",
    "route_logging",
    "wants_colour",
]
