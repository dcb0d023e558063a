"""One redaction for every place text leaves a process: logs, error messages, audit rows,
``dump-config``, hook output.

Two rules, applied together by :func:`redact`:

* **by shape**: a URL's ``user:password@``; ``password=...``, ``MASTER_PASSWORD='...'``,
  ``SOURCE_PASSWORD = '...'`` and any other ``<word>password|passwd|pwd|secret|token=<value>``
  (SQL, libpq keywords, query strings, ``KEY=value`` lines such as a hook's ``env`` output);
  ``"...password...": "..."`` in JSON; ``IDENTIFIED [WITH plugin] BY [PASSWORD] '...'``;
  ``Authorization: Basic|Bearer ...``;
* **by value**: every value registered with :func:`register_secrets` (``load_settings`` registers
  the value of every secret setting, :func:`secret_values`), wherever it appears.

A setting is a secret (:func:`is_secret_setting`) when it is declared ``repr=False`` or its name
says ``Password``, ``Token``, ``Secret``, ``DSN`` or ends in ``Key`` (``...KeyFile`` and
``...KeyPrefix`` name a path and a prefix, not a secret).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

__all__ = [
    "MASK",
    "SECRET_NAME",
    "forget_secrets",
    "is_secret_setting",
    "mask_userinfo",
    "redact",
    "register_secrets",
    "secret_values",
]

MASK = "********"
SECRET_NAME = re.compile(r"passw|token|secret|dsn|key$", re.IGNORECASE)
_MIN_SECRET = 4  # shorter registered values would mask ordinary words; never registered

# Every pattern runs in linear time (logs carry long payloads): a scheme is at most 32
# characters and cannot start inside another; a keyword is one word (``\w+``, checked for a
# secret word afterwards) that the engine gives back a character at a time at most once.
_URL = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,31}://)(?P<rest>[^\s\"'<>]*)"
)
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_SECRET_WORD = re.compile(r"password|passwd|pwd|secret|token", re.IGNORECASE)
_KEYWORD = re.compile(rf"(?P<head>\b(?P<name>\w+)\s*=\s*)(?P<value>{_QUOTED}|[^\s&;,)]*)")
_JSON = re.compile(r"(?P<head>\"(?P<name>\w+)\"\s*:\s*)(?P<value>\"(?:[^\"\\]|\\.)*\")")
_IDENTIFIED = re.compile(
    rf"(?P<head>\bIDENTIFIED\s+(?:WITH\s+\S+\s+)?(?:BY|AS)\s+(?:PASSWORD\s+)?)(?:{_QUOTED})",
    re.IGNORECASE,
)
_AUTHORIZATION = re.compile(r"(?P<head>\b(?:Basic|Bearer)\s+)[A-Za-z0-9+/=._~-]{8,}")


class _Registry:
    """The values registered for this process (read without the lock: a frozenset swapped
    whole)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: frozenset[str] = frozenset()


_KNOWN = _Registry()


def is_secret_setting(name: str, *, in_repr: bool = True) -> bool:
    """``name`` (a setting) holds a secret: declared ``repr=False`` (``in_repr=False``) or named
    like one."""
    return not in_repr or bool(SECRET_NAME.search(name))


def secret_values(settings: BaseModel) -> list[str]:
    """The values of ``settings``' secret settings (strings, and a mapping's keys: tokens)."""
    values: list[str] = []
    for name, info in type(settings).model_fields.items():
        if not is_secret_setting(name, in_repr=info.repr):
            continue
        values.extend(_strings(getattr(settings, name)))
    return values


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [str(key) for key in value]
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)]
    return []


def register_secrets(values: Iterable[str]) -> None:
    """Mask ``values`` wherever :func:`redact` sees them from now on (for this process)."""
    fresh = {value for value in values if len(value) >= _MIN_SECRET}
    with _KNOWN.lock:
        _KNOWN.values = _KNOWN.values | fresh


def forget_secrets() -> None:
    """Forget every registered value (tests: each starts with none)."""
    with _KNOWN.lock:
        _KNOWN.values = frozenset()


def mask_userinfo(text: str) -> str:
    """``user:password@rest`` -> ``user:********@rest``; the last ``@`` ends the password, so a
    password holding ``@`` or ``/`` is masked whole (at worst, more than the password)."""
    userinfo, at, rest = text.rpartition("@")
    if not at or ":" not in userinfo:
        return text
    return f"{userinfo.partition(':')[0]}:{MASK}@{rest}"


def _quoted_mask(match: re.Match[str]) -> str:
    return f"{match['head']}'{MASK}'"


def redact(text: str, *, registered: bool = True) -> str:
    """``text`` with every secret it spells out masked (see the module docstring);
    ``registered=False``: by shape only (a DSN shown without its password, not masked whole)."""
    if not text:
        return text
    for value in sorted(_KNOWN.values, key=len, reverse=True) if registered else ():
        if value in text:
            text = text.replace(value, MASK)
    if "://" in text:
        text = _URL.sub(lambda m: m["scheme"] + mask_userinfo(m["rest"]), text)
    text = _IDENTIFIED.sub(_quoted_mask, text)
    text = _AUTHORIZATION.sub(lambda m: f"{m['head']}{MASK}", text)
    if '"' in text:
        text = _JSON.sub(_assignment_mask, text)
    return _KEYWORD.sub(_assignment_mask, text) if "=" in text else text


def _assignment_mask(match: re.Match[str]) -> str:
    """``name = value`` (or ``"name": "value"``) with the value masked when the name says
    secret; quotes kept."""
    value = match["value"]
    if not value or not _SECRET_WORD.search(match["name"]):
        return match.group(0)
    if value.startswith(("'", '"')):
        return f"{match['head']}{value[0]}{MASK}{value[0]}"
    return f"{match['head']}{MASK}"
