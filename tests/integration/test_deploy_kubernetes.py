"""The production overlay of deploy/kubernetes, run on this machine's real servers (CI has no
cluster): ``kustomize build`` renders it, and every pod of it runs as a process with exactly
what the manifests give it: its command and args, its env (``$(POD_NAME)`` expanded), the
ConfigMaps as files and the Secrets (made by deploy/compose/make-secrets.sh, as docs/deploy.md
says, plus the PostgreSQL DSN the operator adds) at their mount paths, each replica a process.

That is three nats-servers forming a JetStream cluster from the nats ConfigMap (TLS routes,
the per-service users), three etcd members from the StatefulSet's flags (TLS peers, client
certificates required), and the orchestrator Deployments; every pod must pass its own
readinessProbe (the path, port and scheme the manifest gives). Host names of the cluster
(``nats``, ``etcd-1.etcd-peer``, ``mariadb-0.mariadb``...) become loopback addresses on free
ports, and each replica gets free ports of its own for what it listens on. Then the stack must
work: a recovery leader, discovery crawling MariaDB over TLS, the API over HTTPS to its admin
only, on PostgreSQL, and a graceful takeover. MariaDB is the compose file's (set up by its init
scripts): the overlay expects an existing fleet.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_adapters.nats_client import connect_nats
from orchestrator_shared.nats_auth import NatsAuth
from tests.conftest import _log_tails_on_failure
from tests.harness.etcd import find_etcd
from tests.harness.kustomize import documents
from tests.harness.ports import LOOPBACK, free_port
from tests.harness.postgres import PostgresDatabase
from tests.harness.process import ManagedProcess, find_binary
from tests.integration.test_deploy import (
    LISTEN_KEYS,
    DeployedStack,
    Machine,
    check_the_stack,
    local_servers_only,
    make_secrets,
    start_databases,
)

pytestmark = pytest.mark.integration

Manifest = dict[str, Any]
PROBE_CONTEXT = ssl.create_default_context()
PROBE_CONTEXT.check_hostname = False  # as the kubelet: HTTPS probes do not verify the server
PROBE_CONTEXT.verify_mode = ssl.CERT_NONE


class Pod(ManagedProcess):
    """One replica of a workload; ready when its readinessProbe's URL answers 200."""

    ready_timeout = 60.0

    def __init__(self, name: str, argv: list[str], env: dict[str, str], ready_url: str) -> None:
        super().__init__(name=name)
        self.argv = argv
        self.env = env
        self.ready_url = ready_url

    @property
    def listen(self) -> str:
        """host:port of its probes (and /metrics)."""
        return self.ready_url.split("/")[2]

    def command(self) -> list[str]:
        return self.argv

    def environment(self) -> dict[str, str]:
        return self.env

    def probe(self) -> bool:
        try:
            with urllib.request.urlopen(self.ready_url, timeout=2, context=PROBE_CONTEXT) as answer:
                return int(answer.status) == 200
        except OSError:
            return False


