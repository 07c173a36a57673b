"""Node capacity: prod at its peak fits the Karpenter NodePool, and kustomize/README.md says so.

The peak is the app at HPA maximum plus the rolling-update surge plus the migrate Job, plus an
add-on budget, on the smallest nodes the NodePool may launch. The table this test builds from the
rendered manifests must appear verbatim in kustomize/README.md ("Node capacity").
"""

import math

import pytest

from tests.support import REPO
from tests.support.kubernetes import one

pytestmark = pytest.mark.infra

# The smallest node the NodePool allows: 2 vCPU; c6g.large has 4 GiB (m6g.large 8 GiB).
NODE_CPU_M, NODE_MEMORY_MI, NODE_MAX_PODS = 2000, 4096, 29
# Karpenter's estimate of allocatable on EKS AL2023: kube-reserved CPU 6 % of the first core +
# 1 % of the second; memory 11 Mi per pod + 255 Mi, a 100 Mi eviction threshold, and 7.5 % of the
# instance's memory kept for the hypervisor (vmMemoryOverheadPercent).
ALLOCATABLE_CPU_M = NODE_CPU_M - 60 - 10
ALLOCATABLE_MEMORY_MI = int(NODE_MEMORY_MI * 0.925) - (11 * NODE_MAX_PODS + 255) - 100
# Assumed, to be measured on the first cluster (`kubectl describe node`): DaemonSets on every node
# (VPC CNI, kube-proxy, Pod Identity agent, EBS CSI node, CloudWatch agent), and the add-ons that
# may land on Karpenter nodes (CoreDNS, load balancer controller, External Secrets, Prometheus stack).
DAEMONSETS_CPU_M, DAEMONSETS_MEMORY_MI = 300, 300
ADDONS_CPU_M, ADDONS_MEMORY_MI = 1500, 3072
# For the NodePool limit: a 2-vCPU node may be an m6g.large (8 GiB), and Karpenter launches a
# replacement before it drains a node (consolidation, drift, expiry): up to the largest, 8 vCPU/32 GiB.
LIMIT_NODE_MEMORY_MI, LARGEST_CPU_M, LARGEST_MEMORY_MI = 8192, 8000, 32768


def quantity(value, unit):
    value = str(value)
    factors = {"m": 1e-3, "Mi": 2**20, "Gi": 2**30}
    number = next((float(value[: -len(s)]) * f for s, f in factors.items() if value.endswith(s)), None)
    number = float(value) if number is None else number
    return number * 1000 if unit == "m" else number / 2**20


def requests(pod):
    main = [c["resources"]["requests"] for c in pod["containers"]]
    init = [c["resources"]["requests"] for c in pod.get("initContainers", [])]
    cpu = max([sum(quantity(r["cpu"], "m") for r in main)] + [quantity(r["cpu"], "m") for r in init])
    memory = max([sum(quantity(r["memory"], "Mi") for r in main)] + [quantity(r["memory"], "Mi") for r in init])
    return cpu, memory


def table():
    app = one("prod", "Deployment", "titanic-api")["spec"]
    maximum = one("prod", "HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    surge = math.ceil(maximum * int(app["strategy"]["rollingUpdate"]["maxSurge"].rstrip("%")) / 100)
    app_cpu, app_memory = requests(app["template"]["spec"])
    job_cpu, job_memory = requests(one("prod", "Job")["spec"]["template"]["spec"])
    pods = maximum + surge
    cpu = pods * app_cpu + job_cpu + ADDONS_CPU_M
    memory = pods * app_memory + job_memory + ADDONS_MEMORY_MI
    free_cpu, free_memory = ALLOCATABLE_CPU_M - DAEMONSETS_CPU_M, ALLOCATABLE_MEMORY_MI - DAEMONSETS_MEMORY_MI
    nodes = max(math.ceil(cpu / free_cpu), math.ceil(memory / free_memory)) + 1  # +1: imperfect packing
    limits = one("prod", "NodePool", layer="cluster")["spec"]["limits"]
    limit_cpu, limit_memory = quantity(limits["cpu"], "m"), quantity(limits["memory"], "Mi")
    peak_cpu = nodes * NODE_CPU_M + LARGEST_CPU_M
    peak_memory = nodes * LIMIT_NODE_MEMORY_MI + LARGEST_MEMORY_MI
    app = f"{maximum} + {surge} = {pods} x {app_cpu:.0f}m / {app_memory:.0f}Mi"
    peak = f"{peak_cpu // 1000} vCPU / {peak_memory // 1024} GiB"
    rows = [
        ("App pods at peak: HPA max + 25 % surge", app),
        ("Migrate Job", f"{job_cpu:.0f}m / {job_memory:.0f}Mi"),
        ("Add-ons that may land on these nodes (assumed)", f"{ADDONS_CPU_M}m / {ADDONS_MEMORY_MI}Mi"),
        ("Requests at peak", f"{cpu:.0f}m / {memory:.0f}Mi"),
        ("Free on a 2-vCPU node after DaemonSets (assumed 300m / 300Mi)", f"{free_cpu}m / {free_memory}Mi"),
        ("Nodes needed (+1 for imperfect packing)", f"{nodes}"),
        ("Node capacity at peak, with one 8-vCPU replacement node", peak),
        ("NodePool limits", f"{limit_cpu / 1000:.0f} vCPU / {limit_memory / 1024:.0f} GiB"),
    ]
    lines = ["| | prod |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines), (peak_cpu, peak_memory), (limit_cpu, limit_memory)


def test_prod_at_its_peak_fits_the_nodepool_limits():
    _, (peak_cpu, peak_memory), (limit_cpu, limit_memory) = table()
    assert peak_cpu <= limit_cpu and peak_memory <= limit_memory, table()[0]


def test_the_readme_shows_the_arithmetic():
    text, _, _ = table()
    assert text in (REPO / "kustomize/README.md").read_text(), "update kustomize/README.md:\n" + text


def test_the_arithmetic_responds_to_the_manifests(monkeypatch):
    """More replicas than the NodePool can hold must fail the check."""
    import tests.test_capacity as capacity

    monkeypatch.setattr(capacity, "ADDONS_CPU_M", 20000)
    _, (peak_cpu, _), (limit_cpu, _) = capacity.table()
    assert peak_cpu > limit_cpu
