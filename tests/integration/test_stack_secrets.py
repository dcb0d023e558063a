"""No secret leaves the stack (issue 12 §5): a whole-stack failover by kill -9, with a hook that
prints its environment, and then every log, every bus message, every audit row and the answers
of the main API routes are searched for the secrets the stack used, and none is found."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from orchestrator_cli.sandbox.config import REPLICATION_PASSWORD
from orchestrator_shared.events import RecoveryEvent, RecoveryPhase
from tests.integration.stack_support import TOPOLOGY, Stack, StackFactory
from tests.integration.test_stack import stop, wait_until

pytestmark = pytest.mark.integration

HTTP_PASSWORD = "http-admin-pw-31"
TOKEN = "bearer-token-7d41c"
TOPOLOGY_PASSWORD = TOPOLOGY["MySQLTopologyPassword"]
SECRETS = (TOPOLOGY_PASSWORD, REPLICATION_PASSWORD, HTTP_PASSWORD, TOKEN)
ADMIN = httpx.BasicAuth("ops", HTTP_PASSWORD)
READER = httpx.BasicAuth("readonly", "whatever")


def get(stack: Stack, path: str, auth: httpx.BasicAuth = ADMIN) -> httpx.Response:
    return httpx.get(stack.api + path, auth=auth, timeout=5)


def stack_logs(stack: Stack) -> dict[str, str]:
    """Every log of the stack: each service's output (the services stopped), nats-server's,
    etcd's and the MariaDB servers' error logs."""
    logs = {f"process {n}": stop(process)[1] for n, process in enumerate(stack.processes)}
    for server in (stack.nats, stack.etcd):
        logs[str(server.log_path)] = server.log_path.read_text(errors="replace")
    for path in Path(stack.sandbox.directory).rglob("*.err"):
        logs[str(path)] = path.read_text(errors="replace")
    return logs


async def test_no_secret_in_logs_events_audit_or_answers(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    hook_output = tmp_path / "hook-env"
    stack = make_stack(
        AuthenticationMethod="multi",
        HTTPAuthUser="ops",
        PostMasterFailoverProcesses=[
            # the environment as the hook sees it, in the audit (output) and in a file; a hook
            # echoing SQL with a password, and the topology password by value
            f"env | tee {hook_output}; echo \"CHANGE MASTER TO MASTER_PASSWORD='"
            f"{REPLICATION_PASSWORD}'\"; echo 'connect with {TOPOLOGY_PASSWORD}'",
        ],
        environment={
            "ORCHESTRATOR_LOG_LEVEL": "DEBUG",  # every line a service may log,
            "ORCHESTRATOR_HTTPAuthPassword": HTTP_PASSWORD,
            "ORCHESTRATOR_AUTH_TOKEN": TOKEN,  # a worker's environment, not a setting
        },
    )
    sandbox = stack.sandbox
    master = sandbox.master.key
    try:
        wait_until(
            lambda: len(get(stack, f"/api/cluster/{master}").json()) == 4,
            timeout=30,
            what="the API lists the 4 instances",
        )
    except AssertionError:
        tails = [text[-3000:] for text in stack_logs(stack).values()]
        raise AssertionError(
            "the stack did not list the 4 instances:\n" + "\n".join(tails)
        ) from None
    bus: list[tuple[str, bytes]] = []
    events: list[RecoveryEvent] = []
    nc = await nats.connect(stack.nats_url)

    async def take(msg: Any) -> None:
        bus.append((msg.subject, msg.data))
        if ".recovery." in msg.subject:
            events.append(RecoveryEvent.model_validate_json(msg.data))

    try:
        await nc.subscribe("orchestrator.>", cb=take)
        await nc.flush()
        await asyncio.sleep(1.5)  # every worker has read the fleet; one leads
        sandbox.kill(0)
        deadline = time.monotonic() + 30
        while not any(e.phase is RecoveryPhase.COMPLETED for e in events):
            assert not any(e.phase is RecoveryPhase.FAILED for e in events), events
            assert time.monotonic() < deadline, events
            await asyncio.sleep(0.1)
        done = next(e for e in events if e.phase is RecoveryPhase.COMPLETED)
        wait_until(hook_output.exists, timeout=10, what="the hook ran")
        wait_until(
            lambda: any(
                e["AuditType"].startswith("hook-") for e in get(stack, "/api/audit").json()
            ),
            timeout=10,
            what="the hook's audit row",
        )
        # a request with a wrong password and one with the token, refused (and logged)
        assert get(stack, "/api/clusters", httpx.BasicAuth("ops", TOKEN)).status_code == 401
        await asyncio.sleep(1)  # the last snapshots and events
    finally:
        await nc.close()

    # the hook saw none of the worker's secrets
    seen_by_hook = hook_output.read_text()
    assert "PATH=" in seen_by_hook
    assert "ORC_FAILED_HOST=" in seen_by_hook
    assert not [line for line in seen_by_hook.splitlines() if line.startswith("ORCHESTRATOR_")]

    answers: dict[str, str] = {}
    routes = [
        "/api/clusters",
        "/api/clusters-info",
        f"/api/cluster/{done.data.successor}",
        f"/api/instance/{done.data.successor.replace(':', '/')}",
        "/api/all-instances",
        "/api/replication-analysis",
        "/api/problems",
        "/api/audit",
        "/api/audit/0",
        "/api/audit-recovery",
        f"/api/audit-recovery-steps/{done.data.recovery_id}",
        "/api/audit-failure-detection",
        "/api/health",
        "/api/leader-check",
        "/api/status",
    ]
    for route in routes:
        for who, auth in (("admin", ADMIN), ("read", READER)):
            answer = get(stack, route, auth)
            answers[f"{who} {route}"] = f"{answer.status_code} {answer.text}"
    admin_audit = get(stack, "/api/audit").json()
    hook_rows = [e for e in admin_audit if e["AuditType"].startswith("hook-")]
    assert hook_rows, admin_audit
    assert "ORC_FAILED_HOST=" in hook_rows[0]["Message"]  # the admin sees the output,
    assert "MASTER_PASSWORD='********'" in hook_rows[0]["Message"]  # redacted
    assert "connect with ********" in hook_rows[0]["Message"]
    read_rows = [
        e for e in get(stack, "/api/audit", READER).json() if e["AuditType"].startswith("hook-")
    ]
    assert read_rows
    assert all("ORC_FAILED_HOST" not in e["Message"] for e in read_rows)  # the read role does not

    logs = stack_logs(stack)
    assert any("debug" in text.lower() for text in logs.values())

    everything: dict[str, str] = {
        **logs,
        **answers,
        **{
            f"bus {n} {subject}": data.decode(errors="replace")
            for n, (subject, data) in enumerate(bus)
        },
    }
    assert len(bus) > 10
    leaks = [
        (where, secret)
        for where, text in everything.items()
        for secret in SECRETS
        if secret in text
    ]
    assert leaks == []
