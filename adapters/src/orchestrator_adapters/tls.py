"""TLS for the API: the server's side from orchestrator's settings, and how clients trust it.

Server (``UseSSL``, ``SSLCertFile``, ``SSLPrivateKeyFile``, ``SSLPrivateKeyPassword``,
``UseMutualTLS``, ``SSLCAFile``): :func:`check_server_files` reads the files the way the server
will when topology-api (or ``orchestrator up``) starts, so a missing or unreadable file, a file
holding no PEM certificate or key, an encrypted key without its passphrase, or a key that does
not belong to the certificate stops start-up with one line naming the setting, before anything
listens. :func:`uvicorn_options` hands the same files to uvicorn. TLS 1.2 is the oldest version
served (Python's default for servers), with forward-secret AEAD ciphers only.

Mutual TLS asks for a client certificate without requiring it in the handshake, as orchestrator
does: one that is presented must verify against ``SSLCAFile`` or the handshake fails; a request
without one is answered 401 by :mod:`orchestrator_api.http.client_certificates`, except on
``StatusEndpoint`` (health checks of load balancers).

Clients (``orchestrator -c``): an ``https://`` API is verified against ``ORCHESTRATOR_CA_FILE``,
else curl's ``CURL_CA_BUNDLE`` (what orchestrator-client, a curl script, honours), else the
system's CAs (OpenSSL's ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` honoured). As curl does, a
certificate in that file is trusted on its own (so the server's own certificate may be given).
``ORCHESTRATOR_CLIENT_CERT_FILE`` (+ ``ORCHESTRATOR_CLIENT_KEY_FILE`` unless the key is in the
same file) is the client certificate presented to an API with ``UseMutualTLS``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from orchestrator_shared.config import Settings
from orchestrator_shared.errors import ConfigError

CA_FILE_ENV = "ORCHESTRATOR_CA_FILE"
CURL_CA_ENV = "CURL_CA_BUNDLE"
CLIENT_CERT_ENV = "ORCHESTRATOR_CLIENT_CERT_FILE"
CLIENT_KEY_ENV = "ORCHESTRATOR_CLIENT_KEY_FILE"

# TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are always on)
SERVER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL"


class _EncryptedKey(Exception):
    """The key asked for a passphrase that was not given."""


def _readable(path: str, setting: str) -> None:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None


def _load_trust(context: ssl.SSLContext, path: str, setting: str) -> None:
    """Add the certificates in ``path`` to what ``context`` trusts."""
    _readable(path, setting)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise ConfigError(setting, f"{path} holds no PEM certificate") from None


def _load_chain(
    context: ssl.SSLContext,
    cert: tuple[str, str],
    key: tuple[str, str],
    password: tuple[str, str] | None,
) -> None:
    """Load a certificate and its key, each given as (path, the setting naming it)."""
    (cert_path, cert_setting), (key_path, key_setting) = cert, key
    _load_trust(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert_path, cert_setting)
    _readable(key_path, key_setting)
    asked: list[bool] = []

    def passphrase() -> str:
        asked.append(True)
        if password is None or not password[0]:
            raise _EncryptedKey
        return password[0]

    try:
        context.load_cert_chain(cert_path, key_path, passphrase)
    except _EncryptedKey:
        hint = (
            f": set its passphrase in {password[1]}"
            if password is not None
            else " (give it decrypted: openssl pkey -in KEY -out DECRYPTED)"
        )
        raise ConfigError(key_setting, f"{key_path} is encrypted{hint}") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                key_setting,
                f"the key in {key_path} does not match the certificate in {cert_path} "
                f"({cert_setting})",
            ) from None
        if asked and password is not None:
            raise ConfigError(password[1], f"does not decrypt {key_path}") from None
        raise ConfigError(key_setting, f"{key_path} holds no PEM private key") from None


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The API's TLS context as configured (None without ``UseSSL``); raises
    :class:`ConfigError` naming the setting whose file is wrong."""
    if not settings.UseSSL:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(SERVER_CIPHERS)
    _load_chain(
        context,
        (settings.SSLCertFile, "SSLCertFile"),
        (settings.SSLPrivateKeyFile, "SSLPrivateKeyFile"),
        (settings.SSLPrivateKeyPassword, "SSLPrivateKeyPassword"),
    )
    if settings.UseMutualTLS:
        _load_trust(context, settings.SSLCAFile, "SSLCAFile")
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def check_server_files(settings: Settings) -> None:
    """Start-up check of the HTTPS files (see the module docstring)."""
    server_context(settings)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments serving :func:`server_context` ({} without TLS)."""
    if not settings.UseSSL:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": settings.SSLCertFile,
        "ssl_keyfile": settings.SSLPrivateKeyFile,
        "ssl_ciphers": SERVER_CIPHERS,
    }
    if settings.SSLPrivateKeyPassword:
        options["ssl_keyfile_password"] = settings.SSLPrivateKeyPassword
    if settings.UseMutualTLS:
        options["ssl_cert_reqs"] = ssl.CERT_OPTIONAL
        options["ssl_ca_certs"] = settings.SSLCAFile
    return options


def api_scheme(settings: Settings) -> str:
    return "https" if settings.UseSSL else "http"


# --- clients ----------------------------------------------------------------------------------


def _client_certificate(context: ssl.SSLContext, environ: Mapping[str, str]) -> None:
    cert, key = environ.get(CLIENT_CERT_ENV, ""), environ.get(CLIENT_KEY_ENV, "")
    if key and not cert:
        raise ConfigError(CLIENT_KEY_ENV, f"needs {CLIENT_CERT_ENV}, the certificate it goes with")
    if cert:
        _load_chain(context, (cert, CLIENT_CERT_ENV), (key or cert, CLIENT_KEY_ENV), None)


def client_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """How ``orchestrator -c`` verifies an ``https://`` API (see the module docstring); raises
    :class:`ConfigError` naming the environment variable at fault."""
    variable = next((name for name in (CA_FILE_ENV, CURL_CA_ENV) if environ.get(name)), None)
    if variable is None:
        context = ssl.create_default_context()  # the system's CAs
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # that file's alone, as curl
        _load_trust(context, environ[variable], variable)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    _client_certificate(context, environ)
    return context


def local_api_context(settings: Settings, environ: Mapping[str, str]) -> ssl.SSLContext:
    """How ``orchestrator up`` reaches the API it started on a loopback address: it trusts
    exactly the configured certificate (``SSLCertFile``), whatever host name that names, and
    presents the environment's client certificate (needed with ``UseMutualTLS``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    _load_trust(context, settings.SSLCertFile, "SSLCertFile")
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    _client_certificate(context, environ)
    if settings.UseMutualTLS and not environ.get(CLIENT_CERT_ENV):
        raise ConfigError(
            "UseMutualTLS",
            f"orchestrator up follows the topology through the API, so it needs a client "
            f"certificate: set {CLIENT_CERT_ENV} (and {CLIENT_KEY_ENV})",
        )
    return context
