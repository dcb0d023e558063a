"""The web UI (issue 11) in a real browser: Debian's chromium, driven by Playwright, against the
real stack (4-node MariaDB sandbox, nats-server, etcd, discovery, topology-api, two recovery
workers) under ``AuthenticationMethod: multi`` (an admin user and the read-only ``readonly``).

The tests of this module share one stack; each puts the sandbox back in its star (node 0 the
master) before the next. The kill -9 test breaks its sandbox and has a stack of its own. Every
page must log no console error and ask nothing of any host but 127.0.0.1 (checked when its
context closes). Screenshots go to a temp dir, or to ``$ORCHESTRATOR_UI_SCREENSHOTS`` (e.g.
``docs/ui``) when set.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from orchestrator_cli.sandbox import Sandbox
from orchestrator_cli.sandbox.sandbox import SandboxNode
from tests import harness
from tests.integration.stack_support import Stack, StackFactory, stack_factory
from tests.integration.ui_support import (
    ADMIN,
    MULTI_AUTH,
    READONLY,
    Pages,
    RecordedPage,
    admin_client,
    browser_pages,
    chromium,
    leading_coordinator,
    restore_star,
    screenshot_directory,
    shoot,
    source_port,
    sources,
    star,
    wait_listed,
    wait_until,
)

pytestmark = pytest.mark.integration

RENDER_TIMEOUT_MS = 15_000
PROBLEM = re.compile(r"(^|\s)problem(\s|$)")
# Set window.__sawFailure once the given instance is drawn as a dead master (even briefly).
WATCH_FAILURE = """key => {
  window.__sawFailure = false;
  const svg = document.querySelector('svg[data-testid=topology]');
  const check = () => {
    const node = svg.querySelector(`g.instance[data-key="${key}"]`);
    if (node && node.classList.contains('problem') && node.textContent.includes('DeadMaster'))
      window.__sawFailure = node.textContent;
  };
  new MutationObserver(check).observe(svg, {subtree: true, childList: true, attributes: true});
}"""


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_directory(tmp_path_factory.mktemp("screenshots"))


@pytest.fixture(scope="module")
def module_servers() -> Iterator[tuple[harness.NatsLike, harness.EtcdLike]]:
    nats = harness.start_nats()
    try:
        etcd = harness.start_etcd()
        try:
            yield nats, etcd
        finally:
            etcd.close()
    finally:
        nats.close()


@pytest.fixture(scope="module")
def make_module_stack(
    module_sandbox_factory: Any,
    module_servers: tuple[harness.NatsLike, harness.EtcdLike],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StackFactory]:
    nats, etcd = module_servers
    yield from stack_factory(module_sandbox_factory, nats, etcd, tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="module")
def ui_stack(make_module_stack: StackFactory) -> Iterator[Stack]:
    """The stack, with the coordinator too (the status page shows the leader it reports)."""
    stack = make_module_stack(**MULTI_AUTH)
    with leading_coordinator(stack):
        wait_listed(stack)
        yield stack


@pytest.fixture
def star_stack(ui_stack: Stack) -> Iterator[Stack]:
    """The module's stack with node 0 the master of the three others, on the servers and in the
    API; put back after the test."""
    wait_api_star(ui_stack)
    try:
        yield ui_stack
    finally:
        restore_star(ui_stack.sandbox)
        wait_api_star(ui_stack)


@pytest.fixture
def pages(browser: Browser, ui_stack: Stack) -> Iterator[Pages]:
    with browser_pages(browser, ui_stack) as opened:
        yield opened


# --- helpers -------------------------------------------------------------------------------------


def api_masters(stack: Stack) -> dict[str, str]:
    """What the API says each sandbox instance replicates from ('' for none)."""
    with admin_client(stack) as client:
        answer = client.get(f"/api/cluster/{stack.sandbox.master.key}")
        answer.raise_for_status()
        found = {}
        for instance in answer.json():
            key = f"{instance['Key']['Hostname']}:{instance['Key']['Port']}"
            master = instance["MasterKey"]
            found[key] = f"{master['Hostname']}:{master['Port']}" if master["Port"] else ""
        return found


def wait_api_star(stack: Stack) -> None:
    sandbox = stack.sandbox
    expected = {node.key: "" if node.index == 0 else sandbox.master.key for node in sandbox.nodes}
    wait_until(
        lambda: sources(sandbox) == star(sandbox) and api_masters(stack) == expected,
        timeout=30,
        what="the sandbox a star, on the servers and in the API",
    )


def open_cluster(page: RecordedPage, stack: Stack) -> str:
    """The cluster page, once it shows the 4 sandbox instances; the cluster's name."""
    cluster = wait_listed(stack)
    page.open(f"#/cluster/{cluster}")
    for node in stack.sandbox.nodes:
        expect(page.instance(node.key)).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    return cluster


