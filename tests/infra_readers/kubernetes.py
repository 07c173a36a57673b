"""Kubernetes objects the tests validate offline."""

import functools
import re
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


# --- the first install (kustomize/README.md, "First install") ---------------------------------------------


def first_install_commands():
    """The shell commands of the procedure's code blocks, continuation lines (\\ and |) joined."""
    section = (KUSTOMIZE / "README.md").read_text().split("## First install", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(line.strip() for line in section.splitlines() if line.startswith(" " * 7))
    return re.sub(r"(\\|\|)\n", r"\1 ", code).replace("\\ ", " ").splitlines()


def helm_releases(environment):
    """release -> (namespace, version, merged values) of every `helm upgrade --install` in the procedure."""
    releases = {}
    for command in first_install_commands():
        if not command.startswith("helm upgrade --install"):
            continue
        words = command.replace('"', "").replace("$env", environment).split()
        release = words[3]
        assert "--version" in words, f"helm release {release} has no pinned --version"
        values = {}
        for path in (words[i + 1] for i, w in enumerate(words) if w == "-f"):
            assert (REPO / path).is_file(), f"{release}: {path} does not exist"
            values.update(yaml.safe_load((REPO / path).read_text()))
        releases[release] = (words[words.index("--namespace") + 1], words[words.index("--version") + 1], values)
    return releases


# Each workload (Deployment or StatefulSet) a controller's chart makes at its pinned version: the values
# paths its template reads the nodeSelector from (first set wins), and its replicas (values path, chart
# default; path None: fixed by the template). Read from the charts' templates and values.yaml.
CHART_WORKLOADS: dict[str, dict[str, tuple[list[list[str]], list[str] | None, int]]] = {
    "karpenter": {"controller": ([["nodeSelector"]], ["replicas"], 2)},
    "aws-load-balancer-controller": {"controller": ([["nodeSelector"]], ["replicaCount"], 2)},
    "external-secrets": {
        "controller": ([["nodeSelector"], ["global", "nodeSelector"]], ["replicaCount"], 1),
        "webhook": ([["webhook", "nodeSelector"], ["global", "nodeSelector"]], ["webhook", "replicaCount"], 1),
        "cert-controller": (
            [["certController", "nodeSelector"], ["global", "nodeSelector"]],
            ["certController", "replicaCount"],
            1,
        ),
    },
    "external-dns": {"controller": ([["nodeSelector"]], None, 1)},
    "kube-prometheus-stack": {
        "operator": ([["prometheusOperator", "nodeSelector"]], None, 1),
        "kube-state-metrics": ([["kube-state-metrics", "nodeSelector"]], ["kube-state-metrics", "replicas"], 1),
        "grafana": ([["grafana", "nodeSelector"]], ["grafana", "replicas"], 1),
        "prometheus": (
            [["prometheus", "prometheusSpec", "nodeSelector"]],
            ["prometheus", "prometheusSpec", "replicas"],
            1,
        ),
        "alertmanager": (
            [["alertmanager", "alertmanagerSpec", "nodeSelector"]],
            ["alertmanager", "alertmanagerSpec", "replicas"],
            1,
        ),
    },
}


def chart_replicas(values, path, default):
    for key in path or []:
        values = values.get(key, {}) if isinstance(values, dict) else {}
    return values if path and isinstance(values, int) else default


def system_node_label():
    """The label terraform/eks.tf puts on the on-demand system node group."""
    eks = (REPO / "terraform" / "eks.tf").read_text()
    found = re.search(r'system_node_selector = \{ "([^"]+)" = "([^"]+)" \}', eks)
    assert found, "terraform/eks.tf labels no system node group"
    return {found.group(1): found.group(2)}
