"""The audit as the API shows it: a hook's output to the admin role only, every message
redacted (a SQLite store; the stores keep the message as given, test_store covers them)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from orchestrator_api.app import create_app
from orchestrator_api.http.context import ApiContext
from orchestrator_api.store import AuditEntry, Store, open_store
from orchestrator_shared.config import Settings
from orchestrator_shared.events import HOOK_OUTPUT_MARK
from orchestrator_shared.instance_key import InstanceKey

pytestmark = pytest.mark.integration

KEY = InstanceKey("127.0.0.1", 3306)
HOOK_MESSAGE = (
    "post-master-failover hook 'notify.sh' exited with 0 after 0.1s"
    f"{HOOK_OUTPUT_MARK}deploying to prod-db-7 with MASTER_PASSWORD='leaked-pw'"
)


def _basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store("sqlite", sqlite_path=tmp_path / "orchestrator.sqlite3")
    try:
        at = datetime.now(UTC)
        await opened.append_audit(
            [
                AuditEntry(at=at, type="post-master-failover", message="ignored", key=KEY),
                AuditEntry(at=at, type="hook-post-master-failover", message=HOOK_MESSAGE, key=KEY),
                AuditEntry(
                    at=at,
                    type="relocate",
                    message="CHANGE MASTER TO master_host='h', master_password='in-audit-pw'",
                    key=KEY,
                ),
            ]
        )
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def api(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(AuthenticationMethod="multi", HTTPAuthUser="ops", HTTPAuthPassword="pw")
    transport = httpx.ASGITransport(app=create_app(ApiContext(settings=settings, store=store)))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client


@pytest.mark.parametrize(
    "path", ["/api/audit", "/api/audit/0", "/api/audit/instance/127.0.0.1/3306"]
)
async def test_hook_output_is_for_the_admin_role_only(api: httpx.AsyncClient, path: str) -> None:
    read = await api.get(path, headers=_basic("readonly", "any"))
    assert read.status_code == 200
    by_type = {entry["AuditType"]: entry["Message"] for entry in read.json()}
    hook = by_type["hook-post-master-failover"]
    assert hook.startswith("post-master-failover hook 'notify.sh' exited with 0")
    assert "prod-db-7" not in hook
    assert "admin role only" in hook
    admin = await api.get(path, headers=_basic("ops", "pw"))
    by_type = {entry["AuditType"]: entry["Message"] for entry in admin.json()}
    assert "deploying to prod-db-7" in by_type["hook-post-master-failover"]
    for response in (read, admin):
        assert "leaked-pw" not in response.text
        assert "in-audit-pw" not in response.text
