"""Which topology hosts the services may open a MySQL connection to (issue 12, docs/security.md).

Host names reach the services from places nobody vouches for: the unauthenticated ``discover``
subject, a replica's ``report_host``, ``SHOW SLAVE HOSTS``, the processlist, a ``Master_Host``
anyone with ``CHANGE MASTER`` rights can set, the instances a command names. Connecting to such
a host hands it the topology user name and a password scramble it can attack offline, and turns
the services into a port scanner of whatever they can reach. So every entry point asks one
:class:`HostPolicy` before it connects:

* ``DiscoveryAllowedHostnameFilters`` (new): when not empty, a host is contacted only when one
  entry allows it. An entry is either an IP address or CIDR network (``10.0.0.0/8``,
  ``192.0.2.7``), which allows a host *written as* an IP address inside it (names are never
  resolved here: what a name resolves to at connect time is the DNS operator's word), or a
  regular expression (RE2, :mod:`orchestrator_shared.patterns`) searched in the host name, as
  orchestrator's other ``*HostnameFilters``; anchor it (``\\.db\\.example\\.com$``), or it also
  allows names that merely contain it. Empty (the default): no restriction, as orchestrator.
* ``DiscoveryIgnoreHostnameFilters`` (orchestrator's): discovery neither crawls nor discovers a
  host one of them matches. It is a discovery setting only: a policy built with
  ``discovery=False`` (recovery's connections) leaves it out, as orchestrator does.

The port plays no part: the filters are on hosts, as orchestrator's are.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import TYPE_CHECKING

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.patterns import Pattern, compile_pattern

if TYPE_CHECKING:
    from orchestrator_shared.config import Settings

__all__ = ["ALLOW_SETTING", "IGNORE_SETTING", "HostPolicy", "parse_allowed_entry"]

ALLOW_SETTING = "DiscoveryAllowedHostnameFilters"
IGNORE_SETTING = "DiscoveryIgnoreHostnameFilters"

Network = IPv4Network | IPv6Network
Entry = Network | Pattern


def parse_allowed_entry(entry: str) -> Entry:
    """One allow-list entry: an IP network when it reads as an address or CIDR, else a
    pattern. ``ValueError`` (:class:`~orchestrator_shared.patterns.InvalidPattern` for a bad
    pattern) for an empty entry or one that is neither."""
    text = entry.strip()
    if not text:
        raise ValueError("an empty entry would allow every host; remove it")
    try:
        return ip_network(text, strict=False)
    except ValueError:
        pass
    return compile_pattern(text)


def unanchored_entries(entries: Iterable[str]) -> list[str]:
    """The pattern entries without a ``$`` (or ``\\z``) anchor: each allows any host name
    containing it too (``db1`` allows ``db1.attacker.example``). For a start-up warning."""
    found = []
    for entry in entries:
        parsed = parse_allowed_entry(entry)
        if isinstance(parsed, Pattern) and not parsed.text.endswith(("$", "\\z")):
            found.append(entry)
    return found


def _as_address(host: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(host)
    except ValueError:
        return None


class HostPolicy:
    """May the services contact a host? Built once from the settings; pure and cheap to ask
    (a few RE2 searches), so it is asked right before every connect."""

    __slots__ = ("_allowed", "_ignored", "allowed", "ignored")

    def __init__(self, allowed: Iterable[str] = (), ignored: Iterable[str] = ()) -> None:
        """``allowed``: ``DiscoveryAllowedHostnameFilters`` entries (empty: every host);
        ``ignored``: ``DiscoveryIgnoreHostnameFilters`` patterns. ValueError for a bad entry
        (the settings are validated at start-up, so services never see one)."""
        self.allowed = tuple(allowed)
        self.ignored = tuple(ignored)
        self._allowed = tuple(parse_allowed_entry(entry) for entry in self.allowed)
        self._ignored = tuple(compile_pattern(pattern) for pattern in self.ignored)

    @classmethod
    def from_settings(cls, settings: Settings, *, discovery: bool = False) -> HostPolicy:
        """The allow-list; with ``discovery``, ``DiscoveryIgnoreHostnameFilters`` too."""
        ignored = settings.DiscoveryIgnoreHostnameFilters if discovery else ()
        return cls(settings.DiscoveryAllowedHostnameFilters, ignored)

    @property
    def restricted(self) -> bool:
        """Whether an allow-list is set at all."""
        return bool(self._allowed)

    def is_allowed(self, host: str) -> bool:
        """Whether the allow-list lets ``host`` be contacted (always, without a list)."""
        if not self._allowed:
            return True
        address = _as_address(host)
        for entry in self._allowed:
            if isinstance(entry, Pattern):
                if entry.search(host):
                    return True
            elif address is not None and address.version == entry.version and address in entry:
                return True
        return False

    def ignoring(self, host: str) -> str | None:
        """The ``DiscoveryIgnoreHostnameFilters`` pattern that matches ``host``, if any."""
        return next((p.text for p in self._ignored if p.search(host)), None)

    def refusal(self, key: InstanceKey) -> str:
        """Why ``key`` may not be contacted, one line; "" when it may."""
        pattern = self.ignoring(key.host)
        if pattern is not None:
            return f"matches {IGNORE_SETTING} ({pattern!r}); not discovered"
        if not self.is_allowed(key.host):
            return f"host {key.host} is not allowed by {ALLOW_SETTING}; not contacted"
        return ""

    def __repr__(self) -> str:
        return f"HostPolicy(allowed={self.allowed!r}, ignored={self.ignored!r})"
