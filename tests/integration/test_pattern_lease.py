"""Issue 12 §7 through the whole stack: patterns that make Python's ``re`` backtrack for hours
cost the recovery leader nothing.

A real 4-node MariaDB sandbox, nats-server, etcd, discovery, topology-api and two recovery
workers (stack_support), configured with catastrophic patterns in every setting the leader
matches (``RecoverMasterClusterFilters`` ``alias~=``, ``RecoveryIgnoreHostnameFilters``,
``PromotionIgnoreHostnameFilters``). Crafted subjects exist for real: node 3 reports itself
(``report_host``) under a long ``xx…aa…ab.invalid`` name, which the master's ``SHOW SLAVE HOSTS``
— what the leader matches a ``relocate-replicas`` pattern against — lists; the cluster alias
(``DetectClusterAliasQuery``) is ``xx…x``. The test first shows that each pair is catastrophic
for ``re`` (a child Python still searching after a second), then sends the patterns through
the API and, signed, straight to the workers, and fails the master over, while it watches the
leader's etcd key and lease for twice the lease TTL: same leader, same lease, same term, and
the lease's remaining TTL never falls near zero (its keep-alives kept coming). With ``re`` in
place of RE2 the first request hangs and the lease is lost.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
import pytest

from orchestrator_cli.sandbox import Sandbox
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.command_signing import CommandSigner
from orchestrator_shared.events import RecoveryPhase
from tests.integration.stack_support import Stack, StackFactory
from tests.integration.test_recovery_stack import recovery_events, wait_for_phase, wait_until

pytestmark = pytest.mark.integration

# a replica name no resolver knows (RFC 6761), one DNS label long enough for Python re to explode
CRAFTED_HOST = "x" * 28 + "a" * 32 + "b.invalid"
CRAFTED_ALIAS = "x" * 40
TTL = 3  # EtcdLeaseTTLSeconds (the default; a keep-alive every 0.5 s)
# etcd gives the seconds left rounded down: TTL - 1 between two keep-alives, 0 once they have
# stalled for 2 s (the leader steps down at 2.5 s); 1 leaves room for a loaded machine
LOWEST_REMAINING = TTL - 2

NESTED = "(a+)+$"
OVERLAPPING = "(x+x+)+y"
EVIL = "^(([a-z])+.)+[A-Z]([a-z])+$"
BACKREFERENCE = r"(a)\1"  # RE2 has none: refused


@dataclass
class LeaseWatch:
    """Samples the leader key and its lease through etcd's JSON gateway every 0.1 s, in a
    thread (the test's event loop waits on the stack meanwhile)."""

    endpoint: str
    samples: list[tuple[float, bytes, int, int, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    started: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lease-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        with httpx.Client(base_url=f"{self.endpoint}/v3", timeout=2) as client:
            while not self._stop.is_set():
                try:
                    self.samples.append((time.monotonic(), *leader_and_lease(client)))
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                self._stop.wait(0.1)


def leader_and_lease(client: httpx.Client) -> tuple[bytes, int, int, int]:
    """The leader key's value, lease id and create revision (the term's fencing token), and
    the seconds left on that lease (0 and -1 when there is no leader)."""
    key = base64.b64encode(b"/orchestrator/recovery/leader").decode()
    kvs = client.post("/kv/range", json={"key": key}).json().get("kvs") or []
    if not kvs:
        return b"", 0, 0, -1
    lease = int(kvs[0].get("lease", 0))
    left = client.post("/lease/timetolive", json={"ID": str(lease)}).json()
    return (
        base64.b64decode(kvs[0]["value"]),
        lease,
        int(kvs[0]["create_revision"]),
        int(left["TTL"]),
    )


def still_searching_after_a_second(pairs: list[tuple[str, str]]) -> list[bool]:
    """For each (pattern, subject): whether Python's ``re.search`` in a child process is still
    running after a second (the child is killed then)."""
    script = "import re, sys; re.search(sys.argv[1], sys.argv[2])"
    children = [
        subprocess.Popen([sys.executable, "-c", script, pattern, subject])
        for pattern, subject in pairs
    ]
    try:
        time.sleep(1.0)
        return [child.poll() is None for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()


def report_as(sandbox: Sandbox, index: int, host: str) -> None:
    """Restart node ``index`` with ``report_host`` = ``host`` (it replicates on as before)."""
    node = sandbox.node(index)
    text = node.config_file.read_text()
    sandbox.stop(index)
    node.config_file.write_text(text.replace("report-host=127.0.0.1", f"report-host={host}"))
    sandbox.start(index)


async def relocate(stack: Stack, pattern: str) -> tuple[httpx.Response, float]:
    """``relocate-replicas`` of the master below node 1 with ``?pattern=``; the answer and how
    long it took."""
    master, below = stack.sandbox.node(0), stack.sandbox.node(1)
    path = f"/api/relocate-replicas/127.0.0.1/{master.port}/127.0.0.1/{below.port}"
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=stack.api, timeout=10) as client:
        try:
            answer = await client.get(path, params={"pattern": pattern})
        except httpx.TimeoutException:
            raise AssertionError(f"{pattern}: no answer in 10 s, the leader is stuck") from None
    return answer, time.monotonic() - started


async def signed(stack: Stack, pattern: str) -> tuple[CommandReply, float]:
    """The same operation, signed with the stack's key, straight to the workers (as if the
    API's check had been skipped)."""
    master, below = stack.sandbox.node(0), stack.sandbox.node(1)
    request = CommandRequest(
        operation="relocate-replicas",
        instance=master.key,
        destination=below.key,
        cluster=master.key,
        arguments={"pattern": pattern},
        requested_by="mallory",
    )
    nc = await nats.connect(stack.nats_url)
    try:
        started = time.monotonic()
        answer = await nc.request(
            "orchestrator.v1.command.relocate-replicas",
            CommandSigner(stack.signing_key).sign(request).to_json(),
            timeout=10,
        )
        took = time.monotonic() - started
    finally:
        await nc.close()
    return CommandReply.model_validate_json(answer.data), took


def audited(stack: Stack, kind: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{stack.api}/api/audit", timeout=5)
    return [entry for entry in answer.json() if entry["AuditType"] == kind]


def craft_subjects(stack: Stack) -> None:
    """Node 3 listed by the master as ``CRAFTED_HOST``; the cluster alias ``CRAFTED_ALIAS``.

    The instances themselves keep their ``127.0.0.1`` keys (discovery must reach them), so the
    hostname filters (``RecoveryIgnoreHostnameFilters``, ``PromotionIgnoreHostnameFilters``)
    run on the leader against those; the crafted name is in what the ``pattern`` of an
    operation is matched against (the master's replicas, as ``SHOW SLAVE HOSTS`` and the API
    list them)."""
    sandbox = stack.sandbox
    report_as(sandbox, 3, CRAFTED_HOST)
    wait_until(
        lambda: any(row[1] == CRAFTED_HOST for row in sandbox.execute(0, "SHOW SLAVE HOSTS")),
        timeout=15,
        what=f"the master lists its replica {CRAFTED_HOST}",
    )
    wait_until(
        lambda: (
            (answer := httpx.get(f"{stack.api}/api/cluster-info/{sandbox.node(0).key}", timeout=5))
            and answer.status_code == 200
            and answer.json()["ClusterAlias"] == CRAFTED_ALIAS
        ),
        timeout=15,
        what="the crafted cluster alias",
    )


async def check_through_the_api(stack: Stack) -> None:
    """RE2 accepts the catastrophic patterns: matched in linear time (nothing selected); it
    refuses a backreference: 400 before anything reaches a worker."""
    master, below = stack.sandbox.node(0), stack.sandbox.node(1)
    for pattern in (NESTED, OVERLAPPING, EVIL):
        answer, took = await relocate(stack, pattern)
        assert answer.status_code == 200, answer.text
        assert answer.json()["Message"] == f"Relocated 0 replicas of {master.key} below {below.key}"
        assert took < 3, f"{pattern}: {took:.2f} s"
    # the crafted name is one of the subjects: a pattern selecting it selects that replica
    # (which cannot be read: its name resolves to nothing)
    answer, took = await relocate(stack, r"^x+a+b\.invalid:")
    assert answer.status_code == 409, answer.text
    assert f"cannot read {CRAFTED_HOST}:" in answer.json()["Message"]
    assert took < 15  # (the name's lookup, not a pattern)
    answer, took = await relocate(stack, BACKREFERENCE)
    assert answer.status_code == 400, answer.text
    assert answer.json()["Message"].startswith("bad pattern: expected a regular expression")
    assert took < 3


async def check_signed_to_the_worker(stack: Stack) -> None:
    """A correctly signed command that skipped the API's check: the leader matches the
    catastrophic pattern in linear time, refuses the backreference and audits the refusal."""
    reply, took = await signed(stack, NESTED)
    assert reply.ok and took < 3, (reply, took)
    reply, took = await signed(stack, BACKREFERENCE)
    assert not reply.ok and took < 3, (reply, took)
    assert reply.error.startswith("bad pattern: expected a regular expression"), reply
    refusal = wait_until(
        lambda: audited(stack, "pattern-refused"), timeout=10, what="the refusal audited"
    )
    assert refusal[0]["User"] == "mallory"
    assert refusal[0]["Message"].startswith(
        f"relocate-replicas of {stack.sandbox.node(0).key}: bad pattern:"
    )
    assert repr(BACKREFERENCE) in refusal[0]["Message"]


async def check_automated_recovery(stack: Stack) -> None:
    """The master dies: the leader matches ``alias~=(x+x+)+y`` against the crafted alias (no
    match; the next filter, the alias itself, lets it recover) and the promotion filter against
    the candidates, and recovers at once."""
    async with recovery_events(stack.nats_url) as events:
        started = time.monotonic()
        stack.sandbox.kill(0)
        done = await wait_for_phase(events, RecoveryPhase.COMPLETED, timeout=30, no_failure=True)
        assert time.monotonic() - started < 15
    assert done.data.failed == stack.sandbox.node(0).key and done.data.successor


async def test_catastrophic_patterns_are_answered_at_once_and_the_leader_keeps_its_lease(
    make_stack: StackFactory,
) -> None:
    assert still_searching_after_a_second(
        [
            (NESTED, f"{CRAFTED_HOST}:3306"),
            (OVERLAPPING, f"{CRAFTED_HOST}:3306"),
            (EVIL, f"{CRAFTED_HOST}:3306"),
            (OVERLAPPING, CRAFTED_ALIAS),
        ]
    ) == [True, True, True, True], "the crafted pairs are not catastrophic for Python's re"
    stack = make_stack(
        EtcdLeaseTTLSeconds=TTL,
        DetectClusterAliasQuery=f"SELECT '{CRAFTED_ALIAS}'",
        RecoverMasterClusterFilters=[f"alias~={OVERLAPPING}", f"alias={CRAFTED_ALIAS}"],
        RecoveryIgnoreHostnameFilters=[NESTED],
        PromotionIgnoreHostnameFilters=[EVIL],
    )
    with httpx.Client(base_url=f"{stack.etcd.endpoint}/v3", timeout=2) as client:
        leader = wait_until(
            lambda: (found := leader_and_lease(client))[1] and found,
            timeout=15,
            what="a recovery leader",
        )
    watch = LeaseWatch(stack.etcd.endpoint)
    watch.start()
    try:
        craft_subjects(stack)
        await check_through_the_api(stack)
        await check_signed_to_the_worker(stack)
        await check_automated_recovery(stack)
        # watched for at least twice the lease TTL
        await asyncio.sleep(max(0.0, 2 * TTL + 0.5 - (time.monotonic() - watch.started)))
    finally:
        watch.stop()
    assert not watch.failures, watch.failures
    assert watch.samples[-1][0] - watch.samples[0][0] > 2 * TTL
    # the same leader, lease and term (no new election) throughout
    value, lease, term, _ = leader
    assert {sample[1:4] for sample in watch.samples} == {(value, lease, term)}
    # sampled every 0.1 s or so: no gap in which the lease could have run out unseen
    times = [sample[0] for sample in watch.samples]
    assert max(b - a for a, b in itertools.pairwise(times)) < 1
    remaining = [sample[4] for sample in watch.samples]
    assert min(remaining) >= LOWEST_REMAINING, remaining
