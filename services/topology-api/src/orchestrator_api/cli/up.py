"""``orchestrator up``: run the stack locally (see :mod:`orchestrator_api.local_stack`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

from orchestrator_api import local_stack
from orchestrator_api.cli import Subcommands
from orchestrator_api.cli.sandbox import DEFAULT_BASE_PORT, DEFAULT_NODES
from orchestrator_api.sandbox import Sandbox
from orchestrator_shared.bus import Subjects
from orchestrator_shared.config import load_settings
from orchestrator_shared.errors import ConfigError, SandboxError

EXIT_NOT_DISCOVERED = 3


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "up",
        help="run the stack locally (optionally against a MariaDB sandbox)",
        description="Start NATS (when NATSServers is empty) and the services, one process "
        "each, and print the discovered topology whenever it changes. Ctrl-C stops them.",
    )
    parser.add_argument("--config", metavar="FILE", help="orchestrator.conf.json to read")
    parser.add_argument(
        "--sandbox",
        metavar="DIR",
        type=Path,
        help="use the MariaDB sandbox in DIR, creating it if none runs there",
    )
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES, help="sandbox nodes")
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT, help="sandbox ports")
    parser.add_argument(
        "--keep-sandbox", action="store_true", help="leave a sandbox created here running"
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="stop as soon as every sandbox instance is discovered (exit 3 if not within "
        "--timeout)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds --once waits (default 60)"
    )
    parser.set_defaults(handler=run)


def _sandbox(args: argparse.Namespace, stack: contextlib.ExitStack) -> Sandbox | None:
    directory: Path | None = args.sandbox
    if directory is None:
        return None
    if (directory / "sandbox.json").exists():
        with contextlib.suppress(SandboxError):
            existing = Sandbox.load(directory)
            if all(existing.is_running(node.index) for node in existing.nodes):
                print(f"using the sandbox already running in {directory}", flush=True)
                return existing
            existing.down()
    print(f"starting a {args.nodes}-node MariaDB sandbox in {directory} ...", flush=True)
    # Unless kept, the sandbox lives and dies with this command, even if it is SIGKILLed.
    sandbox = Sandbox.up(
        directory,
        nodes=args.nodes,
        base_port=args.base_port,
        parent_death_signal=not args.keep_sandbox,
    )
    if not args.keep_sandbox:
        stack.callback(sandbox.down)
    print(sandbox.status(), flush=True)
    return sandbox


def run(args: argparse.Namespace) -> int:
    if args.once and args.sandbox is None:
        print(
            "orchestrator: --once needs --sandbox (it waits for the sandbox's instances)",
            file=sys.stderr,
        )
        return 2
    try:
        loaded = load_settings(args.config)
    except ConfigError as exc:
        print(f"orchestrator: bad configuration: {exc}", file=sys.stderr)
        return 2
    settings = loaded.settings
    for warning in loaded.warnings:
        print(f"orchestrator: warning: {warning}", file=sys.stderr)
    local_stack.install_signal_handlers()
    with contextlib.ExitStack() as stack:
        sandbox = _sandbox(args, stack)
        run_dir = (
            args.sandbox / "run"
            if args.sandbox is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orchestrator-up-")))
        )
        if settings.NATSServers:
            nats_url = settings.NATSServers[0]
        else:
            nats_url = stack.enter_context(
                local_stack.local_nats(run_dir / "nats", log_dir=run_dir)
            )
            print(f"nats-server with JetStream on {nats_url}", flush=True)
        seeds = [sandbox.master.key] if sandbox is not None else []
        document = local_stack.discovery_settings(
            settings, nats_url=nats_url, seeds=seeds, sandbox_credentials=sandbox is not None
        )
        discovery = stack.enter_context(local_stack.discovery_process(document, run_dir))
        print(
            f"orchestrator-discovery started (log: {discovery.log_path}); "
            f"seeds: {', '.join(document['DiscoverySeeds']) or 'none'}",
            flush=True,
        )
        expect = len(sandbox.nodes) if (sandbox is not None and args.once) else None
        discovered = asyncio.run(
            local_stack.watch_topology(
                nats_url,
                Subjects(settings.NATSSubjectPrefix),
                poll_seconds=settings.InstancePollSeconds,
                expect=expect,
                discovery=discovery,
                give_up_after=args.timeout if args.once else None,
                out=sys.stdout,
            )
        )
        if args.once and not discovered:
            print(
                f"orchestrator: not every instance was discovered within {args.timeout:g}s",
                file=sys.stderr,
            )
            return EXIT_NOT_DISCOVERED
    return 0
