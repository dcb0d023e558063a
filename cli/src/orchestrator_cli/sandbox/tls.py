"""Checking a sandbox's TLS files before any node starts.

``mariadbd`` refuses files it cannot read ("Failed to setup SSL" in its error log), but it
starts with a certificate its CA does not sign or that does not name 127.0.0.1, and then each
replica retries its connection forever: ``up`` would time out a minute later. Here every check
runs at once, in-process, and fails with one line naming the option (``ssl-ca``,
``ssl-cert``, ``ssl-key``) and the file.
"""

from __future__ import annotations

import ssl

from orchestrator_cli.sandbox.config import HOST, SandboxTLS
from orchestrator_shared.errors import SandboxError

# a handshake between two in-memory ends takes 2-3 round trips; more means something is wrong
_MAX_ROUNDS = 10


def check_files(tls: SandboxTLS) -> None:
    """The CA, the certificate and its key load, and the certificate verifies against the CA
    for ``127.0.0.1``, as each replica checks its source's (``master_ssl_verify_server_cert``)."""
    client = _client_context(tls)
    server = _server_context(tls)
    try:
        _handshake(client, server)
    except ssl.SSLCertVerificationError as exc:
        raise SandboxError(
            f"ssl-cert {tls.cert} does not verify against ssl-ca {tls.ca} for {HOST}: "
            f"{exc.verify_message}"
        ) from None
    except ssl.SSLError as exc:
        raise SandboxError(f"ssl-cert {tls.cert}: a TLS handshake with it fails: {exc}") from None


def _client_context(tls: SandboxTLS) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(tls.ca))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise SandboxError(f"ssl-ca {tls.ca}: not a usable CA certificate: {exc}") from None
    return context


def _server_context(tls: SandboxTLS) -> ssl.SSLContext:
    for option, path in (("ssl-cert", tls.cert), ("ssl-key", tls.key)):
        if not path.is_file():
            raise SandboxError(f"{option} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(tls.cert), str(tls.key))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise SandboxError(
            f"ssl-cert {tls.cert} / ssl-key {tls.key}: not a usable certificate and key pair: {exc}"
        ) from None
    return context


def _handshake(client_context: ssl.SSLContext, server_context: ssl.SSLContext) -> None:
    """A TLS handshake between the two contexts over memory buffers (no socket)."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, from_client, server_hostname=HOST)
    server = server_context.wrap_bio(to_server, from_server, server_side=True)
    pending = [client, server]
    for _ in range(_MAX_ROUNDS):
        for end in list(pending):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                continue
            pending.remove(end)
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if not pending:
            return
    raise ssl.SSLError(f"no handshake after {_MAX_ROUNDS} rounds")
