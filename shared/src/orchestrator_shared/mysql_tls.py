"""TLS client contexts for MySQL: the topology servers' and the MySQL store's.

:func:`client_tls_context` is the one builder; a file it cannot use is a :class:`ConfigError`
naming the setting, so a service stops at startup with one line (``load_settings`` builds the
topology context once to check the files).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from orchestrator_shared.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator_shared.config import Settings


def client_tls_context(
    prefix: str,
    *,
    ca_file: str,
    cert_file: str,
    key_file: str,
    skip_verify: bool,
    setting_names: tuple[str, str] | None = None,
) -> ssl.SSLContext:
    """A TLS client context (TLS 1.2 and up; the server certificate checked and naming the
    host unless ``skip_verify``); ``prefix`` names the settings in errors (``MySQLTopology`` ->
    ``MySQLTopologySSLCAFile: cannot use ...``), or ``setting_names`` (CA, certificate) do."""
    ca_setting, cert_setting = setting_names or (f"{prefix}SSLCAFile", f"{prefix}SSLCertFile")
    # with a CA file, that CA alone is trusted (as orchestrator does), else the system's CAs
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) if ca_file else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(ca_setting, f"cannot use {ca_file}: {exc}") from None
    if skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                cert_setting, f"cannot use {cert_file} with {key_file}: {exc}"
            ) from None
    return context


def topology_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The context of every topology connection; None when ``MySQLTopologyUseMutualTLS`` is
    off. :class:`ConfigError` for a file it cannot use."""
    if not settings.MySQLTopologyUseMutualTLS:
        return None
    return client_tls_context(
        "MySQLTopology",
        ca_file=settings.MySQLTopologySSLCAFile,
        cert_file=settings.MySQLTopologySSLCertFile,
        key_file=settings.MySQLTopologySSLPrivateKeyFile,
        skip_verify=settings.MySQLTopologySSLSkipVerify,
    )
