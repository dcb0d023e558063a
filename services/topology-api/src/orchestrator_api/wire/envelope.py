"""orchestrator's response envelope, ``{"Code": "OK"|"ERROR", "Message": ..., "Details": ...}``.

Routes that change something (and a few reads, such as ``topology``) answer with it; most reads
answer bare JSON. orchestrator sends every ``ERROR`` with HTTP 500; we choose the status at the
HTTP layer (4xx for the client's mistakes), the body stays this envelope so its clients still
parse it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = ["Envelope", "ResponseCode", "envelope", "error_envelope", "ok_envelope"]

Envelope = dict[str, Any]


class ResponseCode(StrEnum):
    OK = "OK"
    ERROR = "ERROR"


def envelope(code: ResponseCode | str, message: str, details: Any = None) -> Envelope:
    """The envelope with ``Details`` as given (``None`` is written as JSON ``null``)."""
    return {"Code": str(ResponseCode(code)), "Message": message, "Details": details}


def ok_envelope(message: str, details: Any = None) -> Envelope:
    return envelope(ResponseCode.OK, message, details)


def error_envelope(message: str, details: Any = None) -> Envelope:
    """An ``ERROR`` envelope; orchestrator leaves ``Details`` null on errors."""
    return envelope(ResponseCode.ERROR, message, details)
