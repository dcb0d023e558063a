"""A stand-in recovery worker for fault drills, tests and benchmarks.

    python -m orchestrator_coordinator.drill --endpoints http://127.0.0.1:2379 --records FILE

It runs an :class:`~orchestrator_adapters.election.Election` and, while it leads, performs a
"destructive action" every ``--action-interval`` seconds: ``guard()``, then the action, which is
only recording itself. Every record is one JSON line appended to ``--records`` (several workers may
share the file; each line is one ``write``)::

    {"kind": "joined", "worker": ..., "pid": ..., "mono": ...}
    {"kind": "lead",   "worker": ..., "token": 7, "mono": ..., "wall": ...}
    {"kind": "action", "worker": ..., "token": 7, "guard_started": ..., "acted_at": ...,
     "wall": ...}
    {"kind": "lost",   "worker": ..., "token": 7, "mono": ...}
    {"kind": "refused","worker": ..., "token": 7, "mono": ..., "reason": ...}
    {"kind": "left",   "worker": ..., "mono": ...}

``mono`` values are ``time.monotonic()``, one clock for every process of the machine, so records
of different workers can be compared. An action is taken at ``acted_at``, only while the guard's
approval holds (``acted_at < approval.valid_until``); its interval ``[guard_started, acted_at]``
is what a drill checks for overlaps between fencing tokens.

Signals: SIGTERM/SIGINT leave cleanly (resign, revoke the lease); SIGUSR1 resigns and campaigns
again after ``--rejoin-after`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from orchestrator_adapters.election import Election, ElectionOptions, Leadership
from orchestrator_adapters.entrypoint import EXIT_OK, cancel_on_stop_signals, run_main
from orchestrator_adapters.etcd import EtcdError, EtcdOptions
from orchestrator_shared.errors import LeaseLost
from orchestrator_shared.etcd.leadership import local_identity
from orchestrator_shared.logging import configure_logging

log = logging.getLogger("orchestrator_coordinator.drill")


class Recorder:
    def __init__(self, path: str, worker: str) -> None:
        self.worker = worker
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, "worker": self.worker, "pid": os.getpid(), **fields}
        os.write(self._fd, (json.dumps(record) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


async def act_while_leading(
    election: Election, recorder: Recorder, term: Leadership, interval: float
) -> None:
    """Leader work: guarded actions until the term ends (then this is cancelled)."""
    recorder.write("lead", token=term.token, mono=time.monotonic(), wall=_now())
    while True:
        guard_started = time.monotonic()
        try:
            approval = await election.guard()
        except LeaseLost as exc:
            recorder.write("refused", token=term.token, mono=time.monotonic(), reason=str(exc))
            raise
        acted_at = time.monotonic()
        if acted_at >= approval.valid_until:
            recorder.write("refused", token=term.token, mono=acted_at, reason="approval expired")
            raise LeaseLost("approval expired before the action")
        recorder.write(
            "action",
            token=approval.token,
            guard_started=guard_started,
            acted_at=acted_at,
            wall=_now(),
        )
        await asyncio.sleep(interval)


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def run(args: argparse.Namespace) -> None:
    identity = local_identity(args.id)
    recorder = Recorder(args.records, identity.id)
    options = ElectionOptions(
        etcd=EtcdOptions(
            endpoints=tuple(args.endpoints.split(",")),
            request_timeout=args.request_timeout,
            user=args.user,
            password=os.environ.get("DRILL_ETCD_PASSWORD", ""),
        ),
        key_prefix=args.prefix,
        lease_ttl=args.ttl,
        keepalive_interval=args.keepalive,
    )
    loop = asyncio.get_running_loop()
    cancel_on_stop_signals()
    try:
        async with Election(options, identity=identity) as election:
            recorder.write("joined", mono=time.monotonic())
            loop.add_signal_handler(
                signal.SIGUSR1,
                lambda: loop.create_task(election.resign(rejoin_after=args.rejoin_after)),
            )
            print("ready", flush=True)
            while True:
                term: Leadership | None = None
                try:
                    async with election.leading() as term:
                        await act_while_leading(election, recorder, term, args.action_interval)
                except LeaseLost:
                    recorder.write("lost", token=term.token if term else 0, mono=time.monotonic())
    except asyncio.CancelledError:
        pass
    finally:
        recorder.write("left", mono=time.monotonic())
        recorder.close()


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator_coordinator.drill")
    parser.add_argument("--endpoints", required=True, help="comma-separated etcd URLs")
    parser.add_argument("--records", required=True, help="JSON-lines file to append to")
    parser.add_argument("--id", default=None, help="worker id (default: host-pid-random)")
    parser.add_argument("--prefix", default="/orchestrator")
    parser.add_argument("--ttl", type=int, default=3)
    parser.add_argument("--keepalive", type=float, default=0.5)
    parser.add_argument("--request-timeout", type=float, default=1.0)
    parser.add_argument("--action-interval", type=float, default=0.05)
    parser.add_argument("--rejoin-after", type=float, default=1.0)
    parser.add_argument("--user", default="", help="etcd user; password in $DRILL_ETCD_PASSWORD")
    args = parser.parse_args(argv)
    configure_logging("drill")
    code = run_main("drill", run(args), failures=(EtcdError,))
    if code == EXIT_OK:
        with suppress(Exception):
            sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(cli())
