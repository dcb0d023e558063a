"""The web UI shows a Galera cluster as such (issue 16), in a real browser (Debian's chromium,
driven by Playwright) against the whole stack on a real Galera cluster: ``make_stack(galera=3)``,
nodes 0-2 a 3-node MariaDB Galera cluster, node 3 an async GTID replica of node 0; discovery,
the API, two recovery workers and the coordinator as their own processes.

The cluster page draws the three Galera nodes as Galera peers at the top (role ``galera``, a
badge, their wsrep state in words, a Galera link between them), the async replica below node 0;
a node desynced by hand turns to the warning style; the instance page shows a node's wsrep state
field by field; the clusters list tags the cluster ``Galera``. Every page must log no console
error and ask nothing of any host but 127.0.0.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.integration.stack_support import Stack, StackFactory
from tests.integration.ui_support import (
    MULTI_AUTH,
    admin_client,
    browser_pages,
    chromium,
    leading_coordinator,
    screenshot_directory,
    shoot,
    wait_until,
)

pytestmark = pytest.mark.integration

RENDER_TIMEOUT_MS = 15_000
SYNCED = "Synced · Primary 3/3"
GALERA = re.compile(r"(^|\s)galera(\s|$)")
GALERA_WARN = re.compile(r"(^|\s)galera-warn(\s|$)")


@pytest.fixture
def galera_stack(make_stack: StackFactory) -> Iterator[Stack]:
    """The stack on the Galera sandbox, with the coordinator (the instance panel asks the
    leading recovery worker for its drop checks), once the API has every node Synced and the
    replica under node 0."""
    stack = make_stack(galera=3, **MULTI_AUTH)
    with leading_coordinator(stack):
        with admin_client(stack) as client:
            wait_until(
                lambda: all_synced(stack, client),
                timeout=60,
                what="the API shows the 3 Galera nodes Synced and the replica under node 0",
            )
        yield stack


def key_text(key: dict[str, Any]) -> str:
    return f"{key['Hostname']}:{key['Port']}" if key["Port"] else ""


def all_synced(stack: Stack, client: Any) -> bool:
    sandbox = stack.sandbox
    for node in sandbox.galera_nodes:
        answer = client.get(f"/api/instance/{node.key.replace(':', '/')}")
        galera = answer.json().get("Galera") if answer.status_code == 200 else None
        if not galera or galera["LocalStateComment"] != "Synced" or galera["ClusterSize"] != 3:
            return False
    answer = client.get(f"/api/instance/{sandbox.node(3).key.replace(':', '/')}")
    return answer.status_code == 200 and key_text(answer.json()["MasterKey"]) == sandbox.master.key


def cluster_of(stack: Stack, key: str) -> str:
    with admin_client(stack) as client:
        answer = client.get(f"/api/instance/{key.replace(':', '/')}")
        answer.raise_for_status()
        return str(answer.json()["ClusterName"])


def test_the_pages_show_the_galera_nodes_their_state_and_the_async_replica_below_node_0(
    galera_stack: Stack, tmp_path: Path
) -> None:
    sandbox = galera_stack.sandbox
    galera_keys = [node.key for node in sandbox.galera_nodes]
    replica = sandbox.node(3).key
    shots = screenshot_directory(tmp_path)
    cluster = cluster_of(galera_stack, sandbox.master.key)
    with chromium() as browser, browser_pages(browser, galera_stack) as pages:
        page = pages()
        locate = page.page.locator

        page.open("#/clusters")
        row = locate(f'tr[data-cluster="{cluster}"]')
        expect(row.locator(".tag.galera")).to_have_text("Galera", timeout=RENDER_TIMEOUT_MS)
        shoot(page.page, shots, "galera-clusters")

        page.open(f"#/cluster/{cluster}")
        first = page.instance(sandbox.master.key)
        expect(first).to_have_attribute("data-role", "galera", timeout=RENDER_TIMEOUT_MS)
        expect(first).to_have_class(GALERA)
        expect(first.locator(".galera-badge")).to_contain_text("GALERA")
        expect(first).to_contain_text(f"Galera {SYNCED}")
        expect(first).to_contain_text("GALERA PEER")
        below = page.instance(replica)
        expect(below).to_have_attribute("data-master", sandbox.master.key)
        expect(below).to_have_attribute("data-role", "replica")
        expect(below.locator(".galera-badge")).to_have_count(0)
        expect(locate("[data-testid=cluster-summary]")).to_contain_text("Galera ")
        shoot(page.page, shots, "galera-cluster")

        # desynced by hand (as a backup tool does): the card turns to the warning style, live
        sandbox.execute(0, "SET GLOBAL wsrep_desync = ON")
        try:
            expect(first).to_have_class(GALERA_WARN, timeout=30_000)
            expect(first).to_contain_text("⚠ Galera Donor/Desynced")
            expect(first.locator(".galera-badge")).to_contain_text("⚠ GALERA")
            shoot(page.page, shots, "galera-desynced")
        finally:
            sandbox.execute(0, "SET GLOBAL wsrep_desync = OFF")
        expect(first).not_to_have_class(GALERA_WARN, timeout=30_000)

        page.open(f"#/instance/{galera_keys[1]}")
        section = locate("[data-testid=galera]")
        expect(section.locator("[data-testid=galera-state]")).to_have_text(
            SYNCED, timeout=RENDER_TIMEOUT_MS
        )
        name, node_name = sandbox.execute(1, "SELECT @@wsrep_cluster_name, @@wsrep_node_name")[0]
        expect(section).to_contain_text(str(name))
        expect(section).to_contain_text(str(node_name))
        for key in galera_keys:
            expect(section.locator(f'a[href="#/instance/{key}"]')).to_have_count(1)
        expect(locate("[data-testid=instance-panel] h2")).to_contain_text("Galera node")
        shoot(page.page, shots, "galera-instance")
