"""``orchestrator -c <command> [-i host:port] [-d host:port] [-alias A]``: orchestrator-client.

Flags are read as orchestrator's Go ``flag`` package reads them (:mod:`.flags`): ``-debug``,
``--debug``, ``-config FILE``, ``-config=FILE``, ...; anything that could be read two ways is a
usage error. The command talks to the REST API and prints what orchestrator's client prints: one
``host:port`` per line for lists, the topology text, ``a<b`` for moves. ``dump-config`` and ``help``
are answered here, without the API.

The API: ``--api URL`` (``-U``), else the address of ``-config FILE`` (:mod:`.client_config`),
else ``ORCHESTRATOR_API``, else ``http://127.0.0.1:3000``; ``/api`` is appended when missing.
Credentials: ``-b user:pass`` (a warning on stderr: a command line is readable by every user of
the machine; ``-b user`` takes the password from the environment), else
``ORCHESTRATOR_AUTH_USER``/``ORCHESTRATOR_AUTH_PASSWORD`` (basic), ``ORCHESTRATOR_AUTH_TOKEN``
(bearer), ``ORCHESTRATOR_AUTH_USER_HEADER`` + ``ORCHESTRATOR_AUTH_USER`` (proxy header), else the
basic credentials of ``-config FILE``. ``ORCHESTRATOR_AUTH_PASSWORD_FILE`` and
``ORCHESTRATOR_AUTH_TOKEN_FILE`` name a file holding the password or token instead. An
``https://`` API is verified as :mod:`orchestrator_adapters.tls` says (``ORCHESTRATOR_CA_FILE``,
``CURL_CA_BUNDLE``, the system's CAs; ``ORCHESTRATOR_CLIENT_CERT_FILE`` for mutual TLS).

An error answer (``{"Code": "ERROR"}`` or an HTTP error) is one line on stderr and exit code 1
(``--stack``: the whole chain); bad arguments or a bad configuration file are one line and exit
code 2. ``--debug`` logs each HTTP call to stderr (:mod:`.diagnostics`).
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import httpx

from orchestrator_adapters.tls import CA_FILE_ENV, client_context
from orchestrator_cli import ClientError, UsageError
from orchestrator_cli.client_config import ClientConfig, client_config, dump_config
from orchestrator_cli.commands import (
    COMMANDS,
    DEFAULT_API,
    EXIT_ERROR,
    EXIT_USAGE,
    SYNONYMS,
    Command,
    Invocation,
)
from orchestrator_cli.diagnostics import Trace, error_chain, public_text
from orchestrator_cli.flags import Flags, parse_flags, usage
from orchestrator_shared.config import LoadedSettings, load_settings
from orchestrator_shared.errors import ConfigError, InvalidInstanceKey
from orchestrator_shared.instance_key import InstanceKey

__all__ = [
    "COMMANDS",
    "LOCAL_COMMANDS",
    "ClientError",
    "Command",
    "Invocation",
    "UsageError",
    "run_client",
]

# a password on the command line is visible to every user of the machine (ps, /proc) and kept in
# the shell's history
COMMAND_LINE_WARNING = (
    "{what}: other users of this machine can read a command line (ps) and the shell keeps it; "
    "use ORCHESTRATOR_AUTH_PASSWORD or ORCHESTRATOR_AUTH_PASSWORD_FILE"
)

# commands answered by the client itself, without the API
LOCAL_COMMANDS = frozenset({"dump-config", "help"})
PACKAGE = "orchestrator-topology-api"


def _api_base(api: str, origin: str) -> str:
    """The API's base URL (``/api`` appended when missing); the first of several (as
    orchestrator-client, without its leader check)."""
    words = api.split(maxsplit=1)
    base = words[0].rstrip("/") if words else ""
    try:
        url = httpx.URL(base)
    except httpx.InvalidURL as exc:
        raise UsageError(f"{origin}: not a URL: {public_text(base)} ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(f"{origin}: expected http(s)://host:port, got {public_text(base)!r}")
    return base if base.endswith("/api") else base + "/api"


@dataclass(frozen=True, slots=True)
class _Connection:
    base: str
    auth: httpx.BasicAuth | None
    headers: dict[str, str]

    @property
    def shown(self) -> str:
        """``base`` as messages show it: without user and password."""
        return public_text(self.base)


def secret_from_env(environ: Mapping[str, str], name: str) -> str:
    """``name``'s value, else the content of the file ``<name>_FILE`` names (one trailing
    newline stripped), else ``""``. Both set, or an unreadable file: a usage error."""
    file_name = f"{name}_FILE"
    if environ.get(name) and environ.get(file_name):
        raise UsageError(f"set {name} or {file_name}, not both")
    if not environ.get(file_name):
        return environ.get(name, "")
    try:
        text = Path(environ[file_name]).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{file_name}: cannot read {environ[file_name]}: {exc}") from None
    return text.removesuffix("\n").removesuffix("\r")


def _connection(
    flags: Flags,
    config: ClientConfig | None,
    environ: Mapping[str, str],
    trace: Trace,
    warn: Callable[[str], object],
) -> _Connection:
    """Where to send the calls and with which credentials (see the module docstring)."""
    if flags.given("api"):
        api, origin = flags.get("api"), "--api"
    elif config is not None:
        api, origin = config.api, f"-config {config.source}"
    elif environ.get("ORCHESTRATOR_API"):
        api, origin = environ["ORCHESTRATOR_API"], "ORCHESTRATOR_API"
    else:
        api, origin = DEFAULT_API, "the default"
    base = _api_base(api, origin)
    if origin == "--api" and httpx.URL(base).password:
        warn(COMMAND_LINE_WARNING.format(what="--api carries a password"))
    trace(f"API {public_text(base)} (from {origin})")
    headers: dict[str, str] = {}
    token = secret_from_env(environ, "ORCHESTRATOR_AUTH_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
        trace("credentials: bearer token (ORCHESTRATOR_AUTH_TOKEN)")
    if environ.get("ORCHESTRATOR_AUTH_USER_HEADER") and environ.get("ORCHESTRATOR_AUTH_USER"):
        headers[environ["ORCHESTRATOR_AUTH_USER_HEADER"]] = environ["ORCHESTRATOR_AUTH_USER"]
        trace(f"credentials: user in header {environ['ORCHESTRATOR_AUTH_USER_HEADER']}")
        return _Connection(base, None, headers)
    basic: tuple[str, str] | None = None
    if flags.given("basic"):
        user, colon, password = flags.get("basic").partition(":")
        if colon:
            warn(COMMAND_LINE_WARNING.format(what="-b carries a password"))
        else:  # -b user: the password from the environment or its file
            password = secret_from_env(environ, "ORCHESTRATOR_AUTH_PASSWORD")
        basic, origin = (user, password), "-b"
    elif environ.get("ORCHESTRATOR_AUTH_USER"):
        password = secret_from_env(environ, "ORCHESTRATOR_AUTH_PASSWORD")
        basic, origin = (environ["ORCHESTRATOR_AUTH_USER"], password), "ORCHESTRATOR_AUTH_USER"
    elif config is not None and config.basic is not None and "Authorization" not in headers:
        basic, origin = config.basic, f"-config {config.source}"
    if basic is None or not basic[0]:
        return _Connection(base, None, headers)
    trace(f"credentials: basic, user {basic[0]} (from {origin})")
    return _Connection(base, httpx.BasicAuth(*basic), headers)


def _parse_key(text: str | None, flag: str) -> InstanceKey | None:
    if text is None or text == "":
        return None
    try:
        return InstanceKey.parse(text)
    except InvalidInstanceKey as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _command_name(flags: Flags) -> str:
    if not flags.get("command"):
        raise UsageError("usage: orchestrator -c <command> [-i host:port] [-d host:port]")
    given = flags.get("command")
    return SYNONYMS.get(given) or given.replace("slave", "replica")


def _invocation(flags: Flags, name: str, environ: Mapping[str, str]) -> Invocation:
    instance_text = flags.get("instance", environ.get("ORCHESTRATOR_INSTANCE", ""))
    destination_flag = "-d" if flags.given("destination") else "-s"
    return Invocation(
        command=name,
        instance=None if name == "search" else _parse_key(instance_text, "-i"),
        destination=_parse_key(flags.destination, destination_flag),
        alias=flags.get("alias"),
        owner=flags.get("owner") or environ.get("USER", "") or "orchestrator-cli",
        reason=flags.get("reason"),
        duration=flags.get("duration", ""),  # none: the API's default (MaintenanceExpireMinutes)
        promotion_rule=flags.get("promotion_rule", "prefer"),
        pattern=flags.get("pattern"),
        tag=flags.get("tag"),
        binlog=flags.get("binlog"),
        seconds=flags.get("seconds"),
        instance_text=instance_text,
    )


def _load(
    flags: Flags, environ: Mapping[str, str], *, always: bool, trace: Trace
) -> LoadedSettings | None:
    """``-config FILE`` loaded as the services load it (``always``: the default file too)."""
    if not flags.given("config") and not always:
        return None
    path = flags.get("config") or None
    if flags.given("config") and not path:
        raise ConfigError("config", "-config needs a file name")
    loaded = load_settings(path, environ=environ)
    trace(f"configuration from {loaded.source}")
    for warning in loaded.warnings:
        trace(f"configuration: {warning}")
    return loaded


def run_client(
    argv: Sequence[str],
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    transport: httpx.BaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    env = os.environ if environ is None else environ
    try:
        flags = parse_flags(argv)
    except UsageError as exc:
        err.write(f"orchestrator: {exc}\n")
        return EXIT_USAGE
    trace = Trace(err if flags.on("debug") else None)
    if flags.on("help") or flags.get("command") == "help":
        out.write(usage(sorted(COMMANDS.keys() | LOCAL_COMMANDS)) + "\n")
        return 0
    if flags.on("version"):
        out.write(metadata.version(PACKAGE) + "\n")
        return 0
    try:
        name = _command_name(flags)
        if name == "dump-config":
            loaded = _load(flags, env, always=True, trace=trace)
            assert loaded is not None
            for warning in loaded.warnings:
                err.write(f"orchestrator: warning: {warning}\n")
            out.write(dump_config(loaded) + "\n")
            return 0
        command = COMMANDS.get(name)
        if command is None:
            known = ", ".join(sorted(COMMANDS.keys() | LOCAL_COMMANDS))
            raise UsageError(f"unknown command {flags.get('command')!r}; known: {known}")
        invocation = _invocation(flags, name, env)
        path = command.path(invocation)
        loaded = _load(flags, env, always=False, trace=trace)
        connection = _connection(
            flags,
            client_config(loaded) if loaded is not None else None,
            env,
            trace,
            lambda message: err.write(f"orchestrator: warning: {message}\n"),
        )
    except ConfigError as exc:
        err.write(f"orchestrator: bad configuration: {exc}\n")
        return EXIT_USAGE
    except UsageError as exc:
        err.write(f"orchestrator: {exc}\n")
        return EXIT_USAGE
    method = "POST" if command.mutates else "GET"
    url = f"{connection.base}/{path}"
    trace(f"command {name}: {method} {public_text(url)} (timeout {command.timeout:g} s)")
    response: httpx.Response | None = None
    try:
        verify: ssl.SSLContext | bool = (
            client_context(env) if connection.base.startswith("https:") else True
        )
    except ConfigError as exc:
        err.write(f"orchestrator: {exc}\n")
        return EXIT_USAGE
    try:
        with httpx.Client(
            transport=transport,
            auth=connection.auth,
            headers=connection.headers,
            timeout=command.timeout,
            verify=verify,
            event_hooks=trace.event_hooks(),
        ) as client:
            response = client.request(method, url)
        text = command.output(_decode(response), invocation)
    except httpx.HTTPError as exc:
        trace.failed(exc)
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            hint = f" (to trust the API's certificate, set {CA_FILE_ENV} to its CA's PEM file)"
        message = f"cannot reach the API at {connection.shown}: {exc}{hint}"
        return _failed(message, exc, None, stack=flags.on("stack"), err=err)
    except ClientError as exc:
        return _failed(str(exc), exc, response, stack=flags.on("stack"), err=err)
    if text:
        out.write(text + "\n")
    return 0


def _failed(
    message: str,
    error: BaseException,
    response: httpx.Response | None,
    *,
    stack: bool,
    err: TextIO,
) -> int:
    err.write(
        (error_chain(message, error, response) if stack else f"orchestrator: {message}") + "\n"
    )
    return EXIT_ERROR


def _decode(response: httpx.Response) -> Any:
    try:
        answer = response.json()
    except ValueError:
        raise ClientError(
            f"HTTP {response.status_code}: not JSON: {response.text[:200]!r}"
        ) from None
    if isinstance(answer, dict) and answer.get("Code") == "ERROR":
        raise ClientError(str(answer.get("Message", "error")))
    if response.status_code >= 400:
        raise ClientError(f"HTTP {response.status_code}")
    return answer