def wait_moved(page: RecordedPage, sandbox: Sandbox, index: int, below: SandboxNode) -> None:
    """Until node ``index`` replicates from ``below`` on the servers (else: what the page said)."""
    try:
        wait_until(
            lambda: source_port(sandbox, index) == below.port,
            timeout=20,
            what=f"{sandbox.node(index).key} replicating from {below.key}",
        )
    except AssertionError as error:
        notice = page.notice().text_content()
        try:
            api = httpx.get(f"{page.base}/api/cluster/{sandbox.master.key}", auth=ADMIN, timeout=3)
            answers = f"the API answers a client: {api.status_code}"
        except httpx.HTTPError as exc:
            answers = f"the API answers nobody: {exc!r}"
        raise AssertionError(
            f"{error}; the page's notice: {notice!r}; unanswered: {page.pending}; {answers}"
        ) from None


def centre(locator: Any) -> tuple[float, float]:
    box = locator.bounding_box()
    assert box is not None, locator
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag_over(page: RecordedPage, source: str, target: str) -> Any:
    """Press the mouse on ``source``'s node and move it over ``target``'s; the target locator."""
    mouse = page.page.mouse
    mouse.move(*centre(page.instance(source)))
    mouse.down()
    target_node = page.instance(target)
    x, y = centre(target_node)
    mouse.move(x - 20, y - 20, steps=5)
    mouse.move(x, y, steps=5)
    return target_node


# --- the tests -----------------------------------------------------------------------------------


def test_the_cluster_page_shows_the_four_sandbox_instances_with_their_state(
    star_stack: Stack, pages: Pages, shots: Path
) -> None:
    sandbox = star_stack.sandbox
    page = pages()
    open_cluster(page, star_stack)
    with admin_client(star_stack) as client:
        instances = client.get(f"/api/cluster/{sandbox.master.key}").json()
    for instance in instances:
        key = f"{instance['Key']['Hostname']}:{instance['Key']['Port']}"
        node = page.instance(key)
        master = instance["MasterKey"]
        expect(node).to_have_attribute(
            "data-master", f"{master['Hostname']}:{master['Port']}" if master["Port"] else ""
        )
        text = node.text_content() or ""
        assert key in text or str(instance["Key"]["Port"]) in text, text
        assert instance["Version"].split("-")[0] in text, text
        expect(node).not_to_have_class(PROBLEM)
    assert page.page.evaluate("window.__lastRender.instances") == 4
    shoot(page.page, shots, "cluster")


def test_dragging_a_replica_onto_a_sibling_moves_it_and_a_drop_onto_its_own_replica_is_refused(
    star_stack: Stack, pages: Pages, shots: Path
) -> None:
    sandbox = star_stack.sandbox
    moved, sibling = sandbox.node(3), sandbox.node(2)
    page = pages()
    open_cluster(page, star_stack)

    target = drag_over(page, moved.key, sibling.key)
    expect(target).to_have_attribute("data-drop", "allowed", timeout=RENDER_TIMEOUT_MS)
    # every other instance is marked, allowed or refused
    expect(page.page.locator("g.instance[data-drop]")).to_have_count(3)
    shoot(page.page, shots, "drag")
    page.page.mouse.up()

    dialog = page.page.locator("dialog[data-testid=confirm]")
    expect(dialog).to_be_visible()
    assert moved.key in (dialog.text_content() or "")
    dialog.locator("button[data-testid=confirm-ok]").click()
    wait_moved(page, sandbox, moved.index, sibling)
    # the operation answered (its own verification done): nothing of it runs any more
    expect(page.notice()).to_have_attribute("data-kind", "ok", timeout=RENDER_TIMEOUT_MS)
    # the page follows without a reload
    expect(page.instance(moved.key)).to_have_attribute(
        "data-master", sibling.key, timeout=RENDER_TIMEOUT_MS
    )

    # the sibling onto its new replica: refused with the reason, nothing changes
    before = sources(sandbox)
    target = drag_over(page, sibling.key, moved.key)
    expect(target).to_have_attribute("data-drop", "refused", timeout=RENDER_TIMEOUT_MS)
    reason = target.locator("title.drop-reason").text_content() or ""
    assert reason.strip(), "a refused target says why"
    shoot(page.page, shots, "drag-refused")
    page.page.mouse.up()
    expect(page.notice()).to_contain_text(reason.strip()[:40])
    expect(page.page.locator("dialog[data-testid=confirm]")).not_to_be_visible()
    page.page.wait_for_timeout(1500)  # long enough for a move to have started
    assert sources(sandbox) == before
    expect(page.instance(sibling.key)).to_have_attribute("data-master", sandbox.master.key)


