"""What the web UI's browser tests share (issue 11): Debian's chromium driven by Playwright for
Python, pages that record every console error and every request, the real stack under
``AuthenticationMethod: multi`` (an admin user and ``readonly``), and screenshots.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` headless
(``./dev`` installs the Debian package). Each page's context records every request URL, so
:meth:`RecordedPage.check_clean` fails the test if one went to another host than 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pymysql
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from orchestrator_cli.sandbox import Sandbox
from tests.integration.coordinator_support import CoordinatorProcess
from tests.integration.stack_support import Stack
from tests.integration.test_recovery_stack import wait_until

CHROMIUM = "/usr/bin/chromium"
LOOPBACK = "127.0.0.1"
ADMIN = ("admin", "ui-test-admin-password")
READONLY = ("readonly", "any password")
# The API's settings for the module's stack: basic auth with an admin and the read-only user.
MULTI_AUTH = {
    "AuthenticationMethod": "multi",
    "HTTPAuthUser": ADMIN[0],
    "HTTPAuthPassword": ADMIN[1],
}
SCREENSHOTS_ENV = "ORCHESTRATOR_UI_SCREENSHOTS"
# Schemes that never reach the network.
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless, closed at the end."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


def leaves_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return False
    return parts.hostname != LOOPBACK


@dataclass
class RecordedPage:
    """A page in its own browser context, with what it logged and asked for."""

    page: Page
    context: BrowserContext
    base: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    loaded: bool = False
    pending: dict[str, str] = field(default_factory=dict)  # requests not answered yet

    def check_clean(self) -> None:
        assert not self.console_errors, self.console_errors
        if self.loaded:
            assert self.requests, "the page was loaded, yet no request was recorded"
        outside = [url for url in self.requests if leaves_loopback(url)]
        assert not outside, outside

    def open(self, route: str) -> None:
        """Load the single-page app at hash ``route`` (``#/clusters`` ...), wait for the event
        stream to be open."""
        self.loaded = True
        self.page.goto(f"{self.base}/{route}")
        self.page.wait_for_function("document.body.dataset.live === 'connected'", timeout=10_000)

    def instance(self, key: str) -> Any:
        return self.page.locator(f'svg[data-testid=topology] g.instance[data-key="{key}"]')

    def notice(self) -> Any:
        return self.page.locator("[data-testid=notice]")


class Pages:
    """Opens recorded pages (``open(user)``); every context is closed at the end."""

    def __init__(self, browser: Browser, base: str) -> None:
        self._browser = browser
        self._base = base
        self.opened: list[RecordedPage] = []

    def __call__(
        self, credentials: tuple[str, str] | None = ADMIN, *, width: int = 1400, height: int = 900
    ) -> RecordedPage:
        context = self._browser.new_context(
            http_credentials=(
                None
                if credentials is None
                else {"username": credentials[0], "password": credentials[1], "send": "always"}
            ),
            viewport={"width": width, "height": height},
            service_workers="block",
        )
        page = context.new_page()
        recorded = RecordedPage(page, context, self._base)
        self.opened.append(recorded)

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                recorded.console_errors.append(f"{message.text} ({message.location})")

        # Recorded, not intercepted: with the sync API a route handler runs only while the test
        # is inside a Playwright call, so routing would stall requests made while it waits.
        context.on("request", lambda r: recorded.requests.append(r.url))
        page.on("request", lambda r: recorded.pending.__setitem__(r.url, r.method))
        page.on("requestfinished", lambda r: recorded.pending.pop(r.url, None))
        page.on("requestfailed", lambda r: recorded.pending.pop(r.url, None))
        page.on("console", console)
        page.on("pageerror", lambda error: recorded.console_errors.append(f"page error: {error}"))
        return recorded

    def close(self) -> None:
        while self.opened:
            recorded = self.opened.pop()
            try:
                recorded.context.close()
            except PlaywrightError:
                continue  # the browser is already gone


@contextmanager
def browser_pages(browser: Browser, stack: Stack) -> Iterator[Pages]:
    """A :class:`Pages` for one test: each page it opened must be clean at the end (no console
    error, no request off 127.0.0.1); all are closed even when the test fails."""
    pages = Pages(browser, stack.api)
    try:
        yield pages
        for recorded in pages.opened:
            recorded.check_clean()
    finally:
        pages.close()


# --- screenshots ---------------------------------------------------------------------------------


def screenshot_directory(fallback: Path) -> Path:
    """``$ORCHESTRATOR_UI_SCREENSHOTS`` (e.g. ``docs/ui``, relative to the checkout) or
    ``fallback`` (a temp dir)."""
    chosen = os.environ.get(SCREENSHOTS_ENV, "")
    if not chosen:
        return fallback
    root = Path(__file__).resolve().parents[2]
    directory = (root / chosen).resolve()
    if not directory.is_relative_to(root):
        raise ValueError(f"{SCREENSHOTS_ENV}={chosen} is outside the checkout")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def shoot(page: Page, directory: Path, name: str) -> Path:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled")
    return path


# --- the stack and the servers -------------------------------------------------------------------


def admin_client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.api, auth=ADMIN, timeout=10)


@contextmanager
def leading_coordinator(stack: Stack) -> Iterator[CoordinatorProcess]:
    """The coordinator for ``stack``, once it reports a leading recovery worker: until then the
    API answers 503 to what the pages ask the leader (the status page's leader, the instance
    panel's drop checks), a console error. Stopped at the end."""
    coordinator = CoordinatorProcess(
        {"NATSServers": [stack.nats_url], "EtcdEndpoints": [stack.etcd.endpoint]}
    )
    coordinator.start()
    try:
        with admin_client(stack) as client:
            wait_until(
                lambda: client.get("/api/raft-leader").status_code == 200,
                timeout=30,
                what="the coordinator reports a leading recovery worker",
            )
        yield coordinator
    finally:
        coordinator.close()


def wait_listed(stack: Stack, *, auth: tuple[str, str] | None = ADMIN) -> str:
    """Until the API lists the sandbox's 4 instances; the cluster's name."""
    master = stack.sandbox.master.key

    def listed() -> str | None:
        answer = httpx.get(f"{stack.api}/api/cluster/{master}", auth=auth, timeout=5)
        if answer.status_code != 200 or len(answer.json()) != 4:
            return None
        return str(answer.json()[0]["ClusterName"])

    return str(wait_until(listed, timeout=30, what="the API lists the 4 sandbox instances"))


def source_port(sandbox: Sandbox, index: int) -> int | None:
    """The port node ``index`` replicates from (SHOW SLAVE STATUS), None when it does not."""
    with (
        pymysql.connect(
            **sandbox.connect_args(index),  # type: ignore[arg-type]
            cursorclass=pymysql.cursors.DictCursor,
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SHOW SLAVE STATUS")
        row = cursor.fetchone()
    if row is None or row["Slave_IO_Running"] != "Yes" or row["Slave_SQL_Running"] != "Yes":
        return None
    return int(row["Master_Port"])


def sources(sandbox: Sandbox) -> list[int | None]:
    return [source_port(sandbox, node.index) for node in sandbox.nodes]


def star(sandbox: Sandbox) -> list[int | None]:
    return [None] + [sandbox.master.port] * (len(sandbox.nodes) - 1)


def restore_star(sandbox: Sandbox) -> None:
    """Every replica back under node 0 (on the servers), once the API has seen it."""
    for node in sandbox.nodes[1:]:
        if source_port(sandbox, node.index) == sandbox.master.port:
            continue
        sandbox.execute(node.index, "STOP SLAVE")
        sandbox.execute(
            node.index,
            f"CHANGE MASTER TO master_host='{LOOPBACK}', master_port={sandbox.master.port}, "
            "master_use_gtid=slave_pos",
        )
        sandbox.execute(node.index, "START SLAVE")
    wait_until(lambda: sources(sandbox) == star(sandbox), timeout=20, what="the star is back")
