"""Node capacity: prod at its peak fits the Karpenter NodePool and its namespace quota, and
kustomize/README.md says so.

The peak is tests.infra_readers.kubernetes.rollout_peak: a rollout at HPA maximum (max + surge + every
old pod still terminating) plus one run of each Job and CronJob, plus an add-on budget, on the
smallest nodes the NodePool may launch. The table this test builds from the rendered manifests must
appear verbatim in kustomize/README.md ("Node capacity").
"""

import math

import pytest

from tests.harness import REPO
from tests.infra_readers.kubernetes import one, pod_need, quantity, rollout_peak

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
MI = 2**20


def need(pods, kind):
    """(millicores, MiB) that `pods` (rollout_peak entries) count for `kind` (requests or limits)."""
    cpu = sum(count * pod_need(pod, kind, "cpu") for _, count, pod in pods) * 1000
    memory = sum(count * pod_need(pod, kind, "memory") for _, count, pod in pods) / MI
    return cpu, memory


def table():
    peak = rollout_peak("prod")
    app, jobs = peak[:3], peak[3:]  # max, surge, terminating: the app's pods; then one run of each job
    app_pods = sum(count for _, count, _ in app)
    app_cpu, app_memory = need(app[:1], "requests")
    cpu, memory = need(peak, "requests")
    limits_cpu, limits_memory = need(peak, "limits")
    node_cpu, node_memory = cpu + ADDONS_CPU_M, memory + ADDONS_MEMORY_MI
    free_cpu, free_memory = ALLOCATABLE_CPU_M - DAEMONSETS_CPU_M, ALLOCATABLE_MEMORY_MI - DAEMONSETS_MEMORY_MI
    nodes = max(math.ceil(node_cpu / free_cpu), math.ceil(node_memory / free_memory)) + 1  # +1: imperfect packing
    pool = one("prod", "NodePool", layer="cluster")["spec"]["limits"]
    pool_cpu, pool_memory = quantity(pool["cpu"]) * 1000, quantity(pool["memory"]) / MI
    peak_cpu = nodes * NODE_CPU_M + LARGEST_CPU_M
    peak_memory = nodes * LIMIT_NODE_MEMORY_MI + LARGEST_MEMORY_MI
    hard = one("prod", "ResourceQuota", layer="cluster")["spec"]["hard"]

    def quota(kind):
        return f"{quantity(hard[kind + '.cpu']) * 1000:.0f}m / {quantity(hard[kind + '.memory']) / MI:.0f}Mi"

    counts = " + ".join(str(count) for _, count, _ in app)
    size = app[0][1]
    rows = [
        (
            "App pods at peak: HPA max + 25 % surge + old pods terminating",
            f"{counts} = {app_pods} x {app_cpu / size:.0f}m / {app_memory / size:.0f}Mi",
        ),
        *(
            (f"One run of {name}", "{:.0f}m / {:.0f}Mi".format(*need([(name, 1, pod)], "requests")))
            for name, _, pod in jobs
        ),
        ("Namespace quota: pods", f"{sum(count for _, count, _ in peak)} of {hard['pods']}"),
        ("Namespace quota: requests", f"{cpu:.0f}m / {memory:.0f}Mi of {quota('requests')}"),
        ("Namespace quota: limits", f"{limits_cpu:.0f}m / {limits_memory:.0f}Mi of {quota('limits')}"),
        ("Add-ons that may land on these nodes (assumed)", f"{ADDONS_CPU_M}m / {ADDONS_MEMORY_MI}Mi"),
        ("Requests on the nodes at peak", f"{node_cpu:.0f}m / {node_memory:.0f}Mi"),
        ("Free on a 2-vCPU node after DaemonSets (assumed 300m / 300Mi)", f"{free_cpu}m / {free_memory}Mi"),
        ("Nodes needed (+1 for imperfect packing)", f"{nodes}"),
        (
            "Node capacity at peak, with one 8-vCPU replacement node",
            f"{peak_cpu // 1000} vCPU / {peak_memory // 1024} GiB",
        ),
        ("NodePool limits", f"{pool_cpu / 1000:.0f} vCPU / {pool_memory / 1024:.0f} GiB"),
    ]
    lines = ["| | prod |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines), (peak_cpu, peak_memory), (pool_cpu, pool_memory)


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
