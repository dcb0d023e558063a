"""What the store does after each batch it writes from the bus, looking at its new view:

* **Alias conflicts** (:class:`~orchestrator_api.store.aliases.AliasConflict`): each one is
  logged as a warning by every API process that sees it appear, and written to the audit log
  once (``cluster-alias-conflict``, under the cluster that holds the alias): a process that
  finds the same text as the holder's latest such entry does not write it again, so API
  replicas sharing a database, and restarts, do not repeat it.
* **Lost instances back at work**: a ``lost-in-recovery`` downtime whose instance is seen
  replicating again is ended for good (audited as ``end-downtime``), so that a later promotion
  of that instance does not find it downtimed again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from orchestrator_api.store import Store
from orchestrator_api.store.models import AuditEntry
from orchestrator_shared.errors import StoreError
from orchestrator_shared.instance_key import InstanceKey

log = logging.getLogger(__name__)

CONFLICT_AUDIT_TYPE = "cluster-alias-conflict"


class ViewUpkeep:
    def __init__(self, store: Store, *, user: str = "topology-api") -> None:
        self._store = store
        self._user = user
        self._known: frozenset[tuple[str, str, tuple[str, ...]]] = frozenset()

    async def check(self) -> None:
        """Act on the store's current view (see the module docstring)."""
        try:
            await self._end_back_at_work()
            await self._report_conflicts()
        except StoreError as exc:
            log.warning("store upkeep not done: %s", exc)

    async def _end_back_at_work(self) -> None:
        view = await self._store.view()
        for downtime in view.back_at_work:
            if await self._store.end_downtime(downtime.key):
                log.info("%s replicates again: its lost-in-recovery downtime ended", downtime.key)
                await self._audit(
                    "end-downtime",
                    "lost-in-recovery downtime ended: the instance replicates again",
                    key=downtime.key,
                )

    async def _report_conflicts(self) -> None:
        view = await self._store.view()
        current = {(c.alias, c.holder, c.others): c for c in view.alias_conflicts}
        for key, conflict in current.items():
            if key in self._known:
                continue
            text = conflict.describe()
            log.warning("%s", text)
            latest = await self._store.audit_log(
                cluster=conflict.holder, type=CONFLICT_AUDIT_TYPE, limit=1
            )
            if not latest or latest[0].message != text:
                await self._audit(CONFLICT_AUDIT_TYPE, text, cluster=conflict.holder)
        for alias, holder, _ in self._known - current.keys():
            log.info("cluster alias '%s' (held by %s) is no longer contested", alias, holder)
        self._known = frozenset(current)

    async def _audit(
        self, kind: str, message: str, *, cluster: str = "", key: InstanceKey | None = None
    ) -> None:
        await self._store.append_audit(
            [
                AuditEntry(
                    at=datetime.now(UTC),
                    type=kind,
                    message=message,
                    key=key,
                    cluster=cluster,
                    user=self._user,
                )
            ]
        )
