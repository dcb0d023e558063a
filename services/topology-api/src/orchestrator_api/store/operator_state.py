"""Downtime and promotion rules (candidates) as the store keeps them: part of the fleet view
(the analyses read them), so every change moves the store's generation on."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from orchestrator_api.store import rows
from orchestrator_api.store.driver import Driver, Transaction
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Candidate, Downtime


class OperatorStateStore:
    """The downtime and candidate methods of :class:`~orchestrator_api.store.sql.SqlStore`."""

    _driver: Driver

    if TYPE_CHECKING:  # provided by the store class that mixes this in

        def _writing(self) -> AbstractAsyncContextManager[Transaction]: ...
        async def _next_generation(self, tx: Transaction, *, forgets: bool = False) -> int: ...

    async def begin_downtime(self, downtime: Downtime) -> None:
        async with self._writing() as tx:
            await self._next_generation(tx)
            await tx.execute(
                f"INSERT INTO downtime ({rows.DOWNTIME_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (instance_key) DO UPDATE SET owner = excluded.owner, "
                "reason = excluded.reason, begins_at = excluded.begins_at, "
                "ends_at = excluded.ends_at",
                *rows.downtime_params(downtime),
            )

    async def end_downtime(self, key: InstanceKey) -> bool:
        """End the downtime of an instance; whether it had one (expired or not)."""
        async with self._writing() as tx:
            await self._next_generation(tx)
            count = await tx.execute("DELETE FROM downtime WHERE instance_key = ?", str(key))
        return count > 0

    async def downtimes(self, *, now: datetime) -> list[Downtime]:
        """Downtimes in force at ``now`` (expired ones are ignored), by key."""
        found = await self._driver.fetch(
            f"SELECT {rows.DOWNTIME_COLUMNS} FROM downtime WHERE ends_at > ? ORDER BY instance_key",
            rows.to_seconds(now),
        )
        return [rows.downtime_of(row) for row in found]

    async def register_candidate(self, candidate: Candidate) -> None:
        async with self._writing() as tx:
            await self._next_generation(tx)
            await tx.execute(
                f"INSERT INTO candidates ({rows.CANDIDATE_COLUMNS}) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (instance_key) DO UPDATE SET "
                "promotion_rule = excluded.promotion_rule, "
                "registered_at = excluded.registered_at, expires_at = excluded.expires_at",
                *rows.candidate_params(candidate),
            )

    async def candidates(self, *, now: datetime) -> list[Candidate]:
        """Promotion rules registered and not expired at ``now``, by key."""
        found = await self._driver.fetch(
            f"SELECT {rows.CANDIDATE_COLUMNS} FROM candidates WHERE expires_at > ? "
            "ORDER BY instance_key",
            rows.to_seconds(now),
        )
        return [rows.candidate_of(row) for row in found]
