"""How every service connects to a topology server: TLS and the authentication it accepts.

The topology password opens every server of the fleet, so no connection may hand it to a server
that merely asks for it (issue 12, docs/security.md, MySQL):

* **TLS** (``MySQLTopologyUseMutualTLS``, orchestrator's key): ``topology_tls_context``
  builds the one context every topology connection uses. The server certificate is verified
  against ``MySQLTopologySSLCAFile`` (else the system's CAs) and must name the host as it is
  connected to (an IP address connects by its IP SAN); ``MySQLTopologySSLSkipVerify`` encrypts
  without checking either. ``MySQLTopologySSLCertFile``/``PrivateKeyFile`` are the client
  certificate. A server that does not offer TLS when it is required is refused (aiomysql would
  silently go on in clear).
* **No cleartext password without TLS**: :class:`GuardedConnection` refuses a server that asks
  for ``mysql_clear_password`` or ``dialog`` (PAM) on a connection that is not encrypted, in
  the greeting or in an authentication switch, before anything is sent; aiomysql answers such
  a request with the password as it is.

The TLS context comes from :mod:`orchestrator_shared.mysql_tls`.
"""

from __future__ import annotations

import ssl
import struct
from typing import Any

import aiomysql
import pymysql
from pymysql.charset import charset_by_name
from pymysql.connections import MAX_PACKET_LEN
from pymysql.constants import CLIENT, CR
from pymysql.err import OperationalError

# authentication plugins that send the password itself (PAM's ``dialog`` asks for it as text)
CLEARTEXT_PLUGINS = frozenset({"mysql_clear_password", "dialog"})
_FIRST_CLIENT_ERRNO = 2000  # CR_* client errors (lost connection, cannot connect, ...)


class GuardedConnection(aiomysql.Connection):  # type: ignore[misc]
    """aiomysql's connection, refusing to give the password away (see the module docstring).

    Errors are PyMySQL ``OperationalError`` with client error numbers, as aiomysql's own:
    2026 (``CR_SSL_CONNECTION_ERROR``) when TLS is required and not offered, 2059
    (``CR_AUTH_PLUGIN_CANNOT_LOAD``) for a cleartext plugin without TLS.
    """

    _ssl_context: ssl.SSLContext | None  # set by aiomysql from ``ssl=``
    tls_setting = "MySQLTopologyUseMutualTLS"  # named in the errors: how to turn TLS on

    def _refuse_cleartext(self, plugin: str) -> None:
        if plugin in CLEARTEXT_PLUGINS and not self._secure:
            raise OperationalError(
                CR.CR_AUTH_PLUGIN_CANNOT_LOAD,
                f"the server asks for the password in clear text ({plugin}) on a connection "
                f"without TLS; refused (set {self.tls_setting})",
            )

    async def _request_authentication(self) -> None:
        context = self._ssl_context
        if context is None:
            self._refuse_cleartext(self._client_auth_plugin or self._server_auth_plugin)
            await super()._request_authentication()
            return
        if not self.server_capabilities & CLIENT.SSL:
            raise OperationalError(
                CR.CR_SSL_CONNECTION_ERROR,
                f"TLS is required ({self.tls_setting}) but the server does not offer it",
            )
        await self._start_tls(context)
        self._ssl_context = None  # aiomysql's own upgrade is done: it goes on over TLS
        try:
            await super()._request_authentication()
        finally:
            self._ssl_context = context

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        """The SSLRequest packet, then TLS on the same transport. aiomysql's own upgrade moves
        a duplicate of the socket to a new transport and leaks it when the handshake fails
        (a certificate that does not verify); here a failed handshake leaves the original
        transport, which ``_connect`` closes."""
        if int(self.server_version.split(".", 1)[0]) >= 5:
            self.client_flag |= CLIENT.MULTI_RESULTS
        charset_id = charset_by_name(self.charset).id
        self.write_packet(struct.pack("<iIB23s", self.client_flag, MAX_PACKET_LEN, charset_id, b""))
        await self._writer.start_tls(context, server_hostname=self._host)
        self._secure = True

    def close(self) -> None:
        """Close the socket now. A TLS transport's ``close()`` waits for the server's
        close_notify first, and its socket outlives the connection if the event loop stops
        (or the server never answers) meanwhile; MySQL needs no TLS shutdown."""
        if self._writer is not None and self._secure:
            self._writer.transport.abort()
        super().close()

    async def _process_auth(self, plugin_name: bytes, auth_packet: Any) -> Any:
        self._refuse_cleartext(plugin_name.decode("ascii", "replace"))
        return await super()._process_auth(plugin_name, auth_packet)


async def connect_guarded(
    connection_class: type[GuardedConnection] = GuardedConnection, **kwargs: Any
) -> Any:
    """Like ``aiomysql.connect`` (same keyword arguments) with a :class:`GuardedConnection`
    (or a subclass); the socket is closed if the handshake fails or is cancelled."""
    conn = connection_class(**kwargs)
    try:
        await conn._connect()
    except BaseException:
        conn.close()
        raise
    return conn


def describe_mysql_error(exc: BaseException) -> tuple[str, int | None]:
    """One line and the MySQL errno (if any) for a driver exception. A client error (2000 and
    up: cannot connect, TLS refused...) says why, from the exception it was raised from."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args:
        first = exc.args[0]
        if isinstance(first, int) and len(exc.args) > 1:
            text = str(exc.args[1]).splitlines()[0]
            cause = exc.__cause__
            if first >= _FIRST_CLIENT_ERRNO and cause is not None and str(cause):
                text += f": {str(cause).splitlines()[0]}"
            return text, first
        return (str(first).splitlines()[0] if str(first) else type(exc).__name__), None
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text, None
