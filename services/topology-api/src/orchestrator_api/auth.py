"""Who is calling, and may they? (``AuthenticationMethod``; pure, no FastAPI here).

* ``""`` (orchestrator's default): no credential; everyone may read and change things. Allowed
  only when ``ListenAddress`` is a loopback address (:func:`check_listen_policy`).
* ``none``: the same, chosen explicitly, on any address.
* ``basic``: HTTP basic with ``HTTPAuthUser`` / ``HTTPAuthPassword``; that user may do all.
* ``multi``: as ``basic``, plus the user ``readonly``, who may only read: with any password, as
  in orchestrator, unless ``HTTPAuthReadOnlyPassword`` is set.
* ``proxy``: the user name in the ``AuthUserHeader`` header, set by the gateway; every named
  user may read, users in ``PowerAuthUsers`` (``*`` = all; default: nobody) may change things.
  The header counts only from a peer in ``TrustedProxyCIDRs`` (default: loopback); from any
  other peer the request is refused 401, whoever it names.
* ``token``: ``Authorization: Bearer <token>``; ``APITokens`` gives each token ``read`` or
  ``admin``. The audit names the caller ``token:<fingerprint>`` (:func:`token_name`).

No credential (or a wrong one) → 401 (with a ``WWW-Authenticate`` challenge for basic/multi);
a valid credential without the role → 403.

With ``UseMutualTLS`` a client certificate comes first (:func:`check_client_certificate`): every
request needs one that verified against ``SSLCAFile`` and, when ``SSLValidOUs`` is set, has one
of those organizational units; ``StatusEndpoint`` and the Kubernetes probes (``/health``,
``/ready``: a kubelet presents no certificate) are exempt unless ``StatusOUVerify``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from orchestrator_shared.config import Settings, parse_listen_address
from orchestrator_shared.errors import ConfigError

READ_ONLY_USER = "readonly"
# what a kubelet asks without credentials; like StatusEndpoint, they say only a status
KUBERNETES_PROBES = ("/health", "/ready")


class Role(IntEnum):
    READ = 1
    ADMIN = 2


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: Role


@dataclass(frozen=True, slots=True)
class Denied:
    status: int  # 401 or 403
    message: str
    challenge: str | None = None  # the WWW-Authenticate header value, for 401

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge} if self.challenge else {}


_BASIC_CHALLENGE = 'Basic realm="orchestrator"'


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


def _basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    scheme, _, encoded = _header(headers, "Authorization").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def is_trusted_proxy(settings: Settings, peer: str | None) -> bool:
    """``peer`` (the TCP peer's address; None: unknown) is in ``TrustedProxyCIDRs``."""
    if peer is None:
        return False
    try:
        address = ip_address(peer.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(settings.TrustedProxyCIDRs))


def authenticate(
    settings: Settings, headers: Mapping[str, str], *, peer: str | None
) -> Principal | Denied:
    """The caller's identity and role under the configured method; ``peer``: the address the
    request came from (the TCP peer, never a forwarded-for header)."""
    method = settings.AuthenticationMethod
    if method in ("", "none"):
        return Principal(user="anonymous", role=Role.ADMIN)
    if method in ("basic", "multi"):
        credentials = _basic_credentials(headers)
        if credentials is None:
            return Denied(401, "authentication required (HTTP basic)", _BASIC_CHALLENGE)
        user, password = credentials
        if _equal(user, settings.HTTPAuthUser) and _equal(password, settings.HTTPAuthPassword):
            return Principal(user=user, role=Role.ADMIN)
        if method == "multi" and user == READ_ONLY_USER:
            expected = settings.HTTPAuthReadOnlyPassword
            if not expected or _equal(password, expected):
                return Principal(user=user, role=Role.READ)
        return Denied(401, "wrong user name or password", _BASIC_CHALLENGE)
    if method == "proxy":
        user = _header(headers, settings.AuthUserHeader).strip()
        if not is_trusted_proxy(settings, peer):
            return Denied(
                401,
                f"the {settings.AuthUserHeader} header is believed only from a trusted proxy; "
                f"{peer or 'this peer'} is not in TrustedProxyCIDRs",
            )
        if not user:
            return Denied(401, f"authentication required: no {settings.AuthUserHeader} header")
        powerful = "*" in settings.PowerAuthUsers or user in settings.PowerAuthUsers
        return Principal(user=user, role=Role.ADMIN if powerful else Role.READ)
    # token
    scheme, _, token = _header(headers, "Authorization").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return Denied(401, "authentication required: Authorization: Bearer <token>")
    token = token.strip()
    for known, role in settings.APITokens.items():
        if _equal(token, known):
            return Principal(user=token_name(known), role=Role[role.upper()])
    return Denied(401, "unknown token")


def token_name(token: str) -> str:
    """How a token's caller is named in the audit and in messages: a fingerprint (the first 8
    hex digits of its SHA-256), never any of its characters."""
    return f"token:{hashlib.sha256(token.encode()).hexdigest()[:8]}"


def authorize(
    settings: Settings, headers: Mapping[str, str], needs: Role, *, peer: str | None
) -> Principal | Denied:
    """``authenticate``, then check the role against what the route needs."""
    found = authenticate(settings, headers, peer=peer)
    if isinstance(found, Denied):
        return found
    if found.role < needs:
        return Denied(403, f"{found.user} may not change the topology (needs the admin role)")
    return found


def check_client_certificate(
    settings: Settings, path: str, organizational_units: tuple[str, ...] | None
) -> Denied | None:
    """Whether a request for ``path`` may go on under ``UseMutualTLS``, given the OUs of the
    client certificate that verified against ``SSLCAFile`` (None: the client presented none).
    Denied requests get 401, as orchestrator answers them. ``path`` is the request's, so
    ``StatusEndpoint`` is served below ``URLPrefix``."""
    if not settings.UseMutualTLS:
        return None
    statuses = (settings.StatusEndpoint, *KUBERNETES_PROBES)
    if not settings.StatusOUVerify and any(
        _same_path(path, settings.URLPrefix + status) for status in statuses
    ):
        return None
    if organizational_units is None:
        return Denied(401, "a client certificate signed by the API's CA is required (mutual TLS)")
    valid = settings.SSLValidOUs
    if valid and not set(organizational_units) & set(valid):
        shown = ", ".join(organizational_units) or "none"
        return Denied(
            401, f"the client certificate's organizational units ({shown}) are not in SSLValidOUs"
        )
    return None


def _same_path(path: str, endpoint: str) -> bool:
    return path.rstrip("/") == endpoint.rstrip("/")


def check_listen_policy(settings: Settings) -> None:
    """Refuse to serve an open API on anything but a loopback address (raises ConfigError).
    An API that requires client certificates (``UseMutualTLS``) is not open."""
    if settings.AuthenticationMethod != "" or settings.UseMutualTLS:
        return
    host, _ = parse_listen_address(settings.ListenAddress)
    try:
        loopback = ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            "AuthenticationMethod",
            f"unset, so the API would be open to anyone on {settings.ListenAddress}; set a "
            "method (basic, multi, proxy, token) or 'none' explicitly, require client "
            "certificates (UseMutualTLS), or listen on 127.0.0.1",
        )


def startup_warnings(settings: Settings) -> list[str]:
    """What an operator should hear about the authentication settings when the API starts."""
    if settings.AuthenticationMethod == "proxy" and not settings.PowerAuthUsers:
        return [
            "AuthenticationMethod is proxy and PowerAuthUsers is empty: nobody may change the "
            'topology (list the users, or ["*"] for every user the proxy names)'
        ]
    return []
