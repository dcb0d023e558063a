"""Mutual TLS (``UseMutualTLS``): which client certificate each connection presented, and the
gate answering 401 to requests without an acceptable one (:func:`auth.check_client_certificate`).

uvicorn does not hand the TLS peer certificate to the application. So its HTTP protocol is
subclassed: once a connection is made (the handshake is over by then, and any certificate the
client presented has verified against ``SSLCAFile``), it records the certificate's
organizational units under the connection's remote address, until the connection is lost. The
gate, wrapped around the application, reads them by the request's ``client`` address. A request
whose address has no record counts as presenting no certificate: it is refused, never let
through. uvicorn's proxy-header rewriting of ``client`` is off under mutual TLS for that reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from orchestrator_adapters import tls
from orchestrator_api import wire
from orchestrator_api.auth import check_client_certificate
from orchestrator_shared.config import Settings

Address = tuple[str, int]
OrganizationalUnits = tuple[str, ...] | None  # None: no certificate


def organizational_units(peer_certificate: Mapping[str, Any] | None) -> OrganizationalUnits:
    """The OUs in the subject of a certificate as ``SSLSocket.getpeercert()`` decodes it."""
    if not peer_certificate:
        return None
    return tuple(
        str(value)
        for rdn in peer_certificate.get("subject", ())
        for name, value in rdn
        if name == "organizationalUnitName"
    )


class _Peer:
    __slots__ = ("units",)

    def __init__(self, units: OrganizationalUnits) -> None:
        self.units = units


class PeerCertificates:
    """Remote address of each open connection → the OUs of its client certificate."""

    def __init__(self) -> None:
        self._peers: dict[Address, _Peer] = {}

    def lookup(self, address: Address | None) -> OrganizationalUnits:
        peer = self._peers.get(address) if address is not None else None
        return peer.units if peer is not None else None

    def protocol(self) -> type[asyncio.Protocol]:
        """uvicorn's httptools protocol, recording each connection here."""
        peers = self._peers

        class RecordingProtocol(HttpToolsProtocol):
            _peer: _Peer | None = None

            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                super().connection_made(transport)
                if self.client is not None:
                    self._peer = _Peer(organizational_units(transport.get_extra_info("peercert")))
                    peers[self.client] = self._peer

            def connection_lost(self, exc: Exception | None) -> None:
                # only this connection's record: the address may belong to a newer one by now
                if self.client is not None and peers.get(self.client) is self._peer:
                    del peers[self.client]
                super().connection_lost(exc)

        return RecordingProtocol

    def __len__(self) -> int:
        return len(self._peers)


class ClientCertificateGate:
    """ASGI middleware: a request goes on only with an acceptable client certificate."""

    def __init__(self, app: ASGIApp, *, settings: Settings, peers: PeerCertificates) -> None:
        self.app = app
        self.settings = settings
        self.peers = peers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        units = self.peers.lookup((str(client[0]), int(client[1])) if client else None)
        denied = check_client_certificate(self.settings, str(scope["path"]), units)
        if denied is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            answer = JSONResponse(wire.error_envelope(denied.message), status_code=denied.status)
            await answer(scope, receive, send)


def serving(app: ASGIApp, settings: Settings) -> tuple[ASGIApp, dict[str, Any]]:
    """The application to serve and the ``uvicorn.Config`` keyword arguments for the API's TLS
    (none without ``UseSSL``; with ``UseMutualTLS``, the gate and the recording protocol)."""
    options = tls.uvicorn_options(settings)
    if not settings.UseMutualTLS:
        return app, options
    peers = PeerCertificates()
    gated = ClientCertificateGate(app, settings=settings, peers=peers)
    return gated, {**options, "http": peers.protocol(), "proxy_headers": False}
