"""Logging set-up shared by the services: one line per event, key=value context.

Services log through the standard library's ``logging`` (so third-party libraries' records are
formatted the same way); structlog renders them. ``ORCHESTRATOR_LOG_LEVEL`` sets the level,
``ORCHESTRATOR_LOG_FORMAT=json`` switches to JSON lines for log shippers. Every line is redacted
last (:mod:`orchestrator_shared.redact`).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

from orchestrator_shared.redact import redact


def configure_logging(service: str, *, level: str | None = None) -> None:
    level_name = (level or os.environ.get("ORCHESTRATOR_LOG_LEVEL", "INFO")).upper()
    json_lines = os.environ.get("ORCHESTRATOR_LOG_FORMAT", "").lower() == "json"
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_service(service),
            renderer,
            _redacted,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level_name, logging.INFO))
    logging.getLogger("nats").setLevel(logging.WARNING)


def _redacted(_logger: object, _name: str, line: Any) -> Any:
    """The rendered line (the renderer's string) with its secrets masked
    (:func:`orchestrator_shared.redact.redact`): tracebacks and libraries' messages included."""
    return redact(line) if isinstance(line, str) else line


def _add_service(service: str) -> structlog.types.Processor:
    def processor(
        _logger: object, _name: str, event: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event.setdefault("service", service)
        return event

    return processor