def test_the_menu_equivalent_of_a_drag_relocates_a_replica(
    star_stack: Stack, pages: Pages, shots: Path
) -> None:
    sandbox = star_stack.sandbox
    moved, below = sandbox.node(1), sandbox.node(2)
    page = pages()
    open_cluster(page, star_stack)
    page.instance(moved.key).focus()
    page.page.keyboard.press("Enter")
    actions = page.page.locator("[data-testid=actions]")
    expect(actions).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    expect(actions).to_contain_text("Relocate below…")
    shoot(page.page, shots, "instance")
    targets = actions.locator("select[data-testid=relocate-target]")
    expect(targets.locator("option", has_text=f"{below.key}: allowed")).to_have_count(1)
    targets.focus()
    targets.select_option(below.key)
    page.page.keyboard.press("Tab")  # to the Relocate button
    expect(actions.get_by_role("button", name="Relocate", exact=True)).to_be_focused()
    page.page.keyboard.press("Enter")
    dialog = page.page.locator("dialog[data-testid=confirm]")
    expect(dialog).to_be_visible()
    expect(dialog.locator("button[data-testid=confirm-ok]")).to_be_focused()
    page.page.keyboard.press("Enter")
    wait_moved(page, sandbox, moved.index, below)
    # the operation answered (its own verification done): nothing of it runs any more
    expect(page.notice()).to_have_attribute("data-kind", "ok", timeout=RENDER_TIMEOUT_MS)


def test_the_selected_instances_panel_follows_its_changes_live(
    star_stack: Stack, pages: Pages
) -> None:
    sandbox = star_stack.sandbox
    replica = sandbox.node(3)
    page = pages()
    open_cluster(page, star_stack)
    page.instance(replica.key).click()
    panel = page.page.locator(f"[data-testid=instance-panel][data-key='{replica.key}'] h2")
    expect(panel).to_contain_text("read-only", timeout=RENDER_TIMEOUT_MS)
    sandbox.execute(replica.index, "SET GLOBAL read_only = 0")
    try:
        # no reload, no click: the next snapshot reaches the page, and the panel follows
        expect(panel).to_contain_text("writeable", timeout=30_000)
    finally:
        sandbox.execute(replica.index, "SET GLOBAL read_only = 1")


