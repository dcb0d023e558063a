"""orchestrator's heuristic choice of control replicas for an online schema change
(``cluster-osc-replicas``, ``which-cluster-osc-replicas``; pure, no I/O).

pt-online-schema-change and gh-ost watch a few "representative" replicas to throttle on their
lag. orchestrator's ``GetClusterOSCReplicas`` picks, in this order:

1. up to two intermediate masters: first-tier replicas (depth 1) with replicas of their own,
   those with the most replicas first;
2. below them: two replicas of the one intermediate master (most replicas first), or one
   replica of each of the two;
3. up to two third-tier replicas (depth 3), most replicas first;
4. up to two first-tier replicas without replicas.

At every step an instance is left out when its last check failed or when it matches
``OSCIgnoreHostnameFilters``. Ties keep the key order (host, then port), as orchestrator's
database order does. (orchestrator also leaves out binlog servers, MaxScale: discovery does not
recognize those, so none are.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.patterns import search
from orchestrator_shared.topology import Cluster, TopologyInstance

IsValid = Callable[[TopologyInstance], bool]


def hostname_filters_match(key: InstanceKey, filters: Iterable[str]) -> bool:
    """orchestrator's ``FiltersMatchInstanceKey``: a filter that is an IP address matches that
    host exactly; any other is a regular expression searched in ``host:port``."""
    for pattern in filters:
        try:
            ipaddress.ip_address(pattern)
        except ValueError:
            if search(pattern, str(key)):  # validated at start-up
                return True
        else:
            if pattern == key.host:
                return True
    return False


def osc_replicas(
    cluster: Cluster, *, is_valid: IsValid, ignore: Sequence[str] = ()
) -> list[TopologyInstance]:
    """The control replicas orchestrator suggests for ``cluster`` (module docstring)."""
    members = [cluster.instances[key] for key in sorted(cluster.instances)]

    def usable(nodes: Iterable[TopologyInstance]) -> list[TopologyInstance]:
        return [n for n in nodes if is_valid(n) and not hostname_filters_match(n.key, ignore)]

    def busiest_first(nodes: Iterable[TopologyInstance]) -> list[TopologyInstance]:
        return sorted(nodes, key=lambda n: -len(n.replicas))  # stable: key order on ties

    def replicas_of(node: TopologyInstance) -> list[TopologyInstance]:
        below = [cluster.instances[k] for k in sorted(node.replicas) if k in cluster.instances]
        return usable(busiest_first(below))

    intermediate = usable(busiest_first(n for n in members if n.depth == 1 and n.replicas))[:2]
    chosen = list(intermediate)
    if len(intermediate) == 1:
        chosen += replicas_of(intermediate[0])[:2]
    elif len(intermediate) == 2:
        for master in intermediate:
            chosen += replicas_of(master)[:1]
    chosen += usable(busiest_first(n for n in members if n.depth == 3))[:2]
    chosen += usable(n for n in members if n.depth == 1 and not n.replicas)[:2]
    return chosen


__all__ = ["hostname_filters_match", "osc_replicas"]
