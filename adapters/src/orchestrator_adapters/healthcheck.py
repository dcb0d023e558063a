"""``orchestrator-healthcheck [--cafile PEM] [URL]``: the container health check of every
service (docker-compose.yml's ``healthcheck``, the image's ``HEALTHCHECK``).

The service images carry Python but no curl or wget, so the check is this console script: one
GET of ``URL`` (default: ``$ORCHESTRATOR_HEALTHCHECK_URL``, which the image's ``HEALTHCHECK``
uses), exit 0 on a 2xx answer, else exit 1 with one line on stderr saying what was wrong (the
status and the start of the body, or why nothing answered); a bad command line is exit 2. An
``https://`` URL is verified as ``orchestrator -c`` verifies the API (:mod:`.tls`): against
``--cafile``, else ``ORCHESTRATOR_CA_FILE``, else the system's CAs. No redirect is followed and
no credential is sent: the health endpoints answer anyone.
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import sys
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from orchestrator_adapters.tls import CA_FILE_ENV, client_context
from orchestrator_shared.errors import ConfigError

URL_ENV = "ORCHESTRATOR_HEALTHCHECK_URL"
DEFAULT_TIMEOUT_SECONDS = 5.0
PROGRAM = "orchestrator-healthcheck"
_SHOWN_BODY = 200  # characters of an unhealthy answer's body put on the line


class Unhealthy(Exception):
    """The one line the check prints when it fails."""


def check(url: str, *, environ: Mapping[str, str], timeout: float) -> str:
    """GET ``url``; its status line when it answers 2xx, else :class:`Unhealthy`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unhealthy(f"{url!r} is not an http:// or https:// URL")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        try:
            context = client_context(environ)
        except ConfigError as exc:
            raise Unhealthy(str(exc)) from None
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        answer = connection.getresponse()
        body = answer.read(_SHOWN_BODY * 4).decode("utf-8", errors="replace")
    except ssl.SSLError as exc:
        raise Unhealthy(f"{url}: TLS failed: {exc.reason or exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise Unhealthy(f"{url}: no answer: {exc or type(exc).__name__}") from None
    finally:
        connection.close()
    if not 200 <= answer.status < 300:
        shown = " ".join(body.split())[:_SHOWN_BODY]
        raise Unhealthy(f"{url} answered {answer.status}: {shown}")
    return f"{url} answered {answer.status}"


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Exit 0 when URL answers 2xx, else 1 with one line saying why.",
    )
    parser.add_argument("url", nargs="?", help=f"what to GET (default: ${URL_ENV})")
    parser.add_argument("--cafile", help=f"PEM file of the CA for https:// (or ${CA_FILE_ENV})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    url = arguments.url or os.environ.get(URL_ENV, "")
    if not url:
        print(f"{PROGRAM}: no URL: give one or set {URL_ENV}", file=sys.stderr)
        return 2
    environ = dict(os.environ)
    if arguments.cafile:
        environ[CA_FILE_ENV] = arguments.cafile
    try:
        print(check(url, environ=environ, timeout=arguments.timeout))
    except Unhealthy as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 1
    return 0
