"""What the coordinator tests share: drill workers as child processes, their records, the
fencing check, and the coordinator service as a child process.

A :class:`DrillWorker` is ``python -m orchestrator_coordinator.drill`` run as a harness
``ManagedProcess``: its own process group, ``PR_SET_PDEATHSIG``, in the harness registry (closed
at session end if a test forgot), with ``kill()`` (SIGKILL), ``hang()`` (SIGSTOP), ``resume()``
and ``stop()`` (SIGTERM: a clean resignation).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.ports import LOOPBACK, free_port
from tests.harness.process import ManagedProcess, http_get, metric_samples


@dataclass(frozen=True)
class Timing:
    ttl: int
    keepalive: float
    request_timeout: float


# TTL 2 s for scenarios that must not flap on a busy 2-core machine; 1 s for the stress test.
STEADY = Timing(ttl=2, keepalive=0.4, request_timeout=0.6)
FAST = Timing(ttl=1, keepalive=0.25, request_timeout=0.3)


class DrillWorker(ManagedProcess):
    stop_timeout = 5.0
    ready_timeout = 20.0

    def __init__(
        self,
        *,
        worker_id: str,
        endpoints: Sequence[str],
        records: Path,
        prefix: str,
        timing: Timing = STEADY,
        action_interval: float = 0.02,
        rejoin_after: float = 0.5,
    ) -> None:
        super().__init__(name=f"drill-{worker_id}")
        self.worker_id = worker_id
        self.endpoints = list(endpoints)
        self.records = records
        self.prefix = prefix
        self.timing = timing
        self.action_interval = action_interval
        self.rejoin_after = rejoin_after
        self._joined_before = 0

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "orchestrator_coordinator.drill",
            "--endpoints", ",".join(self.endpoints),
            "--records", str(self.records),
            "--id", self.worker_id,
            "--prefix", self.prefix,
            "--ttl", str(self.timing.ttl),
            "--keepalive", str(self.timing.keepalive),
            "--request-timeout", str(self.timing.request_timeout),
            "--action-interval", str(self.action_interval),
            "--rejoin-after", str(self.rejoin_after),
        ]  # fmt: skip

    def start(self, *, wait: bool = True) -> None:
        self._joined_before = self._joins()
        super().start(wait=wait)

    def _joins(self) -> int:
        return sum(
            1
            for record in read_records(self.records)
            if record["kind"] == "joined" and record["worker"] == self.worker_id
        )

    def probe(self) -> bool:
        return self._joins() > self._joined_before

    def resign(self) -> None:
        """SIGUSR1: resign, campaign again after ``rejoin_after``."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGUSR1)


