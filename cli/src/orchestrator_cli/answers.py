"""Instance keys as the API's paths and answers spell them, and an answer's ``Details``: what
every ``orchestrator -c`` command reads or writes (:mod:`.commands` and :mod:`.compat`, which
:mod:`.commands` imports, so neither reaches into the other for them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from orchestrator_shared.errors import InvalidInstanceKey
from orchestrator_shared.instance_key import InstanceKey

__all__ = ["details", "key_path", "key_text", "keys"]


def key_path(key: InstanceKey) -> str:
    """``host/port``, as the API's routes take an instance."""
    return f"{quote(key.host, safe='')}/{key.port}"


def key_text(value: Mapping[str, Any]) -> str:
    """orchestrator-client's ``Hostname:Port`` (an IPv6 host in brackets; a detached master's
    ``//host`` as it is)."""
    host, port = str(value["Hostname"]), int(value["Port"])
    try:
        return str(InstanceKey(host, port))
    except InvalidInstanceKey:
        return f"{host}:{port}"


def keys(values: Iterable[Mapping[str, Any]]) -> str:
    """``.[] | .Key`` then ``Hostname:Port``: one key a line."""
    return "\n".join(key_text(value["Key"]) for value in values)


def details(response: Any) -> Any:
    """``Details`` of an envelope; the answer itself when it is not one."""
    if isinstance(response, dict) and "Code" in response:
        return response.get("Details")
    return response
