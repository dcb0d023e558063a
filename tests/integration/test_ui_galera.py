"""The web UI shows a Galera cluster as such (issue 16), in a real browser (Debian's chromium,
driven by Playwright) against the whole stack on a real Galera cluster: ``make_stack(galera=3)``,
nodes 0-2 a 3-node MariaDB Galera cluster, node 3 an async GTID replica of node 0; discovery,
the API, two recovery workers and the coordinator as their own processes.

The API makes the four one cluster (named after node 0, aliased by the wsrep cluster name). Its
page draws the three Galera nodes as peers at the left (role ``galera``, a badge, their wsrep
state in words, a Galera link between them), the async replica to the right of node 0; a peer
desynced by hand turns to the warning style; the instance page shows a node's wsrep state field
by field; the clusters list tags the cluster ``Galera``. Every page must log no console
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
    leading recovery worker for its drop checks), once the API has the 4 nodes in one cluster,
    the Galera nodes Synced and the replica under node 0."""
    stack = make_stack(galera=3, **MULTI_AUTH)
    with leading_coordinator(stack):
        with admin_client(stack) as client:
            wait_until(
                lambda: all_synced(stack, client),
                timeout=60,
                what="one cluster of 4: the 3 Galera nodes Synced, the replica under node 0",
            )
        yield stack


def key_text(key: dict[str, Any]) -> str:
    return f"{key['Hostname']}:{key['Port']}" if key["Port"] else ""


def all_synced(stack: Stack, client: Any) -> bool:
    sandbox = stack.sandbox
    answer = client.get(f"/api/cluster/{sandbox.master.key}")
    if answer.status_code != 200:
        return False
    found = {key_text(i["Key"]): i for i in answer.json()}
    if set(found) != {node.key for node in sandbox.nodes}:
        return False
    synced = all(
        (galera := found[node.key]["Galera"])
        and galera["LocalStateComment"] == "Synced"
        and galera["ClusterSize"] == 3
        for node in sandbox.galera_nodes
    )
    return synced and key_text(found[sandbox.node(3).key]["MasterKey"]) == sandbox.master.key


def left(locator: Any) -> float:
    box = locator.bounding_box()
    assert box is not None, locator
    return float(box["x"])


def test_one_cluster_page_shows_the_galera_peers_their_state_and_the_async_replica(
    galera_stack: Stack, tmp_path: Path
) -> None:
    sandbox = galera_stack.sandbox
    galera_keys = [node.key for node in sandbox.galera_nodes]
    replica = sandbox.node(3).key
    peer = sandbox.node(1)
    wsrep_name, node_name = sandbox.execute(1, "SELECT @@wsrep_cluster_name, @@wsrep_node_name")[0]
    shots = screenshot_directory(tmp_path)
    with chromium() as browser, browser_pages(browser, galera_stack) as pages:
        page = pages()
        locate = page.page.locator

        # one cluster, named after its smallest node, aliased by the wsrep name, tagged Galera
        page.open("#/clusters")
        row = locate(f'tr[data-cluster="{sandbox.master.key}"]')
        expect(row.locator(".tag.galera")).to_have_text("Galera", timeout=RENDER_TIMEOUT_MS)
        expect(row).to_contain_text(str(wsrep_name))
        expect(locate("tr[data-cluster]")).to_have_count(1)
        shoot(page.page, shots, "galera-clusters")

        # the cluster page by its alias: the 3 nodes are peers at the left, linked, Synced
        page.open(f"#/cluster/{wsrep_name}")
        for key in galera_keys:
            card = page.instance(key)
            expect(card).to_have_attribute("data-role", "galera", timeout=RENDER_TIMEOUT_MS)
            expect(card).to_have_attribute("data-master", "")
            expect(card).to_have_class(GALERA)
            expect(card).not_to_have_class(GALERA_WARN)
            expect(card.locator(".galera-badge text")).to_have_text("GALERA")
            expect(card).to_contain_text(f"Galera {SYNCED}")
            expect(card).to_contain_text(f"GALERA PEER · {wsrep_name}")
        expect(locate("svg[data-testid=topology] path.edge.galera")).to_have_count(2)
        expect(locate("svg[data-testid=topology] path.edge.co")).to_have_count(0)
        below = page.instance(replica)
        expect(below).to_have_attribute("data-master", sandbox.master.key)
        expect(below).to_have_attribute("data-role", "replica")
        expect(below.locator(".galera-badge")).to_have_count(0)
        column = {left(page.instance(key)) for key in galera_keys}  # all at depth 0
        assert len(column) == 1 and left(below) > column.pop(), column
        expect(locate("h1")).to_have_text(f"cluster {sandbox.master.key} ({wsrep_name})")
        expect(locate("[data-testid=cluster-summary]")).to_contain_text(
            f"4 instances · Galera {wsrep_name}: 3 nodes"
        )

        # a peer desynced by hand (as a backup tool does): its card turns to the warning style,
        # live, and back
        sandbox.execute(peer.index, "SET GLOBAL wsrep_desync = ON")
        try:
            desynced = page.instance(peer.key)
            expect(desynced).to_have_class(GALERA_WARN, timeout=30_000)
            expect(desynced).to_contain_text("⚠ Galera Donor/Desynced")
            expect(desynced.locator(".galera-badge text")).to_have_text("⚠ GALERA")
            expect(page.instance(sandbox.master.key)).not_to_have_class(GALERA_WARN)
            shoot(page.page, shots, "galera-desynced")
        finally:
            sandbox.execute(peer.index, "SET GLOBAL wsrep_desync = OFF")
        expect(page.instance(peer.key)).not_to_have_class(GALERA_WARN, timeout=30_000)

        # the instance page of a peer: its wsrep state field by field, its members
        page.open(f"#/instance/{peer.key}")
        section = locate("[data-testid=galera]")
        expect(section.locator("[data-testid=galera-state]")).to_have_text(
            SYNCED, timeout=RENDER_TIMEOUT_MS
        )
        expect(section).to_contain_text(str(wsrep_name))
        expect(section).to_contain_text(str(node_name))
        for key in galera_keys:
            expect(section.locator(f'a[href="#/instance/{key}"]')).to_have_count(1)
        expect(locate("[data-testid=instance-panel] h2")).to_contain_text("Galera node")
        shoot(page.page, shots, "galera-instance")