class Cluster:
    """The rendered overlay and where its names land on this machine."""

    def __init__(self, machine: Machine, manifests: list[Manifest]) -> None:
        self.machine = machine
        self.manifests = manifests
        self.config_maps = {
            m["metadata"]["name"]: m["data"] for m in manifests if m["kind"] == "ConfigMap"
        }

    def workload(self, kind: str, name: str) -> Manifest:
        (found,) = [
            m for m in self.manifests if m["kind"] == kind and m["metadata"]["name"] == name
        ]
        return found

    def deployments(self) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == "Deployment"]

    def mounts(self, pod_name: str, workload: Manifest) -> dict[str, Path]:
        """Mount path -> directory on this machine: ConfigMaps written out, Secrets from the
        make-secrets directory of their name, emptyDirs and volume claims fresh."""
        spec = workload["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        found: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"], {})
            directory = self.machine.scratch / pod_name / mount["name"]
            if "secret" in volume:
                name = volume["secret"]["secretName"].removeprefix("orchestrator-")
                directory = self.machine.secrets / name
            else:
                directory.mkdir(parents=True)
                for file, text in self.config_maps.get(
                    volume.get("configMap", {}).get("name"), {}
                ).items():
                    (directory / file).write_text(text)
            found[mount["mountPath"]] = directory
        return found

    def translate(self, text: str, pod_name: str, mounts: dict[str, Path]) -> str:
        return self.machine.translate(text.replace("$(POD_NAME)", pod_name), mounts)

    def ready_url(self, workload: Manifest, listen: dict[int, str]) -> str:
        """The readinessProbe as a URL: its scheme and path, on where its port landed."""
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        probe = container["readinessProbe"]["httpGet"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        port = ports.get(probe["port"], probe["port"])
        return f"{probe.get('scheme', 'HTTP').lower()}://{listen[port]}{probe['path']}"


def _start(pod: Pod, started: list[ManagedProcess], *, wait: bool = True) -> Pod:
    started.append(pod)
    pod.start(wait=wait)
    return pod


def start_nats(cluster: Cluster, started: list[ManagedProcess]) -> None:
    """The nats StatefulSet: its shell command (passwords from the Secret's file), its
    ConfigMap's nats.conf and users.conf; the listeners and routes on loopback ports."""
    workload = cluster.workload("StatefulSet", "nats")
    replicas = workload["spec"]["replicas"]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    # each server's client, cluster and monitoring ports
    ports = {i: (free_port(), free_port(), free_port()) for i in range(replicas)}
    for i, (_, route, _) in ports.items():
        cluster.machine.addresses[f"nats-{i}.nats-cluster:6222"] = f"{LOOPBACK}:{route}"
    cluster.machine.addresses["nats:4222"] = f"{LOOPBACK}:{ports[0][0]}"
    nats_server = find_binary("nats-server")
    assert nats_server is not None
    for i, (client, route, monitor) in ports.items():
        name = f"nats-{i}"
        mounts = cluster.mounts(name, workload)
        conf = mounts["/etc/nats"] / "nats.conf"
        text = cluster.translate(conf.read_text(), name, mounts)
        for setting, value in (
            (r"^port: 4222$", f"listen: {LOOPBACK}:{client}"),
            (r"^http_port: 8222", f"http: {LOOPBACK}:{monitor}"),
            (r"^  port: 6222$", f"  listen: {LOOPBACK}:{route}"),
        ):
            text, count = re.subn(setting, value, text, flags=re.M)
            assert count == 1, setting
        conf.write_text(text)
        script = cluster.translate(container["command"][-1], name, mounts)
        assert script.endswith(f"exec nats-server -c {conf}"), script
        argv = [
            *container["command"][:-1],
            script.replace("exec nats-server", f"exec {nats_server}"),
        ]
        env = {**_inherited(), "POD_NAME": name}
        listen = {8222: f"{LOOPBACK}:{monitor}"}
        _start(Pod(name, argv, env, cluster.ready_url(workload, listen)), started)


def start_etcd(cluster: Cluster, started: list[ManagedProcess]) -> None:
    """The etcd StatefulSet's command (every flag), each member on loopback ports."""
    workload = cluster.workload("StatefulSet", "etcd")
    replicas = workload["spec"]["replicas"]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    # each member's client, peer and metrics ports
    ports = {i: (free_port(), free_port(), free_port()) for i in range(replicas)}
    for i, (client, peer, _) in ports.items():
        cluster.machine.addresses[f"etcd-{i}.etcd-peer:2379"] = f"{LOOPBACK}:{client}"
        cluster.machine.addresses[f"etcd-{i}.etcd-peer:2380"] = f"{LOOPBACK}:{peer}"
    cluster.machine.addresses["etcd:2379"] = f"{LOOPBACK}:{ports[0][0]}"
    members: list[Pod] = []
    for i, (client, peer, metrics) in ports.items():
        name = f"etcd-{i}"
        mounts = cluster.mounts(name, workload)
        argv = [cluster.translate(arg, name, mounts) for arg in container["command"]]
        argv = [
            arg.replace("0.0.0.0:2379", f"{LOOPBACK}:{client}")
            .replace("0.0.0.0:2380", f"{LOOPBACK}:{peer}")
            .replace("0.0.0.0:2381", f"{LOOPBACK}:{metrics}")
            for arg in argv
        ]
        assert argv[0] == "etcd"
        argv[0] = str(find_etcd())
        env = {k: v for k, v in _inherited().items() if not k.startswith("ETCD")}
        listen = {2381: f"{LOOPBACK}:{metrics}"}
        # together, as the StatefulSet's Parallel policy starts them: none is ready alone
        members.append(
            _start(Pod(name, argv, env, cluster.ready_url(workload, listen)), started, wait=False)
        )
    for member in members:
        member.wait_ready()


def start_orchestrator(cluster: Cluster, started: list[ManagedProcess]) -> dict[str, list[Pod]]:
    """Every Deployment, each replica with its env and files, on ports of its own."""
    settings = json.loads(cluster.config_maps["orchestrator-config"]["orchestrator.conf.json"])
    pods: dict[str, list[Pod]] = {}
    for workload in cluster.deployments():
        name = workload["metadata"]["name"]
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        for replica in range(workload["spec"]["replicas"]):
            pod_name = f"{name}-{replica}"
            mounts = cluster.mounts(pod_name, workload)
            config = mounts["/etc/orchestrator"] / "orchestrator.conf.json"
            config.write_text(cluster.translate(config.read_text(), pod_name, mounts))
            env = {
                v["name"]: cluster.translate(v["value"], pod_name, mounts)
                for v in container.get("env", [])
            }
            # what it listens on: the setting naming the container's port, on a free port
            declared = {**settings, **{k.removeprefix("ORCHESTRATOR_"): v for k, v in env.items()}}
            listen: dict[int, str] = {}
            for key in LISTEN_KEYS:
                address = f"{LOOPBACK}:{free_port()}"
                env[f"ORCHESTRATOR_{key}"] = address
                if match := re.fullmatch(r".*:(\d+)", str(declared.get(key, ""))):
                    listen[int(match[1])] = address
            env.update(local_servers_only(settings.get("DiscoveryAllowedHostnameFilters")))
            program = shutil.which(container["args"][0])
            assert program is not None, container["args"][0]
            argv = [
                program,
                *(cluster.translate(a, pod_name, mounts) for a in container["args"][1:]),
            ]
            pod = Pod(pod_name, argv, {**_inherited(), **env}, cluster.ready_url(workload, listen))
            pods.setdefault(name, []).append(_start(pod, started))
    return pods


def _inherited() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}


