"""The identity of a MySQL/MariaDB server: ``InstanceKey(host, port)``.

Text form
    ``host:port``; an IPv6 host is written in brackets, ``[::1]:3306``. ``InstanceKey.parse``
    also accepts a bare host (``db1``, default port), ``[ipv6]`` and a bare IPv6 address
    (``::1``; never with a port, since ``fe80::1:3306`` would be ambiguous). Hostnames are
    lowercased and IPv6 addresses written in their canonical RFC 5952 form, so one server has one
    key and ``InstanceKey.parse(str(key)) == key`` for every key.

    A hostname may hold ASCII letters, digits, ``-``, ``.`` and ``_``. Brackets are only for IPv6
    addresses; IPv6 zone ids (``%eth0``) are not supported.

Subject token
    ``key.subject_token`` is ``str(key)`` encoded so that it is one NATS subject token (no ``.``,
    ``*``, ``>``, whitespace, and no ``$`` either), and ``InstanceKey.from_subject_token`` reverses
    it. The encoding, character by character:

    - ``.`` becomes ``_``;
    - ``_``, ``~``, ``*``, ``>``, ``$``, whitespace and any non-printable or non-ASCII character
      become ``~`` followed by two lowercase hex digits per UTF-8 byte (``_`` is ``~5f``);
    - every other character stays as it is.

    So ``127.0.0.1:3306`` is ``127_0_0_1:3306`` and ``my_host.x:3306`` is ``my~5fhost_x:3306``.
    Each key has exactly one token: decoding rejects malformed escapes and any token that is not
    the one the key itself would produce (unneeded escapes, an uppercase hostname).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Self, cast

from orchestrator_shared.errors import InvalidInstanceKey

__all__ = ["DEFAULT_PORT", "InstanceKey"]

DEFAULT_PORT = 3306
"""The MySQL/MariaDB port used when the text names no port."""

_MAX_PORT = 65535
_HOSTNAME_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_PORT_DIGITS = re.compile(r"[0-9]+")
_HEX_PAIR = re.compile(r"[0-9a-f]{2}")
_ESCAPED_CHARS = frozenset("_~*>$")


class _Problem(ValueError):
    """Internal: what is wrong, without the quoted input (the caller adds that)."""


@dataclass(frozen=True, slots=True, order=True)
class InstanceKey:
    """A server's ``host`` (lowercased hostname, IPv4 or canonical IPv6 address) and ``port``.

    The constructor validates and normalizes like ``parse`` does, so every ``InstanceKey`` that
    exists is a valid, canonical one.
    """

    host: str
    port: int

    def __post_init__(self) -> None:
        try:
            _check_port(self.port)
            host = _normalize_host(self.host)
        except _Problem as problem:
            shown = _display(self.host, self.port)
            raise InvalidInstanceKey(f"invalid instance key {shown!r}: {problem}") from None
        if host != self.host:
            object.__setattr__(self, "host", host)

    @classmethod
    def parse(cls, text: str, *, default_port: int = DEFAULT_PORT) -> Self:
        """Parse ``host``, ``host:port``, ``[ipv6]``, ``[ipv6]:port`` or a bare IPv6 address.

        Surrounding whitespace is ignored; ``default_port`` applies when the text has no port.
        """
        if cls is InstanceKey:
            return cast(Self, _parsed(text, default_port))
        return cls(*_checked_parts(text, default_port))

    def __str__(self) -> str:
        return _display(self.host, self.port)

    @property
    def is_ipv6(self) -> bool:
        """Whether the host is an IPv6 address (written in brackets)."""
        return ":" in self.host

    @property
    def subject_token(self) -> str:
        """``str(self)`` encoded as one NATS subject token (see the module docstring)."""
        return _encode_token(str(self))

    @classmethod
    def from_subject_token(cls, token: str) -> Self:
        """The key whose ``subject_token`` is ``token``; ``InvalidInstanceKey`` otherwise."""
        try:
            decoded = _decode_token(token)
        except _Problem as problem:
            raise InvalidInstanceKey(
                f"invalid instance key subject token {token!r}: {problem}"
            ) from None
        try:
            key = cls.parse(decoded)
        except InvalidInstanceKey as error:
            raise InvalidInstanceKey(
                f"invalid instance key subject token {token!r}: {error}"
            ) from None
        if key.subject_token != token:
            raise InvalidInstanceKey(
                f"invalid instance key subject token {token!r}: "
                f"not the canonical token of {str(key)!r}, which is {key.subject_token!r}"
            )
        return key


def _display(host: object, port: object) -> str:
    if isinstance(host, str) and ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _split(text: str, *, default_port: int) -> tuple[str, int]:
    """Split stripped ``text`` into its host text and port."""
    if not text:
        raise _Problem("empty")
    if "://" in text:
        raise _Problem("a URL scheme is not allowed, expected host:port")
    if any(char.isspace() for char in text):
        raise _Problem("contains whitespace")

    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise _Problem("unbalanced brackets, missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if "[" in host or "[" in rest or "]" in rest:
            raise _Problem("unbalanced brackets")
        if not host:
            raise _Problem("empty host")
        if ":" not in host:
            raise _Problem("brackets are only for IPv6 addresses")
        if not rest:
            return host, default_port
        if rest.startswith(":"):
            return host, _parse_port(rest[1:])
        raise _Problem(f"unexpected {rest!r} after ']'")
    if "[" in text or "]" in text:
        raise _Problem("unbalanced brackets")

    colons = text.count(":")
    if colons == 0:
        return text, default_port
    if colons == 1:
        host, port_text = text.split(":")
        if not host:
            raise _Problem("empty host")
        return host, _parse_port(port_text)
    if "%" in text:
        raise _Problem("IPv6 zone ids are not supported")
    if not _is_ipv6(text):
        raise _Problem("too many ':' (write an IPv6 address with a port as [addr]:port)")
    return text, default_port


def _parse_port(text: str) -> int:
    if not text:
        raise _Problem("empty port")
    if not _PORT_DIGITS.fullmatch(text):
        raise _Problem(f"port {text!r} is not a number")
    if len(text.lstrip("0")) > len(str(_MAX_PORT)):
        raise _Problem("port must be 1..65535")
    return int(text)


def _check_port(port: object) -> None:
    if isinstance(port, bool) or not isinstance(port, int):
        raise _Problem(f"port must be an int, not {type(port).__name__}")
    if not 1 <= port <= _MAX_PORT:
        raise _Problem("port must be 1..65535")


def _normalize_host(host: object) -> str:
    if not isinstance(host, str):
        raise _Problem(f"host must be a str, not {type(host).__name__}")
    if not host:
        raise _Problem("empty host")
    if any(char.isspace() for char in host):
        raise _Problem("contains whitespace")
    if ":" in host:
        if "%" in host:
            raise _Problem("IPv6 zone ids are not supported")
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise _Problem(f"host {host!r} is not an IPv6 address") from None
        return _rfc5952(address)
    bad = [char for char in host if not _HOSTNAME_CHARS.fullmatch(char)]
    if bad:
        raise _Problem(f"host contains {bad[0]!r} (allowed: letters, digits, '-', '.', '_')")
    return host.lower()


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _rfc5952(address: ipaddress.IPv6Address) -> str:
    """The canonical text of ``address`` (RFC 5952), the same on every Python version."""
    groups = [int(group, 16) for group in address.exploded.split(":")]
    best_start, best_length = 0, 0
    start = 0
    while start < len(groups):
        end = start
        while end < len(groups) and groups[end] == 0:
            end += 1
        if end - start > best_length:
            best_start, best_length = start, end - start
        start = end + 1
    texts = [f"{group:x}" for group in groups]
    if best_length < 2:
        return ":".join(texts)
    head = ":".join(texts[:best_start])
    tail = ":".join(texts[best_start + best_length :])
    return f"{head}::{tail}"


def _encode_token(text: str) -> str:
    parts: list[str] = []
    for char in text:
        if char == ".":
            parts.append("_")
        elif _must_escape(char):
            encoded = char.encode("utf-8", errors="surrogatepass")
            parts.append("".join(f"~{byte:02x}" for byte in encoded))
        else:
            parts.append(char)
    return "".join(parts)


def _must_escape(char: str) -> bool:
    return char in _ESCAPED_CHARS or char.isspace() or not char.isascii() or not char.isprintable()


def _decode_token(token: str) -> str:
    if not token:
        raise _Problem("empty")
    raw = bytearray()
    index = 0
    while index < len(token):
        char = token[index]
        if char == "~":
            digits = token[index + 1 : index + 3]
            if not _HEX_PAIR.fullmatch(digits):
                raise _Problem(
                    f"'~' at offset {index} must be followed by two lowercase hex digits"
                )
            raw.append(int(digits, 16))
            index += 3
            continue
        if char == "_":
            raw.extend(b".")
        elif char == ".":
            raise _Problem("contains '.', which a subject token cannot hold")
        elif _must_escape(char):
            raise _Problem(f"contains {char!r} unescaped")
        else:
            raw.extend(char.encode("ascii"))
        index += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Problem("its escapes are not valid UTF-8") from None


@lru_cache(maxsize=65536)
def _parts(text: str, default_port: int) -> tuple[str, int]:
    """``parse`` without the object, memoized: keys are parsed again and again (every
    snapshot names itself, its master and its replicas) and there are only so many."""
    host, port = _split(text.strip(), default_port=default_port)
    _check_port(port)
    return _normalize_host(host), port


_normalize_host = lru_cache(maxsize=65536)(_normalize_host)


def _checked_parts(text: str, default_port: int) -> tuple[str, int]:
    try:
        return _parts(text, default_port)
    except _Problem as problem:
        raise InvalidInstanceKey(f"invalid instance key {text!r}: {problem}") from None


@lru_cache(maxsize=65536)
def _parsed(text: str, default_port: int) -> InstanceKey:
    """``InstanceKey.parse``, memoized: keys are immutable, so one object per text serves
    every caller (readers ask a snapshot for its key many times per request)."""
    return InstanceKey(*_checked_parts(text, default_port))
