"""Master changes and recovery steps in the store: the succession of each renamed cluster (see
:mod:`.aliases`) and orchestrator's per-step recovery audit (``/api/audit-recovery-steps``)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from orchestrator_api.store import rows
from orchestrator_api.store.aliases import Succession
from orchestrator_api.store.driver import Driver, Row, Transaction
from orchestrator_shared.errors import InvalidInstanceKey
from orchestrator_shared.instance_key import InstanceKey

SUCCESSION_COLUMNS = (
    "cluster_name, successor_key, cluster_alias, recovery_uid, command, succeeded_at"
)


@dataclass(frozen=True, slots=True)
class RecoveryStep:
    """One step of a recovery (orchestrator's ``TopologyRecoveryStep``)."""

    recovery_uid: str
    at: datetime
    message: str
    id: int = 0


def succession_of(row: Row) -> Succession | None:
    """A stored succession; None for a row whose successor key cannot be read."""
    try:
        successor = InstanceKey.parse(str(row[1]))
    except InvalidInstanceKey:
        return None
    return Succession(
        cluster=str(row[0]),
        successor=successor,
        alias=str(row[2]),
        recovery_uid=str(row[3]),
        command=str(row[4]),
        at=rows.from_seconds(row[5]),
    )


async def load_successions(driver: Driver) -> list[Succession]:
    found = await driver.fetch(f"SELECT {SUCCESSION_COLUMNS} FROM cluster_successions")
    return [s for row in found if (s := succession_of(row)) is not None]


class LineageStore:
    """The succession and recovery-step methods of
    :class:`~orchestrator_api.store.sql.SqlStore`."""

    _driver: Driver

    if TYPE_CHECKING:  # provided by the store class that mixes this in

        def _writing(self) -> AbstractAsyncContextManager[Transaction]: ...
        async def _next_generation(self, tx: Transaction, *, forgets: bool = False) -> int: ...

    async def record_succession(self, succession: Succession) -> None:
        """Record that a cluster passed to a successor (replacing an older record of the same
        old name; a record older than the stored one is ignored, so a redelivered event never
        undoes a later master change): one conditional upsert, as instances are written."""
        async with self._writing() as tx:
            await self._next_generation(tx)
            await tx.execute(
                f"INSERT INTO cluster_successions ({SUCCESSION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (cluster_name) DO UPDATE SET "
                "successor_key = excluded.successor_key, "
                "cluster_alias = excluded.cluster_alias, recovery_uid = excluded.recovery_uid, "
                "command = excluded.command, succeeded_at = excluded.succeeded_at "
                "WHERE excluded.succeeded_at >= cluster_successions.succeeded_at",
                succession.cluster,
                str(succession.successor),
                succession.alias,
                succession.recovery_uid,
                succession.command,
                rows.to_seconds(succession.at),
            )

    async def successions(self) -> list[Succession]:
        """Every recorded succession, by old cluster name."""
        return sorted(await load_successions(self._driver), key=lambda s: s.cluster)

    async def record_recovery_step(self, step: RecoveryStep) -> None:
        async with self._writing() as tx:
            await tx.execute(
                "INSERT INTO recovery_steps (recovery_uid, at, message) VALUES (?, ?, ?)",
                step.recovery_uid,
                rows.to_seconds(step.at),
                step.message,
            )

    async def recovery_steps(self, recovery_uid: str) -> list[RecoveryStep]:
        """The steps of one recovery, in the order they were recorded."""
        found = await self._driver.fetch(
            "SELECT id, recovery_uid, at, message FROM recovery_steps WHERE recovery_uid = ? "
            "ORDER BY id",
            recovery_uid,
        )
        return [
            RecoveryStep(
                id=int(row[0]),
                recovery_uid=str(row[1]),
                at=rows.from_seconds(row[2]),
                message=str(row[3]),
            )
            for row in found
        ]


__all__ = ["LineageStore", "RecoveryStep", "load_successions", "succession_of"]
