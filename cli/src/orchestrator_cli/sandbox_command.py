"""``orchestrator sandbox up|down|status``: a local MariaDB replication sandbox.

The nodes started by ``up`` outlive the command; ``down`` (from any later shell) stops them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator_cli import Subcommands
from orchestrator_cli.sandbox import Sandbox, SandboxTLS
from orchestrator_shared.errors import SandboxError

DEFAULT_DIR = Path(".sandbox")
DEFAULT_NODES = 4
DEFAULT_BASE_PORT = 22306


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 1..65535, got {value}")
    return value


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "sandbox",
        help="a local MariaDB replication sandbox",
        description="Build, inspect and remove a local MariaDB replication sandbox "
        "(see docs/sandbox.md).",
    )
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True

    up = actions.add_parser("up", help="build and start a sandbox, print its tree")
    _add_dir(up)
    add_shape_arguments(up)
    up.add_argument(
        "--base-port",
        type=_port,
        default=DEFAULT_BASE_PORT,
        help=f"port of node 0; node i listens on base+i (default {DEFAULT_BASE_PORT})",
    )
    up.add_argument(
        "--chain", action="store_true", help="node i replicates from node i-1 (A->B->C...)"
    )
    up.add_argument("--semi-sync", action="store_true", help="enable semi-synchronous replication")
    tls = up.add_argument_group(
        "TLS", "serve TLS and replicate over verified TLS (the three options go together)"
    )
    tls.add_argument("--ssl-ca", type=Path, metavar="FILE", help="the CA certificate (PEM)")
    tls.add_argument(
        "--ssl-cert", type=Path, metavar="FILE", help="the nodes' certificate (PEM, for 127.0.0.1)"
    )
    tls.add_argument("--ssl-key", type=Path, metavar="FILE", help="its private key (PEM)")
    up.set_defaults(handler=_up)

    down = actions.add_parser("down", help="stop every node of a sandbox")
    _add_dir(down)
    down.set_defaults(handler=_down)

    status = actions.add_parser("status", help="print the live replication tree")
    _add_dir(status)
    status.set_defaults(handler=_status)


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """``--nodes``, or ``--galera N [--async-replicas N]``: what a sandbox is made of (``sandbox
    up`` and ``orchestrator up --sandbox``); read back with :func:`sandbox_shape`."""
    parser.add_argument(
        "--nodes",
        type=_count(1),
        help=f"number of nodes, node 0 the master (default {DEFAULT_NODES})",
    )
    galera = parser.add_argument_group(
        "Galera", "a MariaDB Galera cluster instead of a master (instead of --nodes)"
    )
    galera.add_argument(
        "--galera",
        type=_count(1),
        metavar="N",
        help="nodes 0..N-1 form a Galera cluster (each also uses 3 ports after the nodes')",
    )
    galera.add_argument(
        "--async-replicas",
        type=_count(0),
        metavar="N",
        help="with --galera: N async GTID replicas of node 0 (default 0)",
    )


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"the sandbox directory (default {DEFAULT_DIR})",
    )


def _tls_files(args: argparse.Namespace) -> SandboxTLS | None:
    """``--ssl-ca/--ssl-cert/--ssl-key`` as one :class:`SandboxTLS`: all three or none."""
    given = {"--ssl-ca": args.ssl_ca, "--ssl-cert": args.ssl_cert, "--ssl-key": args.ssl_key}
    missing = [flag for flag, value in given.items() if value is None]
    if len(missing) == len(given):
        return None
    if missing:
        raise SandboxError(
            f"--ssl-ca, --ssl-cert and --ssl-key go together: {', '.join(missing)} missing"
        )
    return SandboxTLS(ca=args.ssl_ca, cert=args.ssl_cert, key=args.ssl_key)


def sandbox_shape(args: argparse.Namespace) -> tuple[int, int]:
    """``(nodes, galera)`` from ``--nodes`` or ``--galera [--async-replicas]``."""
    if args.galera is None:
        if args.async_replicas is not None:
            raise SandboxError("--async-replicas goes with --galera")
        return (DEFAULT_NODES if args.nodes is None else args.nodes), 0
    if args.nodes is not None:
        raise SandboxError("--nodes and --galera do not go together (use --async-replicas)")
    return args.galera + (args.async_replicas or 0), args.galera


def _up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    nodes, galera = sandbox_shape(args)
    sandbox = Sandbox.up(
        args.dir,
        nodes=nodes,
        base_port=args.base_port,
        chain=args.chain,
        semi_sync=args.semi_sync,
        tls=_tls_files(args),
        galera=galera,
    )
    elapsed = time.monotonic() - started
    with_tls = "" if sandbox.tls is None else f" with TLS (CA {sandbox.tls.ca})"
    shape = f"{len(sandbox.nodes)} nodes"
    if galera:
        shape = f"a {galera}-node Galera cluster and {nodes - galera} async replicas"
    print(
        f"sandbox up in {elapsed:.1f} s: {shape} of MariaDB {sandbox.version} "
        f"in {sandbox.directory}{with_tls}"
    )
    print(sandbox.status())
    print(f"stop it with: orchestrator sandbox down --dir {sandbox.directory}")
    return 0


def _down(args: argparse.Namespace) -> int:
    sandbox = Sandbox.load(args.dir)
    sandbox.down()
    print(f"sandbox in {sandbox.directory} is down")
    return 0


def _status(args: argparse.Namespace) -> int:
    print(Sandbox.load(args.dir).status())
    return 0
