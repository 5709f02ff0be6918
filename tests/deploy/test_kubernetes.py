"""deploy/kubernetes: every manifest validates against the Kubernetes schemas (offline, from the
kubernetes-validate package, strict: unknown fields are errors), and the manifests agree with
each other and with the server (probe paths, drain time, labels, Secret keys, settings)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import generate_latest

from stt_server import metrics
from stt_server.app import create_app
from stt_server.cli import build_parser
from stt_server.engines.fixed_cost import FixedCostEngine
from stt_server.settings import ServerSettings
from tests.conftest import REPO

MANIFESTS = REPO / "deploy" / "kubernetes"
# The oldest release with `lifecycle.preStop.sleep` on by default, and the newest known.
VERSIONS = ("1.30", kubernetes_validate.latest_version())
# uvicorn's grace for what still runs after the drain (stt_server/cli.py).
AFTER_DRAIN_S = 5


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> resource, from the files the kustomization lists."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in kustomization()["resources"]:
        for doc in documents(MANIFESTS / name):
            found[doc["kind"], doc["metadata"]["name"]] = doc
    return found


def kustomization() -> dict[str, Any]:
    (doc,) = documents(MANIFESTS / "kustomization.yaml")
    return doc


def deployment() -> dict[str, Any]:
    return resources()["Deployment", "stt-server"]


def container() -> dict[str, Any]:
    (only,) = deployment()["spec"]["template"]["spec"]["containers"]
    return only


def env() -> dict[str, Any]:
    return {var["name"]: var for var in container()["env"]}


MANIFEST_FILES = sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def test_kustomization_lists_every_manifest() -> None:
    assert sorted(kustomization()["resources"]) == [p.name for p in MANIFEST_FILES]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: p.name)
def test_manifest_validates(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        # Raises on a schema violation, and on a kind the schemas do not know.
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_rejects_a_misspelled_field() -> None:
    broken = deployment()
    (spec,) = broken["spec"]["template"]["spec"]["containers"]
    spec["readinesProbe"] = spec.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_expected_kinds() -> None:
    assert sorted(resources()) == [
        ("Deployment", "stt-server"),
        ("HorizontalPodAutoscaler", "stt-server"),
        ("PersistentVolumeClaim", "stt-server-models"),
        ("PodDisruptionBudget", "stt-server"),
        ("Secret", "stt-server"),
        ("Service", "stt-server"),
    ]


def route_paths() -> set[str]:
    app = create_app(ServerSettings(engine="fixed-cost"), engine=FixedCostEngine())
    return {path for route in app.routes if isinstance(path := getattr(route, "path", None), str)}


def test_probes_use_the_servers_endpoints() -> None:
    spec = container()
    port_names = {port["name"] for port in spec["ports"]}
    probes = {kind: spec[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = spec["readinessProbe"]["httpGet"]
    assert probes["livenessProbe"]["path"] == "/health"
    assert probes["startupProbe"]["path"] == "/health"
    assert probes["readinessProbe"]["path"] == "/ready"
    for probe in probes.values():
        assert probe["port"] in port_names
    assert {"/health", "/ready"} <= route_paths()
    (port,) = spec["ports"]
    assert str(port["containerPort"]) == env()["STT_PORT"]["value"]


def drain_timeout() -> float:
    variable = env().get("STT_DRAIN_TIMEOUT")
    return float(variable["value"]) if variable else ServerSettings().drain_timeout


def test_grace_period_outlasts_the_drain() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    pre_stop = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    needed = pre_stop + drain_timeout() + AFTER_DRAIN_S
    assert pod["terminationGracePeriodSeconds"] > needed
    # A liveness probe that fails while /health says "draining" must not restart the pod.
    liveness = container()["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > needed


def test_environment_names_are_server_settings() -> None:
    # Each flag's help names its variable in brackets.
    settings = {
        name
        for action in build_parser()._actions
        for name in re.findall(r"\[(STT_[A-Z_]+)\]", action.help or "")
    }
    assert "STT_DRAIN_TIMEOUT" in settings
    stt = {name for name in env() if name.startswith("STT_")}
    assert stt <= settings, stt - settings
    # Service links would add STT_SERVER_* variables beside them.
    assert deployment()["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_selectors_match_the_pods() -> None:
    found = resources()
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment()["spec"]["selector"]["matchLabels"],
        "Service": found["Service", "stt-server"]["spec"]["selector"],
        "PodDisruptionBudget": found["PodDisruptionBudget", "stt-server"]["spec"]["selector"][
            "matchLabels"
        ],
    }
    for kind, selector in selectors.items():
        assert selector, kind
        assert selector.items() <= labels.items(), kind


def test_service_targets_the_container_port() -> None:
    (port,) = resources()["Service", "stt-server"]["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container()["ports"]}
    assert port["port"] == 15751


def test_api_key_comes_from_the_secret() -> None:
    reference = env()["STT_API_KEY"]["valueFrom"]["secretKeyRef"]
    secret = resources()["Secret", reference["name"]]
    assert reference["key"] in secret.get("stringData", {}) | secret.get("data", {})
    assert "value" not in env()["STT_API_KEY"]


def test_model_cache_volume_is_the_hf_cache() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    hf_home = env()["HF_HOME"]["value"]
    claim = volumes[mounts[hf_home]]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in resources()
    assert env()["HF_HUB_CACHE"]["value"].startswith(hf_home + "/")
    # Everything else the process writes has a volume: the root filesystem is read-only.
    for variable in ("HOME", "XDG_CACHE_HOME", "NUMBA_CACHE_DIR"):
        path = env()[variable]["value"]
        assert any(path == m or path.startswith(m + "/") for m in mounts), variable
    assert "/tmp" in mounts


def test_security_context_follows_the_systemd_hardening() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = container()["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    # The systemd unit these stand for.
    unit = (REPO / "deploy" / "stt-server.service").read_text()
    for line in ("NoNewPrivileges=yes", "CapabilityBoundingSet=", "ProtectSystem=strict"):
        assert re.search(rf"^{line}$", unit, flags=re.MULTILINE), line


def test_one_gpu_per_replica() -> None:
    assert container()["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert env()["STT_DEVICE"]["value"] == "cuda"


def test_autoscaler_scales_the_deployment_on_open_sessions() -> None:
    hpa = resources()["HorizontalPodAutoscaler", "stt-server"]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == (deployment()["apiVersion"], "Deployment")
    assert target["name"] == deployment()["metadata"]["name"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "stt_sessions_open"
    # Scale out before replicas fill up.
    average = float(metric["pods"]["target"]["averageValue"])
    assert average < int(env()["STT_MAX_SESSIONS"]["value"])
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    # The scrape annotations point at the port that serves /metrics.
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == env()["STT_PORT"]["value"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert "/metrics" in route_paths()
    exported = generate_latest(metrics.REGISTRY).decode()
    assert f"# TYPE {metric['pods']['metric']['name']} gauge" in exported
