"""How every service authenticates to NATS and encrypts the connection (docs/security.md, The bus).

:func:`nats_auth` reads the ``NATS*`` settings into a :class:`NatsAuth` once, at start-up
(``load_settings`` calls it): a file that cannot be used is a :class:`ConfigError` naming the
setting, so a service stops with one line rather than failing on its first reconnect. With none
of them set (``orchestrator up``, the tests' stack) the connection is anonymous, as before.

:func:`redact_url` hides the ``user:password@`` (or ``token@``) of a server URL: every log line
and error that names a NATS server goes through it.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import nkeys  # type: ignore[import-untyped]  # nats-py[nkeys], for nkey authentication

from orchestrator_shared.errors import ConfigError
from orchestrator_shared.mysql_tls import client_tls_context

if TYPE_CHECKING:
    from orchestrator_shared.config import Settings

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^@/\s]*@")


def redact_url(url: str) -> str:
    """``nats://alice:s3cret@host:4222`` -> ``nats://***@host:4222``; other URLs unchanged."""
    return _USERINFO.sub(r"\g<scheme>***@", url)


def redact_urls(urls: Iterable[str]) -> str:
    """The servers as one comma-separated, redacted string (for logs and errors)."""
    return ", ".join(redact_url(url) for url in urls)


def scrub(text: str, servers: Sequence[str], secrets: Iterable[str] = ()) -> str:
    """``text`` with each server URL redacted and every secret (a URL's password, the
    configured password) replaced by ``***``: for the error text a client library gives."""
    for url in servers:
        text = text.replace(url, redact_url(url))
    for secret in (*secrets, *_url_secrets(servers)):
        if secret:
            text = text.replace(secret, "***")
    return text


def _url_secrets(servers: Sequence[str]) -> list[str]:
    found = []
    for url in servers:
        match = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://([^@/\s]*)@", url)
        if match:
            user, _, password = match.group(1).partition(":")
            found.append(password or user)  # a lone token@ is the secret itself
    return found


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """The keyword arguments of ``nats.connect`` that authenticate and encrypt; empty = none."""

    user: str = ""
    password: str = field(default="", repr=False)
    creds_file: str = ""
    nkey_seed_file: str = ""
    tls: ssl.SSLContext | None = None

    def connect_options(self) -> dict[str, object]:
        options: dict[str, object] = {}
        if self.user:
            options["user"] = self.user
            options["password"] = self.password
        if self.creds_file:
            options["user_credentials"] = self.creds_file
        if self.nkey_seed_file:
            options["nkeys_seed"] = self.nkey_seed_file
        if self.tls is not None:
            options["tls"] = self.tls
        return options

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.password,) if self.password else ()


ANONYMOUS = NatsAuth()


def nats_auth(settings: Settings) -> NatsAuth:
    """The settings' NATS credentials and TLS, every file checked (ConfigError otherwise)."""
    if settings.NATSCredsFile and settings.NATSNKeySeedFile:
        raise ConfigError("NATSNKeySeedFile", "set NATSCredsFile or NATSNKeySeedFile, not both")
    if settings.NATSPassword and not settings.NATSUser:
        raise ConfigError("NATSPassword", "NATSUser must be set with it")
    if settings.NATSCredsFile:
        _check_creds(settings.NATSCredsFile)
    if settings.NATSNKeySeedFile:
        _check_seed(settings.NATSNKeySeedFile)
    return NatsAuth(
        user=settings.NATSUser,
        password=settings.NATSPassword,
        creds_file=settings.NATSCredsFile,
        nkey_seed_file=settings.NATSNKeySeedFile,
        tls=_tls_context(settings),
    )


def _read(setting: str, path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.__class__.__name__}") from None


def _check_creds(path: str) -> None:
    text = _read("NATSCredsFile", path)
    if "BEGIN NATS USER JWT" not in text or "BEGIN USER NKEY SEED" not in text:
        raise ConfigError(
            "NATSCredsFile", f"{path} is not a NATS credentials file (a user JWT and its seed)"
        )


def _check_seed(path: str) -> None:
    seed = _read("NATSNKeySeedFile", path).strip()
    try:
        nkeys.from_seed(bytearray(seed.encode())).wipe()
    except Exception:  # nkeys raises its own errors and binascii's for any bad seed
        raise ConfigError(
            "NATSNKeySeedFile", f"{path} does not hold an nkey seed (SU...)"
        ) from None


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS when a CA or a client certificate is configured (``tls://`` URLs alone get
    nats-py's default context, the system's CAs)."""
    ca_file, cert_file, key_file = (
        settings.NATSCAFile,
        settings.NATSCertFile,
        settings.NATSKeyFile,
    )
    if not (ca_file or cert_file or key_file):
        return None
    if key_file and not cert_file:
        raise ConfigError("NATSKeyFile", "NATSCertFile must be set with it")
    return client_tls_context(
        "NATS",
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        skip_verify=False,
        setting_names=("NATSCAFile", "NATSCertFile"),
    )
