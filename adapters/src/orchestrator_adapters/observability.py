"""The HTTP surface a service shows Kubernetes and Prometheus: ``/health``, ``/ready`` and
``/metrics`` on one listener of its own (docs/deploy.md, "Health and metrics").

- ``/health`` (liveness): 200 while the service's event loop is turning. The server runs on a
  thread of its own, so it would answer even if the loop were stuck; it answers 503 when the
  loop's :class:`Heartbeat` has not beaten for ``stale_after`` seconds, and a liveness probe then
  restarts a process that no longer does anything.
- ``/ready`` (readiness): 200 when the service can do its job now, 503 with the reason otherwise
  (not connected to NATS, etcd unreachable, the fleet not read yet...): the service says which
  in the ``ready`` function it passes.
- ``/metrics``: the Prometheus text exposition of the service's registry.

Read-only and unauthenticated, like Prometheus's own endpoints: nothing here changes anything,
and no answer carries a setting or a secret. ``ready`` runs on the server's thread: it must only
read plain values (a flag, ``Event.is_set()``, a connection's state), never await.

The services that serve these paths from their event loop (the topology API, the coordinator)
answer with the same JSON: :func:`probe_body`, :data:`ALIVE` and :func:`readiness`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from orchestrator_shared.config import parse_listen_address

HEARTBEAT_SECONDS = 1.0
STALE_AFTER_SECONDS = 10.0

Ready = Callable[[], str]
"""Why the service is not ready now; empty when it is."""


def probe_body(state: str, reason: str) -> dict[str, str]:
    """The JSON of a ``/health`` or ``/ready`` answer, the same on every service."""
    return {"status": state} | ({"reason": reason} if reason else {})


ALIVE = probe_body("alive", "")
"""``/health``'s answer from a server on the event loop: answering at all means it turns."""


def readiness(why: str) -> tuple[HTTPStatus, dict[str, str]]:
    """``/ready``'s status and body when the service is not ready because of ``why`` (empty:
    it is ready)."""
    if why:
        return HTTPStatus.SERVICE_UNAVAILABLE, probe_body("not ready", why)
    return HTTPStatus.OK, probe_body("ready", "")


class Heartbeat:
    """Beats every ``HEARTBEAT_SECONDS`` while the event loop runs :meth:`run`."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    async def run(self) -> None:
        while True:
            self.last = time.monotonic()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    def age(self) -> float:
        return time.monotonic() - self.last


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(HTTPStatus.OK, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/health":
            age = self.server.heartbeat.age()
            if age > self.server.stale_after:
                silent = probe_body("stuck", f"event loop silent {age:.0f}s")
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, silent)
            else:
                self._json(HTTPStatus.OK, ALIVE)
        elif path == "/ready":
            try:
                why = self.server.ready()
            except Exception as exc:  # a readiness check must answer, whatever it found
                why = f"readiness check failed: {type(exc).__name__}"
            self._json(*readiness(why))
        else:
            unknown = probe_body("not found", "try /health, /ready or /metrics")
            self._json(HTTPStatus.NOT_FOUND, unknown)

    def _json(self, status: HTTPStatus, body: dict[str, str]) -> None:
        self._send(status, json.dumps(body).encode() + b"\n", "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Probes every few seconds are not worth a log line each."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        registry: CollectorRegistry,
        ready: Ready,
        heartbeat: Heartbeat,
        stale_after: float,
    ) -> None:
        super().__init__(address, _Handler)
        self.registry = registry
        self.ready = ready
        self.heartbeat = heartbeat
        self.stale_after = stale_after


class ObservabilityServer:
    """``/health``, ``/ready`` and ``/metrics`` on ``host:port``, served from a thread.

    Use as a context manager: the port is bound on entry (an ``OSError`` if it is taken: the
    service stops with one line), the thread stopped and joined on exit."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        registry: CollectorRegistry,
        ready: Ready,
        heartbeat: Heartbeat,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> None:
        self._server = _Server(
            (host, port),
            registry=registry,
            ready=ready,
            heartbeat=heartbeat,
            stale_after=stale_after,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="observability", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> ObservabilityServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_observability(
    stack: AsyncExitStack, address: str, *, registry: CollectorRegistry, ready: Ready
) -> ObservabilityServer:
    """The listener on ``address`` (a ``...ListenAddress`` setting) while ``stack`` is open,
    the running event loop's :class:`Heartbeat` beating for its ``/health``."""
    host, port = parse_listen_address(address)
    heartbeat = Heartbeat()
    server = stack.enter_context(
        ObservabilityServer(host, port, registry=registry, ready=ready, heartbeat=heartbeat)
    )
    stack.callback(asyncio.create_task(heartbeat.run()).cancel)
    return server
