"""Kubernetes objects the tests validate offline."""

import functools
import subprocess

import yaml

from tests.harness import REPO, tool_path

CRD_SCHEMAS = REPO / "tests" / "schemas" / "crds"
KUSTOMIZE = REPO / "kustomize"
# overlays/<env> is what scripts/deploy applies; cluster/<env> what an administrator applies first.
OVERLAYS = sorted(p.name for p in (KUSTOMIZE / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
NAMESPACES = {overlay: f"titanic-{overlay}" for overlay in OVERLAYS}


@functools.cache
def render(overlay, layer="overlays"):
    result = subprocess.run(
        [tool_path("kubectl"), "kustomize", str(KUSTOMIZE / layer / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(overlay, layer="overlays"):
    return [doc for doc in yaml.safe_load_all(render(overlay, layer)) if doc]


def cluster_objects(overlay):
    return objects(overlay, "cluster")


def of_kind(overlay, kind, layer="overlays"):
    return [o for o in objects(overlay, layer) if o["kind"] == kind]


def one(overlay, kind, name=None, layer="overlays"):
    found = [o for o in of_kind(overlay, kind, layer) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of the CRDs kept in tests/schemas/crds, made strict:
    unknown fields are errors."""

    def strict(node):
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items()}
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            return node
        if isinstance(node, list):
            return [strict(v) for v in node]
        return node

    schemas = {}
    for path in CRD_SCHEMAS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"type": "object"}  # checked as ObjectMeta by the caller
            schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return schemas


# --- capacity: what a namespace holds at the peak of a rollout -------------------------------------------


def quantity(value) -> float:
    """A Kubernetes quantity in cores or bytes: "250m" -> 0.25, "256Mi" -> 268435456.0."""
    value = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def pod_need(pod, kind, resource) -> float:
    """What a pod counts against a quota or a node: its containers together, or its largest init container."""
    main = sum(quantity(c["resources"][kind][resource]) for c in pod["containers"])
    init = max((quantity(c["resources"][kind][resource]) for c in pod.get("initContainers", [])), default=0)
    return max(main, init)


def rollout_peak(overlay) -> list[tuple[str, int, dict]]:
    """(what, how many, pod spec) of every pod the namespace may hold at once: the app at HPA maximum,
    the rolling update's surge (maxSurge, rounded up), and, at worst, every old pod still terminating
    (a terminating pod keeps its requests on its node and counts against the quota until it is gone:
    its preStop sleep and drain, up to terminationGracePeriodSeconds, while the rollout goes on), plus
    one run of each Job and CronJob (the migrate Job before the rollout, the cleanup at any time)."""
    deployment = one(overlay, "Deployment", "titanic-api")["spec"]
    app = deployment["template"]["spec"]
    maximum = one(overlay, "HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    surge = -(-maximum * int(deployment["strategy"]["rollingUpdate"]["maxSurge"].rstrip("%")) // 100)
    peak = [
        ("HPA max", maximum, app),
        ("25 % surge", surge, app),
        ("old pods terminating", maximum, app),
    ]
    peak += [(job["metadata"]["name"], 1, job["spec"]["template"]["spec"]) for job in of_kind(overlay, "Job")]
    for cron in of_kind(overlay, "CronJob"):
        peak.append((cron["metadata"]["name"], 1, cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return peak
