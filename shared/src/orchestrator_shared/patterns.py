"""Regular expressions that users and configuration files supply, matched in linear time.

Python's ``re`` backtracks: ``(a+)+$`` against a 30-character host name ending in ``b`` runs
for minutes, and on the recovery leader that would stop its lease keep-alives. Every pattern
from a setting (``DiscoveryIgnoreHostnameFilters``, recovery and promotion filters,
``alias~=`` cluster filters, ``DataCenterPattern`` ...) or a request (``?pattern=``) goes
through here: RE2 (``google-re2``) matches in time linear in the text, with bounded memory, and
patterns are at most :data:`MAX_PATTERN_LENGTH` characters. RE2 has no backreferences and no
look-around; a pattern using them is refused as invalid (:class:`InvalidPattern`, a
``ValueError``: a configuration error at start-up, 400 from the API).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from orchestrator_shared.errors import OrchestratorError

MAX_PATTERN_LENGTH = 512
_MAX_MEMORY = 1 << 20  # bytes RE2 may use for one compiled pattern


class InvalidPattern(OrchestratorError, ValueError):
    """A pattern RE2 does not accept, or one that is too long."""


class Pattern:
    """A compiled pattern; ``search`` as ``re.search``."""

    __slots__ = ("_compiled", "text")

    def __init__(self, text: str, compiled: Any) -> None:
        self.text = text
        self._compiled = compiled

    def search(self, subject: str) -> bool:
        """Whether the pattern is found anywhere in ``subject``."""
        return self._compiled.search(subject) is not None

    def first_group(self, subject: str) -> str:
        """The first group of the first match in ``subject`` ("" without a match or group)."""
        match = self._compiled.search(subject)
        if match is None or not match.groups():
            return ""
        return str(match.group(1) or "")


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 writes parse errors to stderr otherwise
    options.max_mem = _MAX_MEMORY
    return options


_OPTIONS = _options()


@lru_cache(maxsize=1024)
def compile_pattern(text: str) -> Pattern:
    """``text`` compiled (cached); :class:`InvalidPattern` when it is too long or not a
    pattern RE2 accepts."""
    if len(text) > MAX_PATTERN_LENGTH:
        raise InvalidPattern(
            f"a pattern of {len(text)} characters is longer than {MAX_PATTERN_LENGTH}"
        )
    try:
        return Pattern(text, re2.compile(text, _OPTIONS))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise InvalidPattern(
            f"expected a regular expression, {text!r} is not one: {reason}"
        ) from None


def search(pattern: str, subject: str) -> bool:
    """Whether ``pattern`` is found in ``subject``; :class:`InvalidPattern` for a bad one."""
    return compile_pattern(pattern).search(subject)
