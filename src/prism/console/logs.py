"""Turning log records from Prism and from tasks into `log` events."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from prism.engine.events import EventSink, LogMessage
from prism.engine.execution import current_task

__all__ = ["EventLogHandler", "route_logging"]

# `PRISM_LOGGER` is the logger the project template of Prism 0.2.x gives tasks.
_LOGGERS = ("prism", "PRISM_LOGGER")
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning"}


class EventLogHandler(logging.Handler):
    """A logging handler that sends each record to an event sink."""

    def __init__(self, sink: EventSink) -> None:
        super().__init__()
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            self.handleError(record)
            return
        level = _NAMES.get(record.levelno, "error" if record.levelno > 30 else "debug")
        self._sink(LogMessage(level=level, message=message, task=current_task()))


@contextlib.contextmanager
def route_logging(sink: EventSink, level: int) -> Iterator[None]:
    """Send records of Prism's loggers at `level` or above to `sink` while active."""
    handler = EventLogHandler(sink)
    saved = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, old_level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = propagate
