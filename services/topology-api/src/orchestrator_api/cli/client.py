"""``orchestrator -c <command> [-i host:port] [-d host:port] [-alias A]``: orchestrator-client.

Talks to the REST API (``--api URL`` or ``ORCHESTRATOR_API``, default
``http://127.0.0.1:3000``; ``/api`` is appended when missing) and prints what orchestrator's
client prints: one ``host:port`` per line for lists, the topology text, ``a<b`` for moves.
An error answer (``{"Code": "ERROR"}`` or an HTTP error) is one line on stderr and exit code 1;
bad arguments are one line and exit code 2. Credentials: ``-b user:pass`` or
``ORCHESTRATOR_AUTH_USER``/``ORCHESTRATOR_AUTH_PASSWORD`` (basic), ``ORCHESTRATOR_AUTH_TOKEN``
(bearer), ``ORCHESTRATOR_AUTH_USER_HEADER`` + ``ORCHESTRATOR_AUTH_USER`` (proxy header).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import httpx

from orchestrator_api.cli.commands import (
    COMMANDS,
    DEFAULT_API,
    EXIT_ERROR,
    EXIT_USAGE,
    SYNONYMS,
    ClientError,
    Command,
    Invocation,
    UsageError,
)
from orchestrator_shared.errors import InvalidInstanceKey
from orchestrator_shared.instance_key import InstanceKey

__all__ = ["COMMANDS", "ClientError", "Command", "Invocation", "UsageError", "run_client"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", add_help=False, allow_abbrev=False)
    parser.add_argument("-c", dest="command", required=True)
    parser.add_argument("-i", dest="instance", default=os.environ.get("ORCHESTRATOR_INSTANCE"))
    parser.add_argument("-d", dest="destination")
    parser.add_argument("-alias", "--alias", "-a", dest="alias", default="")
    parser.add_argument("-s", "--pattern", dest="pattern", default="")
    parser.add_argument("--owner", "-owner", dest="owner", default=os.environ.get("USER", ""))
    parser.add_argument("--reason", "-reason", dest="reason", default="")
    # no --duration: the API's default (MaintenanceExpireMinutes)
    parser.add_argument("--duration", "-duration", dest="duration", default="")
    parser.add_argument("--promotion-rule", "-promotion-rule", dest="rule", default="prefer")
    parser.add_argument("--tag", "-tag", "-t", dest="tag", default="")
    parser.add_argument("--binlog", "-binlog", dest="binlog", default="")
    parser.add_argument("--seconds", "-seconds", "-S", dest="seconds", default="")
    parser.add_argument("--api", dest="api", default=os.environ.get("ORCHESTRATOR_API"))
    parser.add_argument("-b", dest="basic", default=None)
    return parser


def _api_base(api: str | None) -> str:
    base = (api or DEFAULT_API).split()[0].rstrip("/")
    return base if base.endswith("/api") else base + "/api"


def _auth_headers(basic: str | None, environ: Mapping[str, str]) -> tuple[Any, dict[str, str]]:
    headers: dict[str, str] = {}
    if environ.get("ORCHESTRATOR_AUTH_TOKEN"):
        headers["Authorization"] = f"Bearer {environ['ORCHESTRATOR_AUTH_TOKEN']}"
    if environ.get("ORCHESTRATOR_AUTH_USER_HEADER") and environ.get("ORCHESTRATOR_AUTH_USER"):
        headers[environ["ORCHESTRATOR_AUTH_USER_HEADER"]] = environ["ORCHESTRATOR_AUTH_USER"]
        return None, headers
    user_pass = basic
    if user_pass is None and environ.get("ORCHESTRATOR_AUTH_USER"):
        user_pass = (
            f"{environ['ORCHESTRATOR_AUTH_USER']}:{environ.get('ORCHESTRATOR_AUTH_PASSWORD', '')}"
        )
    if user_pass:
        user, _, password = user_pass.partition(":")
        return httpx.BasicAuth(user, password), headers
    return None, headers


def _parse_key(text: str | None, flag: str) -> InstanceKey | None:
    if text is None or text == "":
        return None
    try:
        return InstanceKey.parse(text)
    except InvalidInstanceKey as exc:
        raise UsageError(f"{flag}: {exc}") from None


def run_client(
    argv: Sequence[str],
    *,
    out: TextIO = sys.stdout,
    transport: httpx.BaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    env = os.environ if environ is None else environ
    try:
        args, extra = _parser().parse_known_args(list(argv))
    except SystemExit:
        print(
            "orchestrator: usage: orchestrator -c <command> [-i host:port] [-d host:port]",
            file=sys.stderr,
        )
        return EXIT_USAGE
    command_name = SYNONYMS.get(args.command) or str(args.command).replace("slave", "replica")
    command = COMMANDS.get(command_name)
    try:
        if extra:
            raise UsageError(f"unexpected arguments: {' '.join(extra)}")
        if command is None:
            known = ", ".join(sorted(COMMANDS))
            raise UsageError(f"unknown command {args.command!r}; known: {known}")
        invocation = Invocation(
            command=command_name,
            instance=_parse_key(args.instance, "-i"),
            destination=_parse_key(args.destination, "-d"),
            alias=args.alias,
            owner=args.owner or "orchestrator-cli",
            reason=args.reason,
            duration=args.duration,
            promotion_rule=args.rule,
            pattern=args.pattern,
            tag=args.tag,
            binlog=args.binlog,
            seconds=args.seconds,
            instance_text=args.instance or "",
        )
        path = command.path(invocation)
    except UsageError as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    auth, headers = _auth_headers(args.basic, env)
    base = _api_base(args.api)
    try:
        with httpx.Client(
            transport=transport, auth=auth, headers=headers, timeout=command.timeout
        ) as client:
            if command.mutates:
                response = client.post(f"{base}/{path}")
            else:
                response = client.get(f"{base}/{path}")
        answer = _decode(response)
        text = command.output(answer, invocation)
    except httpx.HTTPError as exc:
        print(f"orchestrator: cannot reach the API at {base}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ClientError as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if text:
        out.write(text + "\n")
    return 0


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
