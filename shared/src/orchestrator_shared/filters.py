"""orchestrator's recovery cluster filters (``RecoverMasterClusterFilters``,
``RecoverIntermediateMasterClusterFilters``), matched as its ``filtersMatchCluster`` does.

A cluster matches when any filter is

* ``*``;
* exactly the cluster name or the cluster alias;
* ``alias=NAME``: exactly the alias;
* ``alias~=REGEX``: a regular expression found in the alias;
* otherwise a regular expression found anywhere in the cluster name (unanchored, as Go's
  ``regexp.MatchString``).

An empty filter never matches and neither does an invalid regular expression, so an empty list
means "no automated recovery" (orchestrator's default: recovery is opt-in).

``matching_hostname_filter`` is orchestrator's test of ``RecoveryIgnoreHostnameFilters`` and
``PromotionIgnoreHostnameFilters``: a regular expression searched in the host name (not the
port), unanchored.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator_shared.patterns import InvalidPattern, search

__all__ = ["cluster_matches_filters", "matching_hostname_filter"]


def cluster_matches_filters(filters: Iterable[str], *, cluster: str, alias: str = "") -> bool:
    """Whether ``cluster`` (with ``alias``) is selected by any of ``filters``."""
    return any(_matches(pattern, cluster=cluster, alias=alias) for pattern in filters)


def _matches(pattern: str, *, cluster: str, alias: str) -> bool:
    if not pattern:
        return False
    if pattern in ("*", cluster) or (alias and pattern == alias):
        return True
    if pattern.startswith("alias="):
        return bool(alias) and pattern.removeprefix("alias=") == alias
    if pattern.startswith("alias~="):
        return _search(pattern.removeprefix("alias~="), alias)
    return _search(pattern, cluster)


def _search(pattern: str, text: str) -> bool:
    try:
        return search(pattern, text)
    except InvalidPattern:
        return False


def matching_hostname_filter(filters: Iterable[str], host: str) -> str | None:
    """The first of ``filters`` (regular expressions) found in ``host``, or None. Empty and
    invalid expressions match nothing (the settings are validated at start-up)."""
    return next((pattern for pattern in filters if pattern and _search(pattern, host)), None)
