"""Failure analysis: snapshots in, one verdict per instance out (pure; the clock is a parameter).

::

    analyze(snapshots, now=..., downtimed=..., options=AnalysisOptions(...)) -> [Analysis]

``codes``     the analysis codes and structure warnings (orchestrator's strings)
``model``     ``AnalysisOptions`` (thresholds) and ``Analysis`` (the verdict, its evidence, JSON)
``facts``     validity of a check, a replica seen through its channel, the aggregate counts
``detect``    orchestrator's first-match chain of codes
``structure`` structure warnings
``errant``    errant GTIDs for MySQL (GTID sets) and MariaDB (per-domain positions)
``analyze``   the whole pass over a set of snapshots

See ``docs/analysis.md`` for what each code means and the evidence it needs.
"""

from orchestrator_shared.analysis.analyze import (
    analyze,
    track_binlog_coordinates,
    track_galera_desync,
)
from orchestrator_shared.analysis.codes import (
    ACTIONABLE_CODES,
    REPLICA_SIDE_CODES,
    AnalysisCode,
    StructureWarning,
)
from orchestrator_shared.analysis.errant import ErrantGtids, find_errant
from orchestrator_shared.analysis.facts import Validity, check_validity
from orchestrator_shared.analysis.model import Analysis, AnalysisOptions, CoordinatesSeen

__all__ = [
    "ACTIONABLE_CODES",
    "REPLICA_SIDE_CODES",
    "Analysis",
    "AnalysisCode",
    "AnalysisOptions",
    "CoordinatesSeen",
    "ErrantGtids",
    "StructureWarning",
    "Validity",
    "analyze",
    "check_validity",
    "find_errant",
    "track_binlog_coordinates",
    "track_galera_desync",
]
