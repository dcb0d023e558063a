"""``orchestrator up``: run the stack locally (see :mod:`orchestrator_cli.local_stack`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from orchestrator_adapters import tls
from orchestrator_cli import Subcommands, local_stack
from orchestrator_cli.sandbox import TOPOLOGY_USER, Sandbox
from orchestrator_cli.sandbox.certificates import make_throwaway_tls
from orchestrator_cli.sandbox_command import (
    DEFAULT_BASE_PORT,
    add_shape_arguments,
    sandbox_shape,
)
from orchestrator_shared.config import Settings, load_settings
from orchestrator_shared.errors import ConfigError, SandboxError

EXIT_STACK_FAILED = 1
EXIT_NOT_DISCOVERED = 3


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "up",
        help="run the stack locally (optionally against a MariaDB sandbox)",
        description="Start NATS and etcd (when NATSServers / EtcdEndpoints are empty), "
        "discovery and the topology API, one process each; print the API's URL and the "
        "discovered topology whenever it changes. Ctrl-C or SIGTERM stops them all.",
    )
    parser.add_argument("--config", metavar="FILE", help="orchestrator.conf.json to read")
    parser.add_argument(
        "--sandbox",
        metavar="DIR",
        type=Path,
        help="use the MariaDB sandbox in DIR, creating it if none runs there",
    )
    add_shape_arguments(parser)  # the sandbox's: --nodes, or --galera [--async-replicas]
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT, help="sandbox ports")
    parser.add_argument(
        "--keep-sandbox", action="store_true", help="leave a sandbox created here running"
    )
    parser.add_argument(
        "--sandbox-tls",
        action="store_true",
        help="the sandbox with TLS (a throwaway CA in DIR/tls) and the stack's MySQL "
        "connections over verified TLS, as a topology user that requires it",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="stop as soon as every sandbox instance is visible through the API (exit 3 if "
        "not within --timeout)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds --once waits (default 60)"
    )
    parser.set_defaults(handler=run)


def _say(text: str) -> None:
    print(text, flush=True)


def _sandbox(args: argparse.Namespace, stack: contextlib.ExitStack) -> Sandbox | None:
    directory: Path | None = args.sandbox
    if directory is None:
        return None
    existing = _running_sandbox(directory)
    if existing is not None:
        if args.sandbox_tls and existing.tls is None:
            raise SandboxError(
                f"the sandbox running in {directory} has no TLS: stop it first "
                f"(orchestrator sandbox down --dir {directory}) or leave out --sandbox-tls"
            )
        _say(f"using the sandbox already running in {directory}")
        return existing  # with TLS or not, as it was built (the stack follows it)
    nodes, galera = sandbox_shape(args)
    tls = make_throwaway_tls(directory / "tls") if args.sandbox_tls else None
    with_tls = "" if tls is None else f" with TLS (throwaway CA {tls.ca})"
    shape = f"{nodes}-node MariaDB sandbox"
    if galera:
        replicas = nodes - galera
        plural = "" if replicas == 1 else "s"
        shape = f"MariaDB sandbox of a {galera}-node Galera cluster, {replicas} replica{plural}"
    _say(f"starting a {shape} in {directory}{with_tls} ...")
    # Unless kept, the sandbox lives and dies with this command, even if it is SIGKILLed.
    sandbox = Sandbox.up(
        directory,
        nodes=nodes,
        base_port=args.base_port,
        tls=tls,
        galera=galera,
        parent_death_signal=not args.keep_sandbox,
    )
    if not args.keep_sandbox:
        stack.callback(sandbox.down)
    if tls is not None:
        # a connection in clear is refused from now on: the stack can only work over TLS
        sandbox.execute(0, f"ALTER USER '{TOPOLOGY_USER}'@'%' REQUIRE SSL")
        sandbox.wait_caught_up()
    _say(sandbox.status())
    return sandbox


def _running_sandbox(directory: Path) -> Sandbox | None:
    """The sandbox running in ``directory``; one there with a node down is stopped."""
    if not (directory / "sandbox.json").exists():
        return None
    with contextlib.suppress(SandboxError):
        existing = Sandbox.load(directory)
        if all(existing.is_running(node.index) for node in existing.nodes):
            return existing
        existing.down()
    return None


def _start_stack(
    args: argparse.Namespace,
    settings: Settings,
    stack: contextlib.ExitStack,
    verify: local_stack.Verify,
) -> int:
    """Start everything (each piece registered on ``stack`` to be stopped in reverse order),
    then follow the topology through the API (its TLS verified with ``verify``); returns the
    exit code of ``--once``."""
    sandbox = _sandbox(args, stack)
    if args.sandbox is not None:
        run_dir: Path = args.sandbox / "run"
    else:
        run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orchestrator-up-")))
    nats_servers = list(settings.NATSServers)
    if not nats_servers:
        nats_url = stack.enter_context(local_stack.local_nats(run_dir / "nats", log_dir=run_dir))
        _say(f"nats-server with JetStream on {nats_url}")
        nats_servers = [nats_url]
    etcd_endpoints = list(settings.EtcdEndpoints)
    if not etcd_endpoints:
        etcd_url = stack.enter_context(local_stack.local_etcd(run_dir / "etcd", log_dir=run_dir))
        _say(f"etcd on {etcd_url}")
        etcd_endpoints = [etcd_url]
    seeds = [sandbox.master.key] if sandbox is not None else []
    common = local_stack.common_settings(
        settings,
        nats_servers=nats_servers,
        etcd_endpoints=etcd_endpoints,
        seeds=seeds,
        sandbox_credentials=sandbox is not None,
        sandbox_ca=None if sandbox is None or sandbox.tls is None else sandbox.tls.ca,
    )
    discovery_config = local_stack.discovery_settings(common)
    discovery = stack.enter_context(local_stack.discovery_process(discovery_config, run_dir))
    _say(
        f"orchestrator-discovery started (log: {discovery.log_path}); "
        f"seeds: {', '.join(discovery_config['DiscoverySeeds']) or 'none'}"
    )
    coordinator = stack.enter_context(local_stack.coordinator_process(common, run_dir))
    _say(f"orchestrator-coordinator started (log: {coordinator.log_path})")
    # the workers and the API share the recovery filters (the API shows them in ClusterInfo)
    recovering = local_stack.recovery_settings(common, settings)
    workers = [
        stack.enter_context(local_stack.recovery_process(recovering, run_dir, f"recovery-{n}"))
        for n in (1, 2)
    ]
    _say(
        "orchestrator-recovery: 2 workers, one active (logs: "
        + ", ".join(str(worker.log_path) for worker in workers)
        + ")"
    )
    url = local_stack.api_url(
        settings.ListenAddress, settings.URLPrefix, scheme=tls.api_scheme(settings)
    )
    api = stack.enter_context(
        local_stack.api_process(
            local_stack.api_settings(recovering, run_dir), run_dir, url=url, verify=verify
        )
    )
    _say(f"orchestrator-topology-api on {url} (log: {api.log_path})")
    if sandbox is not None and sandbox.master.key not in discovery_config["DiscoverySeeds"]:
        local_stack.discover_through_api(url, sandbox.master.key, verify=verify)
    trust = f"{tls.CA_FILE_ENV}={settings.SSLCertFile} " if settings.UseSSL else ""
    _say(f"try: {trust}uv run orchestrator -c clusters --api {url}")
    expect = [node.key for node in sandbox.nodes] if sandbox is not None and args.once else None
    discovered = local_stack.follow_topology(
        url,
        children=[discovery, coordinator, *workers, api],
        expect=expect,
        give_up_after=args.timeout if args.once else None,
        out=sys.stdout,
        verify=verify,
    )
    if args.once and not discovered:
        print(
            f"orchestrator: not every instance was discovered within {args.timeout:g}s",
            file=sys.stderr,
        )
        return EXIT_NOT_DISCOVERED
    return 0


def run(args: argparse.Namespace) -> int:
    if args.sandbox_tls and args.sandbox is None:
        print("orchestrator: --sandbox-tls needs --sandbox", file=sys.stderr)
        return 2
    if args.once and args.sandbox is None:
        print(
            "orchestrator: --once needs --sandbox (it waits for the sandbox's instances)",
            file=sys.stderr,
        )
        return 2
    try:
        loaded = load_settings(args.config)
        settings = loaded.settings
        tls.check_server_files(settings)
        verify = tls.local_api_context(settings, os.environ) if settings.UseSSL else True
    except ConfigError as exc:
        print(f"orchestrator: bad configuration: {exc}", file=sys.stderr)
        return 2
    for warning in loaded.warnings:
        print(f"orchestrator: warning: {warning}", file=sys.stderr)
    local_stack.check_ports(settings)  # before anything starts: nothing to stop on failure
    local_stack.install_signal_handlers()
    with contextlib.ExitStack() as stack:
        try:
            return _start_stack(args, settings, stack, verify)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the normal way to stop
            _say("stopping ...")
            return 0
        except local_stack.StackError as exc:  # a child's log tail follows the first line
            print(f"orchestrator: error: {exc}", file=sys.stderr)
            return EXIT_STACK_FAILED
        finally:
            local_stack.defer_signals()  # the ExitStack now stops everything, in reverse