def read_records(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
    return records


def wait_for_lead(
    path: Path,
    *,
    after: float,
    within: float,
    token_above: int = 0,
    worker_not: str | None = None,
) -> dict[str, Any]:
    """The first ``lead`` record at or after ``after`` (monotonic) that matches; AssertionError
    when none came within ``within`` seconds of now."""
    deadline = time.monotonic() + within
    while True:
        for record in read_records(path):
            if (
                record["kind"] == "lead"
                and record["mono"] >= after
                and record["token"] > token_above
                and record["worker"] != worker_not
            ):
                return record
        if time.monotonic() >= deadline:
            raise AssertionError(f"no worker took the lead within {within:g} s")
        time.sleep(0.01)


def current_leader(path: Path) -> dict[str, Any] | None:
    """The newest ``lead`` record not followed by a ``lost``/``left`` of the same worker."""
    holder: dict[str, Any] | None = None
    for record in read_records(path):
        if record["kind"] == "lead":
            holder = record
        elif (
            holder is not None
            and record["kind"] in ("lost", "left")
            and record["worker"] == holder["worker"]
        ):
            holder = None
    return holder


@dataclass(frozen=True)
class FencingReport:
    actions: int
    tokens: int
    leaders: int


def check_fencing(records: Sequence[dict[str, Any]]) -> FencingReport:
    """Every guard-approved action against the fencing tokens: the span of a token's actions
    (first guard start to last action) ends before the next token's span begins, so no two
    leaders ever acted at once and tokens only increase in time. AssertionError otherwise."""
    spans: dict[int, list[float]] = {}
    owners: dict[int, set[str]] = defaultdict(set)
    actions = 0
    for record in records:
        if record["kind"] != "action":
            continue
        actions += 1
        token = int(record["token"])
        start, end = float(record["guard_started"]), float(record["acted_at"])
        assert start <= end, f"action before its guard: {record}"
        owners[token].add(record["worker"])
        span = spans.setdefault(token, [start, end])
        span[0] = min(span[0], start)
        span[1] = max(span[1], end)
    for token, workers in owners.items():
        assert len(workers) == 1, f"token {token} used by several workers: {sorted(workers)}"
    ordered = sorted(spans.items())
    for (token, (_, end)), (next_token, (next_start, _)) in itertools.pairwise(ordered):
        assert end < next_start, (
            f"leaders overlapped: token {token} acted until {end:.6f}, "
            f"token {next_token} from {next_start:.6f}"
        )
    return FencingReport(
        actions=actions,
        tokens=len(spans),
        leaders=len({worker for workers in owners.values() for worker in workers}),
    )


class CoordinatorProcess(ManagedProcess):
    """``orchestrator-coordinator --config FILE`` with its HTTP port; ready when /status
    answers."""

    stop_timeout = 10.0
    ready_timeout = 20.0

    def __init__(
        self, settings: dict[str, Any], *, environment: dict[str, str] | None = None
    ) -> None:
        super().__init__(name="coordinator")
        self.extra_environment = environment or {}
        self.port = free_port()
        self.settings = {**settings, "CoordinatorListenAddress": f"{LOOPBACK}:{self.port}"}
        self.config_path = self.workdir / "orchestrator.conf.json"
        self.config_path.write_text(json.dumps(self.settings))

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "orchestrator_coordinator.main",
            "--config", str(self.config_path),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.extra_environment}

    def probe(self) -> bool:
        answer = http_get(f"{self.url}/status")
        return answer is not None and answer[0] == 200

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def status(self) -> dict[str, Any]:
        answer = http_get(f"{self.url}/status")
        assert answer is not None, "coordinator /status did not answer"
        return dict(json.loads(answer[1]))

    def metrics(self) -> dict[str, float]:
        return metric_samples(f"{self.url}/metrics", "orchestrator_coordinator_")

    def wait_status(self, predicate: Any, *, within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() >= deadline:
                raise AssertionError(f"status not reached within {within:g} s: {status}")
            time.sleep(0.05)


def enable_etcd_auth(
    endpoint: str, *, prefix: str, user: str, password: str, ca_file: Path | None = None
) -> None:
    """With etcdctl: a root user, a role that may read and write ``prefix``, ``user`` with it,
    then ``auth enable`` (docs/coordinator.md shows the same commands to operators).
    ``ca_file``: the CA of an https:// endpoint."""
    tls = ["--cacert", str(ca_file)] if ca_file is not None else []

    def etcdctl(*args: str) -> None:
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("ETCD")
        }
        environment["ETCDCTL_API"] = "3"
        subprocess.run(
            ["etcdctl", "--endpoints", endpoint, *tls, *args],
            check=True,
            capture_output=True,
            timeout=20,
            env=environment,
        )

    etcdctl("user", "add", "root", "--new-user-password=root-password")
    etcdctl("user", "grant-role", "root", "root")
    etcdctl("role", "add", "orchestrator")
    etcdctl("role", "grant-permission", "orchestrator", "--prefix=true", "readwrite", prefix)
    etcdctl("user", "add", user, f"--new-user-password={password}")
    etcdctl("user", "grant-role", user, "orchestrator")
    etcdctl("auth", "enable")