def test_a_read_only_user_can_change_nothing_from_the_page_nor_through_the_api(
    star_stack: Stack, pages: Pages
) -> None:
    sandbox = star_stack.sandbox
    replica, sibling = sandbox.node(1), sandbox.node(2)
    page = pages(READONLY)
    whoami = page.page.request.get(f"{star_stack.api}/api/whoami").json()
    assert whoami["CanChange"] is False and whoami["User"] == "readonly", whoami
    open_cluster(page, star_stack)

    # no drag starts: no target gets marked, no confirmation opens, nothing moves
    drag_over(page, replica.key, sibling.key)
    page.page.wait_for_timeout(1000)
    expect(page.page.locator("g.instance[data-drop]")).to_have_count(0)
    page.page.mouse.up()
    expect(page.page.locator("dialog[data-testid=confirm]")).not_to_be_visible()

    # every action of the instance panel is disabled, and says why
    page.open(f"#/instance/{replica.key}")
    buttons = page.page.locator("[data-testid=actions] button")
    expect(buttons.first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    assert buttons.count() > 5
    for index in range(buttons.count()):
        button = buttons.nth(index)
        expect(button).to_be_disabled()
        expect(button).to_have_attribute("title", whoami["Reason"])

    # the API itself refuses: 403 for the page's user, and for a plain client
    relocate = f"/api/relocate/{replica.key.replace(':', '/')}/{sibling.key.replace(':', '/')}"
    answer = page.page.request.get(f"{star_stack.api}{relocate}")
    assert answer.status == 403, answer.text()
    for path in (relocate, f"/api/set-writeable/{replica.key.replace(':', '/')}"):
        direct = httpx.get(f"{star_stack.api}{path}", auth=READONLY, timeout=10)
        assert direct.status_code == 403, direct.text
    assert sources(sandbox) == star(sandbox)
    with httpx.Client(base_url=star_stack.api, auth=ADMIN, timeout=10) as client:
        instance = client.get(f"/api/instance/{replica.key.replace(':', '/')}").json()
    assert instance["ReadOnly"] is True


def test_every_page_renders_from_the_real_stack(
    star_stack: Stack, pages: Pages, shots: Path
) -> None:
    sandbox = star_stack.sandbox
    stopped = sandbox.node(3)
    path = stopped.key.replace(":", "/")
    cluster = wait_listed(star_stack)
    page = pages()
    locate = page.page.locator

    page.open("#/clusters")
    expect(locate("[data-testid=clusters]")).to_contain_text(cluster, timeout=RENDER_TIMEOUT_MS)
    shoot(page.page, shots, "clusters")

    with admin_client(star_stack) as client:  # an audited change, made through the API
        for change in (f"begin-downtime/{path}/ui-test/screenshot/10m", f"end-downtime/{path}"):
            client.post(f"/api/{change}").raise_for_status()
    page.open("#/audit")
    expect(locate("[data-testid=audit]")).to_contain_text("end-downtime")
    expect(locate("[data-testid=audit]")).to_contain_text(stopped.key)
    shoot(page.page, shots, "audit")

    for node in sandbox.nodes[1:]:  # a problem the analysis sees (and nobody recovers)
        sandbox.execute(node.index, "STOP SLAVE")
    try:
        page.open("#/problems")
        problems = locate("[data-testid=problems]")
        expect(problems).to_contain_text("AllMasterReplicasNotReplicating", timeout=30_000)
        expect(problems).to_contain_text(sandbox.master.key)
        shoot(page.page, shots, "problems")
    finally:
        for node in sandbox.nodes[1:]:
            sandbox.execute(node.index, "START SLAVE")

    page.open("#/discover")
    expect(locate("[data-testid=discover-host]")).to_be_editable()
    shoot(page.page, shots, "discover")

    page.open("#/status")
    status = locate("[data-testid=status]")
    expect(status).to_contain_text("Recovery leader", timeout=RENDER_TIMEOUT_MS)
    expect(status).to_contain_text(re.compile(r"Fencing token\s*\d+"))
    shoot(page.page, shots, "status")

    page.open("#/recoveries")
    expect(page.page.get_by_role("heading", name="Recoveries")).to_be_visible()


def test_kill_9_of_the_master_the_page_shows_the_failure_then_the_new_tree_without_a_reload(
    make_stack: StackFactory, browser: Browser, shots: Path
) -> None:
    # a failover takes ~0.2 s from the kill: a pre-failover hook (as operators run) keeps the
    # dead master on the page long enough for the page to be seen showing it
    stack = make_stack(**MULTI_AUTH, PreFailoverProcesses=["sleep 1.5"])
    sandbox = stack.sandbox
    with browser_pages(browser, stack) as pages:
        page = pages()
        open_cluster(page, stack)
        page.page.evaluate("window.__sameDocument = true")
        page.page.evaluate(WATCH_FAILURE, sandbox.master.key)
        navigations: list[str] = []
        page.page.on("framenavigated", lambda frame: navigations.append(frame.url))
        sandbox.kill(0)
        page.page.wait_for_function("window.__sawFailure", timeout=RENDER_TIMEOUT_MS)
        shoot(page.page, shots, "failure")
        roots = page.page.locator('g.instance[data-master=""]')

        def new_tree() -> str | None:
            for index in range(roots.count()):
                key = roots.nth(index).get_attribute("data-key")
                if key and key != sandbox.master.key:
                    return key
            return None

        successor = wait_until(new_tree, timeout=30, what="a new master on the page")
        for node in sandbox.nodes[1:]:
            if node.key != successor:
                expect(page.instance(node.key)).to_have_attribute(
                    "data-master", successor, timeout=RENDER_TIMEOUT_MS
                )
        assert page.page.evaluate("window.__sameDocument") is True
        assert not [url for url in navigations if "#/cluster" not in url], navigations
        shoot(page.page, shots, "failover")
        page.open("#/recoveries")
        recent = page.page.locator("[data-testid=recoveries-recent]")
        expect(recent).to_contain_text(successor, timeout=RENDER_TIMEOUT_MS)
        shoot(page.page, shots, "recoveries")
