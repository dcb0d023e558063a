"""Recovery planning: facts in, decision out (pure; no I/O, no clock).

::

    plan_master_recovery(failed, replicas, cluster=..., options=...) -> MasterPlan | Refusal
    plan_intermediate_master_recovery(failed, replicas, siblings=..., master=..., ...)
        -> RelocationPlan | Refusal
    plan_semi_sync_replicas(master, replicas, cluster=..., mode=..., options=...)
        -> SemiSyncPlan | Refusal

``model``         ``PlanOptions``, ``MasterPlan``, ``RelocationPlan``, ``Refusal`` (JSON, one-line
                  descriptions)
``filters``       orchestrator's recovery cluster filters
``positions``     what a server has (GTID positions and sets) and how two compare
``facts``         one replica as the rules see it
``candidates``    the successor of a dead master
``intermediate``  new masters for the replicas of a dead intermediate master
``semi_sync``     which replicas of a semi-sync master turn semi-sync on or off

Every replica not chosen has its reason in ``rejected``; ``docs/recovery-planning.md`` lists
the rules and the reason texts.
"""

from orchestrator_shared.filters import (
    cluster_matches_filters,
    matching_hostname_filter,
)
from orchestrator_shared.recovery.candidates import plan_master_recovery
from orchestrator_shared.recovery.intermediate import plan_intermediate_master_recovery
from orchestrator_shared.recovery.model import (
    GtidKind,
    MasterPlan,
    PlanOptions,
    Refusal,
    RefusalCode,
    RelocationPlan,
)
from orchestrator_shared.recovery.semi_sync import (
    SemiSyncMode,
    SemiSyncPlan,
    plan_semi_sync_replicas,
)

__all__ = [
    "GtidKind",
    "MasterPlan",
    "PlanOptions",
    "Refusal",
    "RefusalCode",
    "RelocationPlan",
    "SemiSyncMode",
    "SemiSyncPlan",
    "cluster_matches_filters",
    "matching_hostname_filter",
    "plan_intermediate_master_recovery",
    "plan_master_recovery",
    "plan_semi_sync_replicas",
]
