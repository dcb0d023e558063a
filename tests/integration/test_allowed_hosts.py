"""``DiscoveryAllowedHostnameFilters`` honoured by every entry point (issue 12 §2), through the
whole stack (discovery, topology-api and the recovery workers as processes) on a real MariaDB
sandbox: a host outside the list is never connected to, whether it comes as a seed, a
``discover`` request (API, CLI, or straight on the bus), a replica's ``report_host``, a
replica's ``Master_Host``, a recovery command or a drop check; the sandbox's own hosts are
discovered as usual.

Each host outside the list is a plain TCP listener on its own loopback address (127.0.0.2 and
up; the list allows 127.0.0.1 only) that records every connection it is offered.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from orchestrator_cli.client import run_client
from orchestrator_shared.bus import CommandReply, CommandRequest, Subjects
from orchestrator_shared.command_signing import CommandSigner
from tests.integration.stack_support import Stack, StackFactory
from tests.integration.test_recovery_stack import wait_until
from tests.integration.test_stack import LOG_FILES

pytestmark = pytest.mark.integration

SUBJECTS = Subjects()
ALLOWED = ["127.0.0.1"]  # the sandbox's nodes; every other address is outside the list


class Tripwire:
    """A TCP listener standing for a host outside the allow-list: it accepts and records every
    connection (who connected), and never answers."""

    def __init__(self, address: str) -> None:
        self._socket = socket.create_server((address, 0))
        self._socket.settimeout(0.1)
        self.host, self.port = self._socket.getsockname()[:2]
        self.key = f"{self.host}:{self.port}"
        self.connections: list[tuple[str, int]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, peer = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(peer[:2])
            conn.close()

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._socket.close()


@pytest.fixture
def tripwires() -> Iterator[dict[str, Tripwire]]:
    """One listener per entry point, each on its own loopback address (so the discovery log
    says which entry point it was refused at)."""
    names = ("seed", "discover", "report_host", "master_host", "command")
    opened: dict[str, Tripwire] = {}
    try:
        for number, name in enumerate(names, start=2):
            opened[name] = Tripwire(f"127.0.0.{number}")
        yield opened
    finally:
        for wire in opened.values():
            wire.close()


async def _bus_request(url: str, subject: str, body: bytes) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        msg = await nc.request(subject, body, timeout=15)
    finally:
        await nc.close()
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def bus_request(stack: Stack, subject: str, body: bytes) -> dict[str, Any]:
    """A request on the stack's bus, as anyone who may publish there could send it."""
    return asyncio.run(_bus_request(stack.nats_url, subject, body))


def command(stack: Stack, request: CommandRequest) -> CommandReply:
    """A command signed with the stack's key, straight to the recovery workers (the API would
    not forward one naming an instance it does not know)."""
    signed = CommandSigner(stack.signing_key).sign(request)
    subject = SUBJECTS.command(request.operation)
    return CommandReply.model_validate(bus_request(stack, subject, signed.to_json()))


def discovery_log(stack: Stack) -> str:
    return Path(LOG_FILES[stack.processes[0]]).read_text(errors="replace")


def refusal(key: str) -> str:
    host = key.rsplit(":", 1)[0]
    return f"host {host} is not allowed by DiscoveryAllowedHostnameFilters; not contacted"


def instance(stack: Stack, key: str) -> dict[str, Any] | None:
    """The API's instance JSON of ``key``, None when it does not know it."""
    host, port = key.rsplit(":", 1)
    answer = httpx.get(f"{stack.api}/api/instance/{host}/{port}", timeout=5)
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def known(stack: Stack, key: str) -> bool:
    return instance(stack, key) is not None


def probed_ok(stack: Stack, key: str) -> bool:
    """Whether the latest probe of ``key`` succeeded, as the API tells it."""
    found = instance(stack, key)
    return found is not None and found["IsLastCheckValid"] is True


