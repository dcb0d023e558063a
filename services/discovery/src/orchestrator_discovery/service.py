"""The discovery loop: probe every known instance each poll, crawl, watch masters, publish.

* **Scheduling.** Every known instance has a due time. The scheduler starts a probe for each due
  instance, at most ``DiscoveryMaxConcurrency`` at once; a probe's next due time is its start plus
  ``InstancePollSeconds`` (or now, if it overran). One instance is never probed twice at once.
* **Crawling.** After a successful probe, the instance's master and replicas that are not known
  yet (and not ignored by the hostname filters, nor recently forgotten) are probed at once, so
  one seed finds the whole tree within a few round trips.
* **Allowed hosts.** A seed, a crawled neighbour or a ``discover`` request naming a host that
  ``DiscoveryAllowedHostnameFilters`` refuses is never scheduled, so never connected to
  (:class:`~orchestrator_shared.host_policy.HostPolicy`); the refusal is logged once per host
  (a foreign ``report_host`` comes back with every crawl of its master) and counted.
* **Master liveness.** Every instance with replicas is also pinged on a persistent connection each
  ``MasterLivenessCheckIntervalSeconds``. The first failed ping publishes
  ``orchestrator.v1.unreachable.<key>`` at once and makes the master and all its replicas due
  now, so the evidence a failover needs is fresh within about a second, not a poll later.
* **Requests.** ``discover`` / ``refresh`` probe at once and answer with the snapshot or the error;
  ``forget`` stops probing, purges the instance's snapshot from the stream and keeps it from being
  crawled again for three polls (as orchestrator does).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from orchestrator_discovery.metrics import DiscoveryMetrics
from orchestrator_shared.bus import (
    DiscoveryFailure,
    DiscoveryReply,
    DiscoveryVerb,
    UnreachableEvent,
)
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import BusError, InvalidInstanceKey, ProbeError, ProbeTimeout
from orchestrator_shared.host_policy import HostPolicy
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.patterns import search
from orchestrator_shared.snapshot import InstanceSnapshot, utcnow

log = logging.getLogger(__name__)

# at most this many refused hosts are remembered as logged (then refusals go on unlogged, only
# counted): crawled host names come from the servers, so they are not to fill the memory
_LOG_ONCE = 10_000


class HostRefused(ProbeError):
    """The host filters say not to contact the instance (nothing was sent to it)."""


class SnapshotBus(Protocol):
    async def publish_snapshot(self, snapshot: InstanceSnapshot) -> None: ...
    async def publish_unreachable(self, event: UnreachableEvent) -> None: ...
    async def purge_snapshot(self, key: InstanceKey) -> None: ...


class InstanceProber(Protocol):
    async def probe(
        self, key: InstanceKey, previous: InstanceSnapshot | None = None
    ) -> InstanceSnapshot: ...

    def discard(self, key: InstanceKey) -> None: ...
    def close(self) -> None: ...


class Liveness(Protocol):
    async def check(self) -> None: ...
    async def lost(self, *, retry: float) -> str: ...
    async def confirm(self) -> ProbeError | None: ...
    def close(self) -> None: ...


LivenessFactory = Callable[[InstanceKey], Liveness]


@dataclass
class _Tracked:
    key: InstanceKey
    snapshot: InstanceSnapshot | None = None
    due: float = 0.0
    probing: asyncio.Future[InstanceSnapshot] | None = None
    watcher: asyncio.Task[None] | None = None
    unreachable_reported: bool = False


@dataclass(frozen=True, slots=True)
class DiscoveryOptions:
    poll_seconds: float
    max_concurrency: int
    liveness_interval: float
    seeds: tuple[InstanceKey, ...] = ()
    ignore_hosts: tuple[str, ...] = ()
    ignore_replica_hosts: tuple[str, ...] = ()
    ignore_master_hosts: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    reporter: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, *, reporter: str = "") -> DiscoveryOptions:
        return cls(
            poll_seconds=settings.InstancePollSeconds,
            max_concurrency=settings.DiscoveryMaxConcurrency,
            liveness_interval=settings.MasterLivenessCheckIntervalSeconds,
            seeds=settings.seed_keys,
            ignore_hosts=settings.DiscoveryIgnoreHostnameFilters,
            ignore_replica_hosts=settings.DiscoveryIgnoreReplicaHostnameFilters,
            ignore_master_hosts=settings.DiscoveryIgnoreMasterHostnameFilters,
            allowed_hosts=settings.DiscoveryAllowedHostnameFilters,
            reporter=reporter,
        )


def _matches(patterns: tuple[str, ...], host: str) -> bool:
    return any(search(pattern, host) for pattern in patterns)  # validated at start-up


def _galera_members(snapshot: InstanceSnapshot) -> tuple[str, ...]:
    return snapshot.galera.member_keys if snapshot.galera is not None else ()


def _same_neighbours(before: InstanceSnapshot | None, after: InstanceSnapshot) -> bool:
    """Whether a probe found the same replicas, masters and Galera peers as the previous
    successful one."""
    if before is None or not before.probe.ok:
        return False
    return (
        before.replica_keys == after.replica_keys
        and [c.master_key for c in before.channels] == [c.master_key for c in after.channels]
        and _galera_members(before) == _galera_members(after)
    )


@dataclass
class DiscoveryService:
    options: DiscoveryOptions
    prober: InstanceProber
    bus: SnapshotBus
    liveness: LivenessFactory
    metrics: DiscoveryMetrics = field(default_factory=DiscoveryMetrics)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._tracked: dict[InstanceKey, _Tracked] = {}
        self._forgotten: dict[InstanceKey, float] = {}
        self._heap: list[tuple[float, int, InstanceKey]] = []
        self._sequence = 0
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.options.max_concurrency)
        self._tasks: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._hosts = HostPolicy(self.options.allowed_hosts, self.options.ignore_hosts)
        self._refusals_logged: set[str] = set()

    # --- queries ---------------------------------------------------------------------------
    @property
    def known(self) -> dict[InstanceKey, InstanceSnapshot | None]:
        return {key: tracked.snapshot for key, tracked in self._tracked.items()}

    def snapshot(self, key: InstanceKey) -> InstanceSnapshot | None:
        tracked = self._tracked.get(key)
        return tracked.snapshot if tracked else None

    # --- scheduling ------------------------------------------------------------------------
    def _schedule(self, tracked: _Tracked, due: float) -> None:
        tracked.due = due
        self._sequence += 1
        heapq.heappush(self._heap, (due, self._sequence, tracked.key))
        self._wake.set()

    def is_ignored(self, key: InstanceKey) -> bool:
        return self._hosts.ignoring(key.host) is not None

    def refusal(self, key: InstanceKey) -> str:
        """Why ``key`` is not to be contacted ("" when it may be); an allow-list refusal is
        logged the first time a host is refused and counted every time."""
        refusal = self._hosts.refusal(key)
        if refusal and not self.is_ignored(key):
            self.metrics.hosts_refused.inc()
            if key.host not in self._refusals_logged and len(self._refusals_logged) < _LOG_ONCE:
                self._refusals_logged.add(key.host)
                log.warning("not contacting %s: %s", key, refusal)
        return refusal

    def track(self, key: InstanceKey, *, due_now: bool = True) -> bool:
        """Start probing ``key`` (if new, not ignored and allowed). True when it was added."""
        if key in self._tracked or self.refusal(key):
            return False
        tracked = _Tracked(key=key)
        self._tracked[key] = tracked
        self.metrics.instances_known.set(len(self._tracked))
        self._schedule(
            tracked, self.clock() if due_now else self.clock() + self.options.poll_seconds
        )
        return True

    def make_due(self, key: InstanceKey) -> None:
        tracked = self._tracked.get(key)
        if tracked is not None and tracked.probing is None:
            self._schedule(tracked, self.clock())

    async def run(self) -> None:
        """The scheduler; runs until cancelled."""
        for seed in self.options.seeds:
            self.track(seed)
        try:
            while True:
                await self._dispatch_due()
        finally:
            self._stopping = True
            for task in list(self._tasks):
                task.cancel()
            for tracked in self._tracked.values():
                if tracked.watcher is not None:
                    tracked.watcher.cancel()
            pending = list(self._tasks) + [
                t.watcher for t in self._tracked.values() if t.watcher is not None
            ]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            self.prober.close()

    async def _dispatch_due(self) -> None:
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            tracked = self._tracked.get(key)
            if tracked is None or tracked.due != due or tracked.probing is not None:
                continue  # forgotten, rescheduled since, or being probed right now
            await self._slots.acquire()
            self._start_probe(tracked, release_slot=True)
        self._wake.clear()
        timeout = self._heap[0][0] - self.clock() if self._heap else None
        if timeout is None or timeout > 0:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set, and the scheduler would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _start_probe(
        self, tracked: _Tracked, *, release_slot: bool
    ) -> asyncio.Future[InstanceSnapshot]:
        future: asyncio.Future[InstanceSnapshot] = asyncio.get_running_loop().create_future()
        tracked.probing = future
        task = asyncio.create_task(self._probe(tracked, future, release_slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _probe(
        self, tracked: _Tracked, future: asyncio.Future[InstanceSnapshot], release_slot: bool
    ) -> None:
        first_probe = tracked.snapshot is None
        try:
            snapshot = await self.prober.probe(tracked.key, tracked.snapshot)
            if self._tracked.get(tracked.key) is tracked:  # not forgotten meanwhile
                await self._absorb(tracked, snapshot)
            future.set_result(snapshot)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: whoever awaits it sees it; nobody must
            raise
        finally:
            tracked.probing = None
            if release_slot:
                self._slots.release()
            if self._tracked.get(tracked.key) is tracked and not self._stopping:
                self._schedule(tracked, self._next_due(tracked, first_probe=first_probe))

    def _next_due(self, tracked: _Tracked, *, first_probe: bool) -> float:
        """One poll after the probe was due, so queueing delays do not add up; an instance's
        second probe lands at a random point of its first poll, so instances crawled together
        do not stay in lockstep (bursts of probes, then idle time)."""
        now, poll = self.clock(), self.options.poll_seconds
        if first_probe:
            return now + random.uniform(0.5, 1.0) * poll
        return max(tracked.due + poll, now)

    async def _absorb(self, tracked: _Tracked, snapshot: InstanceSnapshot) -> None:
        """Record a probe's result: metrics, publish, crawl, liveness watch."""
        probe = snapshot.probe
        self.metrics.probe_latency.observe(probe.latency_seconds)
        if probe.ok:
            self.metrics.probes.labels("ok").inc()
        else:
            self.metrics.probes.labels("partial" if probe.partial else "failed").inc()
            reason = "timeout" if probe.timed_out else "error"
            self.metrics.probe_failures.labels(reason).inc()
            if tracked.snapshot is None or tracked.snapshot.probe.ok:
                log.warning("probe of %s failed: %s", tracked.key, probe.error)
        previous, tracked.snapshot = tracked.snapshot, snapshot
        await self._publish(snapshot)
        if probe.ok:
            if self._forgotten or not _same_neighbours(previous, snapshot):
                self._crawl(snapshot)
            self._update_watch(tracked)
        elif snapshot.replica_keys and not tracked.unreachable_reported:
            await self._report_unreachable(tracked, probe.error, lost_at=probe.attempted_at)

    def _crawl(self, snapshot: InstanceSnapshot) -> None:
        if self._forgotten:
            now = self.clock()
            self._forgotten = {k: until for k, until in self._forgotten.items() if until > now}
        neighbours: list[InstanceKey] = []
        for key_text in snapshot.replica_keys:
            key = InstanceKey.parse(key_text)
            if not _matches(self.options.ignore_replica_hosts, key.host):
                neighbours.append(key)
        for channel in snapshot.channels:
            master = channel.linked_master  # None: detached (//host), not a link to follow
            if master is not None and not _matches(self.options.ignore_master_hosts, master.host):
                neighbours.append(master)
        # Galera peers are neither masters nor replicas: only the allow/ignore lists apply.
        neighbours.extend(InstanceKey.parse(key) for key in _galera_members(snapshot))
        for key in neighbours:
            if key not in self._forgotten and self.track(key):
                log.info("discovered %s (via %s)", key, snapshot.key)

    async def _publish(self, snapshot: InstanceSnapshot) -> None:
        try:
            await self.bus.publish_snapshot(snapshot)
        except BusError as exc:
            self.metrics.publish_failures.inc()
            log.debug("%s", exc)

    async def republish_all(self) -> None:
        """Publish every latest snapshot again (after NATS came back)."""
        for tracked in list(self._tracked.values()):
            if tracked.snapshot is not None:
                await self._publish(tracked.snapshot)

    # --- master liveness -------------------------------------------------------------------
    def _update_watch(self, tracked: _Tracked) -> None:
        snapshot = tracked.snapshot
        should_watch = snapshot is not None and bool(snapshot.replica_keys)
        tracked.unreachable_reported = False
        if should_watch and tracked.watcher is None and not self._stopping:
            tracked.watcher = asyncio.create_task(self._watch(tracked))
            self.metrics.masters_watched.inc()
        elif not should_watch:
            self._stop_watch(tracked)

    def _stop_watch(self, tracked: _Tracked) -> None:
        if tracked.watcher is not None:
            tracked.watcher.cancel()
            tracked.watcher = None
            self.metrics.masters_watched.dec()

    async def _watch(self, tracked: _Tracked) -> None:
        link = self.liveness(tracked.key)
        waiting = asyncio.create_task(self._wait_for_death(tracked, link))
        try:
            while True:
                sent_at = utcnow()
                try:
                    await link.check()
                except ProbeError as exc:
                    if not tracked.unreachable_reported:
                        await self._report_unreachable(tracked, exc.message, lost_at=sent_at)
                await asyncio.sleep(self.options.liveness_interval)
        finally:
            waiting.cancel()
            link.close()

    async def _wait_for_death(self, tracked: _Tracked, link: Liveness) -> None:
        """The event-driven half of the watch: the waiting connection broke, so the master
        may have died this instant; a new connection confirms at once (refused within
        milliseconds when the process is gone) before ``unreachable`` is published. A break
        the master survives (a DBA's KILL, a proxy) is only logged; the recovery still
        confirms every ``unreachable`` through the replicas before any failover."""
        while True:
            lost = await link.lost(retry=self.options.liveness_interval)
            lost_at = utcnow()
            started = time.monotonic()
            failure = await link.confirm()
            self.metrics.liveness_confirm_seconds.observe(time.monotonic() - started)
            if failure is None:
                self.metrics.liveness_breaks_survived.inc()
                log.info(
                    "%s: liveness connection broken (%s); it answers a new one", tracked.key, lost
                )
            elif not tracked.unreachable_reported:
                await self._report_unreachable(
                    tracked, f"{failure.message} (after: {lost})", lost_at=lost_at
                )

    async def _report_unreachable(
        self, tracked: _Tracked, error: str, *, lost_at: datetime | None = None
    ) -> None:
        """``lost_at``: when the liveness link saw the master go (the event's ``lost_at``)."""
        tracked.unreachable_reported = True
        snapshot = tracked.snapshot
        replicas = snapshot.replica_keys if snapshot is not None else ()
        event = UnreachableEvent(
            key=str(tracked.key),
            detected_at=utcnow(),
            last_seen_at=snapshot.probe.last_seen_at if snapshot is not None else None,
            error=error,
            replica_keys=replicas,
            reporter=self.options.reporter,
            lost_at=lost_at,
        )
        log.warning("master %s unreachable: %s", tracked.key, error)
        try:
            await self.bus.publish_unreachable(event)
            self.metrics.unreachable_events.inc()
        except BusError as exc:
            self.metrics.publish_failures.inc()
            log.warning("%s", exc)
        self.make_due(tracked.key)
        for replica in replicas:
            self.make_due(InstanceKey.parse(replica))

    # --- requests --------------------------------------------------------------------------
    async def probe_now(self, key: InstanceKey) -> InstanceSnapshot:
        """Probe ``key`` at once (joining a probe already running) and return the snapshot."""
        tracked = self._tracked.get(key)
        if tracked is None:
            raise KeyError(key)
        if tracked.probing is not None:
            return await asyncio.shield(tracked.probing)
        return await self._start_probe(tracked, release_slot=False)

    async def discover(self, key: InstanceKey) -> InstanceSnapshot:
        """Probe a (possibly new) instance now. Raises ProbeError if it does not answer."""
        refusal = self.refusal(key)
        if refusal:
            raise HostRefused(str(key), refusal)
        self._forgotten.pop(key, None)
        added = self.track(key, due_now=False)
        snapshot = await self.probe_now(key)
        if not snapshot.probe.ok:
            if added:
                self._untrack(key)
            error = ProbeTimeout if snapshot.probe.timed_out else ProbeError
            raise error(str(key), snapshot.probe.error, errno=snapshot.probe.errno)
        return snapshot

    def _untrack(self, key: InstanceKey) -> _Tracked | None:
        tracked = self._tracked.pop(key, None)
        if tracked is not None:
            self._stop_watch(tracked)
        self.prober.discard(key)
        self.metrics.instances_known.set(len(self._tracked))
        return tracked

    async def forget(self, key: InstanceKey) -> bool:
        """Stop probing ``key`` and remove its snapshot from the stream. True if it was known."""
        tracked = self._untrack(key)
        self._forgotten[key] = self.clock() + 3 * self.options.poll_seconds
        await self.bus.purge_snapshot(key)
        return tracked is not None

    async def handle_request(self, verb: str, body: bytes) -> bytes:
        """Answer one ``orchestrator.v1.discovery.<verb>`` request (never raises)."""
        if verb not in {v.value for v in DiscoveryVerb}:
            self.metrics.requests_refused.labels("bad-request").inc()
            return _reply(
                verb="discover",
                ok=False,
                error=f"unknown verb {verb!r}",
                kind=DiscoveryFailure.BAD_REQUEST,
            )
        key_text = _key_from_body(body)
        try:
            key = InstanceKey.parse(key_text)
        except InvalidInstanceKey as exc:
            self.metrics.requests_refused.labels("bad-request").inc()
            return _reply(
                verb=verb, ok=False, key=key_text, error=str(exc), kind=DiscoveryFailure.BAD_REQUEST
            )
        try:
            if verb == DiscoveryVerb.FORGET:
                known = await self.forget(key)
                note = "" if known else f"{key} was not known"
                return _reply(verb=verb, ok=True, key=str(key), error=note)
            snapshot = await self.discover(key)
        except HostRefused as exc:
            self.metrics.requests_refused.labels("host-refused").inc()
            failure, error = DiscoveryFailure.HOST_REFUSED, f"refused: {exc}"
        except ProbeError as exc:
            failure, error = DiscoveryFailure.UNREACHABLE, f"cannot probe {exc}"
        except BusError as exc:
            failure, error = DiscoveryFailure.UNAVAILABLE, str(exc)
        else:
            payload = json.loads(snapshot.to_json())
            return _reply(verb=verb, ok=True, key=str(key), snapshot=payload)
        return _reply(verb=verb, ok=False, key=str(key), error=error, kind=failure)


def _key_from_body(body: bytes) -> str:
    """Requests carry ``{"key": "host:port"}``; a bare ``host:port`` body is accepted too."""
    text = body.decode(errors="replace").strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return text
        if isinstance(document, dict):
            # JSON can escape lone surrogates ("\udcff"): no reply could carry them back
            return str(document.get("key", "")).encode(errors="replace").decode()
    return text


def _reply(
    *,
    verb: str,
    ok: bool,
    key: str = "",
    error: str = "",
    snapshot: dict[str, object] | None = None,
    kind: DiscoveryFailure | None = None,
) -> bytes:
    return DiscoveryReply(
        ok=ok,
        verb=verb,
        key=key,
        error=error,
        snapshot=snapshot,
        kind=kind,
    ).to_json()
