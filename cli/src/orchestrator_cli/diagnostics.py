"""``--debug`` and ``--stack`` of ``orchestrator -c``.

``--debug`` writes what the command does to stderr, one ``orchestrator: debug:`` line each:
where the API address and credentials came from (never a password or token), the command's
route, and every HTTP call with its method, URL (without credentials), status and time.

``--stack`` replaces the one-line error with the whole chain: the message, the HTTP status and
body when the API answered, each cause (``caused by ...``), then the Python stack.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

import httpx

from orchestrator_cli.client_config import mask_text

PREFIX = "orchestrator"


def public_url(url: httpx.URL) -> str:
    """``url`` without its user and password."""
    return str(url.copy_with(username=None, password=None))


def public_text(url: str) -> str:
    """A URL given as text, without its password (for messages)."""
    try:
        return public_url(httpx.URL(url))
    except httpx.InvalidURL:
        return mask_text(url)


class Trace:
    """Debug lines to ``stream``; nothing when ``stream`` is None."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._started: dict[int, float] = {}

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def __call__(self, text: str) -> None:
        if self._stream is not None:
            self._stream.write(f"{PREFIX}: debug: {text}\n")

    def event_hooks(self) -> dict[str, list[Callable[[Any], None]]]:
        """httpx ``event_hooks`` that log every request the client sends."""
        if not self.enabled:
            return {}
        return {"request": [self._request], "response": [self._response]}

    def _request(self, request: httpx.Request) -> None:
        self._started[id(request)] = time.perf_counter()
        self(f"{request.method} {public_url(request.url)}")

    def _elapsed(self, request: httpx.Request) -> str:
        started = self._started.pop(id(request), None)
        if started is None:
            return "?"
        return f"{(time.perf_counter() - started) * 1000:.1f} ms"

    def _response(self, response: httpx.Response) -> None:
        request = response.request
        self(
            f"{request.method} {public_url(request.url)} -> {response.status_code} "
            f"{response.reason_phrase} in {self._elapsed(request)}"
        )

    def failed(self, error: httpx.HTTPError) -> None:
        """A call that got no answer (refused, timed out, ...)."""
        try:
            request = error.request
        except RuntimeError:
            self(f"HTTP call failed: {type(error).__name__}: {error}")
            return
        self(
            f"{request.method} {public_url(request.url)} -> no answer after "
            f"{self._elapsed(request)}: {type(error).__name__}: {error}"
        )


def causes(error: BaseException) -> list[BaseException]:
    """The exceptions behind ``error``, nearest first (explicit causes, else the context)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 20:
        following = current.__cause__
        if following is None and not current.__suppress_context__:
            following = current.__context__
        if following is None or following in chain or following is error:
            break
        chain.append(following)
        current = following
    return chain


def error_chain(message: str, error: BaseException, response: httpx.Response | None) -> str:
    """What ``--stack`` prints for ``error``: the one line, then everything behind it."""
    lines = [f"{PREFIX}: {message}"]
    if response is not None:
        request = response.request
        lines.append(
            f"  HTTP {response.status_code} {response.reason_phrase} from {request.method} "
            f"{public_url(request.url)}"
        )
        lines.append(f"  response body: {response.text}")
    for cause in causes(error):
        lines.append(f"  caused by {type(cause).__module__}.{type(cause).__qualname__}: {cause}")
    lines.append("  stack:")
    for block in traceback.format_exception(error):
        lines.extend(f"    {line}" for line in block.rstrip("\n").splitlines())
    return "\n".join(lines)