def replace_report_host(stack: Stack, index: int, wire: Tripwire) -> None:
    """Restart sandbox node ``index`` reporting itself (SHOW SLAVE HOSTS on its master) as the
    listener: what a replica may claim with its ``report_host``."""
    sandbox = stack.sandbox
    sandbox.stop(index)
    config = sandbox.node(index).config_file
    lines = [
        f"report-host={wire.host}"
        if line.startswith("report-host=")
        else f"report-port={wire.port}"
        if line.startswith("report-port=")
        else line
        for line in config.read_text().splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")
    sandbox.start(index)


def test_hosts_outside_the_allow_list_are_never_contacted(
    make_stack: StackFactory, tripwires: dict[str, Tripwire]
) -> None:
    stack = make_stack(DiscoveryAllowedHostnameFilters=ALLOWED, more_seeds=(tripwires["seed"].key,))
    nodes = [node.key for node in stack.sandbox.nodes]
    # the allowed hosts are discovered as usual
    wait_until(
        lambda: all(probed_ok(stack, key) for key in nodes), timeout=30, what="4 nodes probed"
    )

    # a seed outside the list: refused at start-up, logged, never stored
    seed = tripwires["seed"].key
    assert f"not contacting {seed}: {refusal(seed)}" in discovery_log(stack)
    assert not known(stack, seed)

    # discover: the API and the CLI answer 403 / exit 1 with the reason; on the bus (no API in
    # between), discovery refuses it itself
    target = tripwires["discover"].key
    host, port = target.rsplit(":", 1)
    answer = httpx.post(f"{stack.api}/api/discover/{host}/{port}", timeout=10)
    assert answer.status_code == 403, answer.text
    assert answer.json()["Message"] == f"{target}: {refusal(target)}"
    out, err = io.StringIO(), io.StringIO()
    code = run_client(
        ["-c", "discover", "-i", target, "--api", stack.api], out=out, err=err, environ={}
    )
    assert code != 0
    assert refusal(target) in err.getvalue() and len(err.getvalue().splitlines()) == 1
    for verb in ("discover", "refresh"):
        reply = bus_request(stack, SUBJECTS.root + f".discovery.{verb}", target.encode())
        assert (reply["ok"], reply["error"]) == (False, f"refused: {target}: {refusal(target)}")

    # recovery: a command naming it is refused before anything runs, and audited
    replica = nodes[1]
    wanted = tripwires["command"].key
    reply = command(
        stack, CommandRequest(operation="relocate", instance=replica, destination=wanted)
    )
    assert not reply.ok
    assert reply.error == f"command refused: {wanted}: {refusal(wanted)}"

    def refusal_audited() -> bool:
        entries = httpx.get(f"{stack.api}/api/audit", timeout=5).json()
        return any(e["AuditType"] == "command-refused" and wanted in e["Message"] for e in entries)

    wait_until(refusal_audited, timeout=10, what="the refused command in the audit")
    # a drop check reads every target: the one outside the list is refused with the reason,
    # the others are checked as usual
    sibling = nodes[2]
    reply = command(
        stack,
        CommandRequest(
            operation="can-relocate",
            instance=replica,
            arguments={"targets": f"{sibling},{wanted}"},
        ),
    )
    assert reply.ok, reply.error
    assert isinstance(reply.details, list)
    verdicts = {f"{v['Key']['Hostname']}:{v['Key']['Port']}": v for v in reply.details}
    assert verdicts[sibling]["Allowed"] is True, verdicts
    assert verdicts[wanted]["Allowed"] is False
    assert verdicts[wanted]["Reason"] == f"cannot read {wanted}: {refusal(wanted)}"

    # the crawl: a replica reporting the listener as its report_host, another replica with a
    # replication channel to it (not started: the server itself does not connect)
    reported = tripwires["report_host"]
    replace_report_host(stack, 3, reported)
    lure = tripwires["master_host"]
    stack.sandbox.execute(
        2,
        f"CHANGE MASTER 'lure' TO master_host='{lure.host}', master_port={lure.port}, "
        "master_user='repl', master_password='repl'",
    )
    for wire in (reported, lure):
        wait_until(
            lambda w=wire: f"not contacting {w.key}: {refusal(w.key)}" in discovery_log(stack),
            timeout=20,
            what=f"the crawl refusing {wire.key}",
        )
    # the sandbox's nodes are still probed as usual (node 3 was restarted)
    wait_until(
        lambda: all(probed_ok(stack, key) for key in nodes), timeout=30, what="4 nodes probed"
    )
    time.sleep(3)  # more polls: never connected to, and logged once
    log = discovery_log(stack)
    for wire in tripwires.values():
        assert wire.connections == [], (wire.key, wire.connections)
        assert log.count(f"not contacting {wire.host}:") <= 1, log
        assert not known(stack, wire.key)
    # and the listeners do record a connection, so the empty lists above mean something
    for wire in tripwires.values():
        socket.create_connection((wire.host, wire.port), timeout=2).close()
        wait_until(lambda w=wire: w.connections, timeout=5, what=f"{wire.key} records a connect")
