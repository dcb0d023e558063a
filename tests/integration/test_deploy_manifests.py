"""deploy/kubernetes as a cluster would receive it: each overlay rendered by kustomize,
validated against the Kubernetes API schemas offline (kubernetes-validate, --strict), scanned by
a policy checker (checkov: no failed check, and every skipped one with its written reason), and
the production overlay held to what docs/deploy.md promises of it."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.kustomize import ROOT, build, documents, tool

pytestmark = pytest.mark.integration

OVERLAYS = ("dev", "production")
# the oldest Kubernetes the manifests are for (PodDisruptionBudget policy/v1, Pod Security
# labels, topologySpreadConstraints), and the schemas' newest
KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")
WORKLOADS = ("Deployment", "StatefulSet")
VERSION_TAG = re.compile(r":v?\d+(\.\d+)+(-[a-z0-9.]+)?$")
# what a ConfigMap must never hold: setting names whose values are secrets, key material
SECRET_SETTING = re.compile(r"(Password|SigningKey|PostgreSQLDSN|Secret|Token)$")
KEY_MATERIAL = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\bpw[0-9a-f]{32,}\b")


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return documents("production")


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def workloads(manifests: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (m for m in manifests if m["kind"] in WORKLOADS)


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions In) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both overlays rendered, one file each, in a directory of their own (with the image's
    Dockerfile, which the policy checker scans too)."""
    directory = tmp_path_factory.mktemp("rendered")
    for overlay in OVERLAYS:
        (directory / f"{overlay}.yaml").write_text(build(overlay))
    (directory / "Dockerfile").write_text((ROOT / "deploy" / "Dockerfile").read_text())
    return directory


def run_tool(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_matches_the_kubernetes_schemas(rendered: Path, version: str) -> None:
    files = [str(rendered / f"{overlay}.yaml") for overlay in OVERLAYS]
    done = run_tool(
        [str(tool("kubernetes-validate")), "--strict", "--quiet", "-k", version, *files]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fail" not in done.stdout.lower(), done.stdout


def test_the_policy_checker_finds_nothing_unexplained(rendered: Path) -> None:
    done = run_tool(
        [
            str(tool("checkov")),
            *("--directory", str(rendered), "--framework", "kubernetes", "dockerfile"),
            *("--output", "json", "--skip-download"),
        ]
    )
    reports = {report["check_type"]: report for report in json.loads(done.stdout)}
    assert set(reports) == {"kubernetes", "dockerfile"}, done.stdout[:2000]
    assert reports["kubernetes"]["summary"]["passed"] > 1000  # it did scan both overlays
    assert reports["dockerfile"]["summary"]["passed"] > 20
    for report in reports.values():
        results = report["results"]
        failed = [
            f"{check['check_id']} {check['file_path']} {check['resource']}: {check['check_name']}"
            for check in results["failed_checks"]
        ]
        assert not failed, "\n".join(failed)
        for skipped in results["skipped_checks"]:
            reason = skipped["check_result"].get("suppress_comment", "")
            assert len(reason) > 20, f"{skipped['check_id']} skipped without a reason: {reason!r}"


def test_every_container_is_probed_bounded_and_unprivileged(
    production: list[dict[str, Any]],
) -> None:
    for workload in workloads(production):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] >= 10000, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not pod.get("initContainers"), name
        for container in pod["containers"]:
            where = f"{name}/{container['name']}"
            assert container["livenessProbe"]["httpGet"]["path"], where
            assert container["readinessProbe"]["httpGet"]["path"], where
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, where
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert VERSION_TAG.search(container["image"]), f"{where}: {container['image']}"
            assert container["imagePullPolicy"] == "Always", where


def test_secrets_come_as_files_and_never_in_a_config_map(production: list[dict[str, Any]]) -> None:
    for workload in workloads(production):
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert not any("secretRef" in source for source in container.get("envFrom", []))
            for variable in container.get("env", []):
                assert "secretKeyRef" not in variable.get("valueFrom", {}), variable
                assert not SECRET_SETTING.search(variable["name"]), variable  # only *_FILE
        for volume in pod["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["defaultMode"] & 0o007 == 0, volume  # not world-readable
    for name, config_map in of_kind(production, "ConfigMap").items():
        for file, text in config_map["data"].items():
            assert not KEY_MATERIAL.search(text), f"{name}/{file}"
            if file.endswith(".json"):
                settings = json.loads(text)
                assert not [key for key in settings if SECRET_SETTING.search(key)], settings
    assert not of_kind(production, "Secret")  # made by the operator (docs/deploy.md)


def test_the_stack_survives_a_node_and_a_drain(production: list[dict[str, Any]]) -> None:
    deployments = of_kind(production, "Deployment")
    stateful_sets = of_kind(production, "StatefulSet")
    api = deployments["orchestrator-topology-api"]
    assert api["spec"]["replicas"] >= 2
    api_env = {
        v["name"]: v["value"] for v in api["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert api_env["ORCHESTRATOR_BackendDB"] == "postgres"
    assert api_env["ORCHESTRATOR_PostgreSQLDSN_FILE"].startswith("/etc/orchestrator/secrets/")
    assert deployments["orchestrator-recovery"]["spec"]["replicas"] == 2
    for name in ("orchestrator-recovery",):
        spread_over_nodes(deployments[name])
    for name in ("etcd", "nats"):
        assert stateful_sets[name]["spec"]["replicas"] == 3, name
        spread_over_nodes(stateful_sets[name])
    settings = json.loads(
        of_kind(production, "ConfigMap")["orchestrator-config"]["data"]["orchestrator.conf.json"]
    )
    assert settings["NATSStreamReplicas"] == stateful_sets["nats"]["spec"]["replicas"]

    budgets = of_kind(production, "PodDisruptionBudget").values()
    for workload in workloads(production):
        covering = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(workload))]
        assert len(covering) == 1, workload["metadata"]["name"]
    assert {
        b["spec"].get("minAvailable") for b in budgets if b["metadata"]["name"] in ("etcd", "nats")
    } == {2}  # the quorum of three


def spread_over_nodes(workload: dict[str, Any]) -> None:
    terms = workload["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert any(
        term["topologyKey"] == "kubernetes.io/hostname"
        and selects(term["labelSelector"], pod_labels(workload))
        for term in terms
    ), workload["metadata"]["name"]


def test_network_policies_deny_all_but_the_documented_flows(
    production: list[dict[str, Any]],
) -> None:
    policies = of_kind(production, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny and "egress" not in deny
    for workload in workloads(production):
        labels = pod_labels(workload)
        allowed = [
            name
            for name, policy in policies.items()
            if policy["spec"]["podSelector"] and selects(policy["spec"]["podSelector"], labels)
        ]
        assert allowed, f"{workload['metadata']['name']} has no flow allowed"
    # the flows between components name a port each, never "any port"
    for name, policy in policies.items():
        for rule in [*policy["spec"].get("ingress", []), *policy["spec"].get("egress", [])]:
            assert rule.get("ports"), f"{name}: a rule without ports"


def test_services_and_the_ingress_reach_pods(production: list[dict[str, Any]]) -> None:
    labels = [pod_labels(w) for w in workloads(production)]
    services = of_kind(production, "Service")
    for name, service in services.items():
        assert any(selects({"matchLabels": service["spec"]["selector"]}, pod) for pod in labels), (
            name
        )
    (ingress,) = of_kind(production, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] in services
    assert ingress["spec"]["tls"]
    (namespace,) = of_kind(production, "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {m["metadata"].get("namespace") for m in production if m["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]
    }
