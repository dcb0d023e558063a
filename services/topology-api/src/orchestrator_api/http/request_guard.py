"""Requests a browser was tricked into sending (pure, no FastAPI here; docs/security.md).

* DNS rebinding: a page on ``evil.example`` re-points its own name at 127.0.0.1 and reads or
  drives the API as a same-origin page. Its requests carry ``Host: evil.example``, so only a
  Host in :func:`allowed_hosts` is served (:func:`check_host`).
* Cross-site requests: any page can send a GET (``<img src>``) or a form POST to the API, with
  the operator's cookies or basic-auth credentials. A mutation is refused when the browser says
  the request is cross-site (``Sec-Fetch-Site``) or comes from another origin (``Origin``)
  (:func:`check_same_origin`). Clients that are not browsers (orchestrator-client, curl) send
  neither header and are served.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from orchestrator_api.auth import Denied
from orchestrator_shared.config import Settings, parse_listen_address

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# what a browser says about a request it did not make on a page's behalf, or made for the
# API's own pages (the web UI)
_SAME_ORIGIN_SITES = frozenset({"same-origin", "none"})
_ALL_INTERFACES = frozenset({"", "0.0.0.0", "::"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The host names a request may be addressed to, lower case; None: any (``*``)."""
    configured = {host.strip().lower().strip("[]") for host in settings.HTTPAllowedHosts}
    if "*" in configured:
        return None
    listen_host, _ = parse_listen_address(settings.ListenAddress)
    configured.add(listen_host.lower().strip("[]"))
    configured -= _ALL_INTERFACES  # no client addresses a request to them
    return frozenset(configured | LOOPBACK_HOSTS)


def host_name(host_header: str) -> str:
    """``Host`` without its port, lower case, IPv6 without brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host  # a bare name, or an IPv6 address a client sent without brackets


def check_host(host_header: str | None, allowed: frozenset[str] | None) -> Denied | None:
    """Refuse a request addressed to a name this API does not answer to. A request without a
    Host header (HTTP/1.0, not a browser's) is served."""
    if allowed is None or host_header is None:
        return None
    name = host_name(host_header)
    if name in allowed:
        return None
    return Denied(
        403,
        f"this API does not answer to the host name {name!r} (Host header); add it to "
        "HTTPAllowedHosts if a gateway or service name reaches the API under it",
    )


def _host_and_port(netloc: str) -> tuple[str, int | None]:
    """``host[:port]`` → (host, the port given or None); ("", None) when unparsable."""
    parsed = urlsplit(f"//{netloc.strip().lower()}")
    try:
        return (parsed.hostname or "", parsed.port)
    except ValueError:
        return ("", None)


def _is_same_origin(origin: str, scheme: str, host_header: str) -> bool:
    """``origin`` names the host and port the request was sent to. The scheme is left out:
    behind a gateway that ends TLS, the page's https origin reaches the API over http under
    the same Host (and then neither side names a port)."""
    parsed = urlsplit(origin)
    if parsed.scheme not in _DEFAULT_PORTS:
        return False  # "null" (a sandboxed page, a file), or something odd
    origin_host, origin_port = _host_and_port(parsed.netloc)
    own_host, own_port = _host_and_port(host_header)
    if not origin_host or origin_host != own_host:
        return False
    if origin_port is None and own_port is None:
        return True
    return (origin_port or _DEFAULT_PORTS[parsed.scheme]) == (
        own_port or _DEFAULT_PORTS.get(scheme)
    )


def check_same_origin(
    headers: Mapping[str, str], *, scheme: str, host_header: str | None
) -> Denied | None:
    """Refuse a browser's cross-site request: ``Sec-Fetch-Site`` other than ``same-origin`` or
    ``none``, or an ``Origin`` other than the request's own (``scheme://Host``). ``headers``
    with lower-case names (Starlette's)."""
    site = headers.get("sec-fetch-site", "").strip().lower()
    if site and site not in _SAME_ORIGIN_SITES:
        return Denied(
            403,
            f"a {site} request from a browser may not change the topology (Sec-Fetch-Site); "
            "use the API's own pages or a client that is not a browser",
        )
    origin = headers.get("origin")
    if origin is None or (host_header is not None and _is_same_origin(origin, scheme, host_header)):
        return None
    return Denied(
        403,
        f"a request from the origin {origin.strip()!r} may not change the topology (Origin "
        "does not match the API's own)",
    )


def check_mutation_method(settings: Settings, method: str) -> Denied | None:
    """``HTTPRefuseGETMutations``: mutations on POST only."""
    if settings.HTTPRefuseGETMutations and method.upper() in ("GET", "HEAD"):
        return Denied(405, "this API changes things on POST only (HTTPRefuseGETMutations)")
    return None
