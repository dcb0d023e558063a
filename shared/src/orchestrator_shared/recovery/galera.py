"""Galera and master recovery: a Galera node's async replicas are never promoted in its place.

Every node of a Galera cluster is writable and replicates to the others synchronously. When
one dies, the others go on taking writes: its cluster is not dead, only one of its writers is.
Promoting one of its async replicas would make a second, independent writer of the same data
(a split brain). So every way to a promotion (a dead master's recovery, forced or not, and a
graceful takeover) refuses when the master is a Galera node; what its async replicas need is a
new source inside the Galera cluster (relocation), not a new master.
"""

from __future__ import annotations

from orchestrator_shared.snapshot import InstanceSnapshot

__all__ = ["galera_refusal"]


def galera_refusal(master: InstanceSnapshot) -> str:
    """Why no replica of ``master`` may replace it (empty: ``master`` is no Galera node).

    The snapshot of a dead master is the last one seen alive (a failed probe keeps the facts),
    so its Galera state is known when it dies."""
    galera = master.galera
    if galera is None:
        return ""
    cluster = f"Galera cluster {galera.cluster_name}" if galera.cluster_name else "a Galera cluster"
    return (
        f"{master.instance_key} is a node of {cluster}: the other nodes stay writable, so its "
        "async replicas are to be relocated under another node of its Galera cluster, never "
        "promoted (a promoted replica would be a second writer: split brain); that relocation "
        "is not automated yet, repoint them by hand"
    )