@pytest.fixture
def kubernetes_stack(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_admin_dsn: str
) -> Iterator[tuple[DeployedStack, dict[str, list[Pod]]]]:
    secrets = make_secrets(tmp_path / "secrets")
    machine = Machine(secrets=secrets, scratch=tmp_path / "volumes")
    cluster = Cluster(machine, documents("production"))
    database = PostgresDatabase(admin_dsn=postgres_admin_dsn)
    asyncio.run(database.create())
    # the operator's step (docs/deploy.md): the DSN into the API's Secret
    (secrets / "topology-api" / "postgres-dsn").write_text(database.dsn)
    started: list[ManagedProcess] = []
    try:
        db1, db2 = start_databases(machine, started)
        machine.addresses["mariadb-0.mariadb:3306"] = f"{LOOPBACK}:{db1.port}"
        start_nats(cluster, started)
        start_etcd(cluster, started)
        pods = start_orchestrator(cluster, started)
        api, *others = [f"https://{pod.listen}" for pod in pods["orchestrator-topology-api"]]
        coordinator = f"http://{pods['orchestrator-coordinator'][0].listen}"
        yield DeployedStack(machine, api, coordinator, db1, db2, started, tuple(others)), pods
    finally:
        _log_tails_on_failure(request, started)
        for process in reversed(started):
            process.close()
        database.close()


def test_the_production_overlay_runs_every_pod_ready(
    kubernetes_stack: tuple[DeployedStack, dict[str, list[Pod]]],
) -> None:
    stack, pods = kubernetes_stack
    assert len(pods["orchestrator-topology-api"]) >= 2  # all on the one PostgreSQL database
    for pod in [p for replicas in pods.values() for p in replicas]:
        assert pod.probe(), f"{pod.name} is not ready at {pod.ready_url}"
    check_the_stack(stack)
    # the streams live on the three NATS servers (NATSStreamReplicas), as the API's user sees
    replicas = asyncio.run(
        stream_replicas(stack.machine, ["ORCHESTRATOR_SNAPSHOTS", "ORCHESTRATOR_EVENTS"])
    )
    assert replicas == {"ORCHESTRATOR_SNAPSHOTS": (3, 2), "ORCHESTRATOR_EVENTS": (3, 2)}, replicas


async def stream_replicas(machine: Machine, streams: list[str]) -> dict[str, tuple[int, int]]:
    """Each stream's configured replicas and the peers its leader has in step."""
    secrets = machine.secrets / "topology-api"
    auth = NatsAuth(
        user="orchestrator-topology-api",
        password=(secrets / "nats-password").read_text().strip(),
        tls=ssl.create_default_context(cafile=secrets / "ca.pem"),
    )
    client = await connect_nats([f"tls://{machine.addresses['nats:4222']}"], name="test", auth=auth)
    try:
        js = client.jetstream()
        found = {}
        for name in streams:
            info = await js.stream_info(name)
            assert info.cluster is not None
            current = [peer for peer in info.cluster.replicas or [] if peer.current]
            found[name] = (info.config.num_replicas or 1, len(current))
        return found
    finally:
        await client.close()
