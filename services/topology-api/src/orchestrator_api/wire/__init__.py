"""orchestrator-compatible JSON shapes, as pure functions of the domain model (no I/O).

The REST API answers with these so that ``orchestrator-client``, dashboards and scripts written
for orchestrator keep working: the same field names (legacy aliases and typos included), the same
JSON types (``sql.NullInt64`` as ``{"Int64", "Valid"}``, durations in nanoseconds, Go's
timestamp texts) and the same ``{"Code", "Message", "Details"}`` envelope.
"""

from __future__ import annotations

from orchestrator_api.wire.cluster import (
    cluster_info_json,
    cluster_name_alias_json,
    topology_envelope,
)
from orchestrator_api.wire.envelope import (
    Envelope,
    ResponseCode,
    envelope,
    error_envelope,
    ok_envelope,
)
from orchestrator_api.wire.instance import (
    DEFAULT_REASONABLE_REPLICATION_LAG_SECONDS,
    EXTRA_FIELDS,
    Candidate,
    CheckState,
    Downtime,
    Problem,
    PromotionRule,
    ancestors,
    check_state,
    effective_promotion_rule,
    instance_json,
    instance_problems,
)
from orchestrator_api.wire.values import (
    LogType,
    binlog_coordinates_json,
    go_quote_ascii,
    instance_key_json,
    instance_keys_json,
    null_int64,
)

__all__ = [
    "DEFAULT_REASONABLE_REPLICATION_LAG_SECONDS",
    "EXTRA_FIELDS",
    "Candidate",
    "CheckState",
    "Downtime",
    "Envelope",
    "LogType",
    "Problem",
    "PromotionRule",
    "ResponseCode",
    "ancestors",
    "binlog_coordinates_json",
    "check_state",
    "cluster_info_json",
    "cluster_name_alias_json",
    "effective_promotion_rule",
    "envelope",
    "error_envelope",
    "go_quote_ascii",
    "instance_json",
    "instance_key_json",
    "instance_keys_json",
    "instance_problems",
    "null_int64",
    "ok_envelope",
    "topology_envelope",
]
