"""Node capacity: prod at its peak fits the Karpenter NodePool and its namespace quota, and
kustomize/README.md says so; the add-ons fit the on-demand system node group, and terraform/README.md
says so.

The peak is tests.infra_readers.kubernetes.rollout_peak: a rollout at HPA maximum (max + surge + every
old pod still terminating) plus one run of each Job and CronJob, plus an add-on budget, on the
smallest nodes the NodePool may launch. The table this test builds from the rendered manifests must
appear verbatim in kustomize/README.md ("Node capacity").
"""

import json
import math
import re
import sys

import pytest

from tests.harness import REPO
from tests.infra_readers.kubernetes import (
    CHART_WORKLOADS,
    chart_replicas,
    helm_releases,
    one,
    pod_need,
    quantity,
    rollout_peak,
)

pytestmark = pytest.mark.infra

# The smallest node the NodePool allows: 2 vCPU; c6g.large has 4 GiB (m6g.large 8 GiB).
NODE_CPU_M, NODE_MEMORY_MI, NODE_MAX_PODS = 2000, 4096, 29
# Karpenter's estimate of allocatable on EKS AL2023: kube-reserved CPU 6 % of the first core +
# 1 % of the second; memory 11 Mi per pod + 255 Mi, a 100 Mi eviction threshold, and 7.5 % of the
# instance's memory kept for the hypervisor (vmMemoryOverheadPercent).
ALLOCATABLE_CPU_M = NODE_CPU_M - 60 - 10
ALLOCATABLE_MEMORY_MI = int(NODE_MEMORY_MI * 0.925) - (11 * NODE_MAX_PODS + 255) - 100
# Assumed, to be measured on the first cluster (`kubectl describe node`): DaemonSets on every node
# (VPC CNI, kube-proxy, Pod Identity agent, CloudWatch agent, Fluent Bit, node-exporter), and a margin
# for add-ons on Karpenter nodes: every add-on selects the system group but the CloudWatch operator.
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
    _, (peak_cpu, peak_memory), _ = table()
    said = f"prod's peak needs {peak_cpu // 1000} vCPU / {peak_memory // 1024} GiB"
    assert said in (REPO / "kustomize/cluster/karpenter/nodepool.yaml").read_text(), (
        "update the NodePool's comment: " + said
    )


def test_the_arithmetic_responds_to_the_manifests(monkeypatch):
    """More replicas than the NodePool can hold must fail the check."""
    capacity = sys.modules[__name__]
    monkeypatch.setattr(capacity, "ADDONS_CPU_M", 20000)
    _, (peak_cpu, _), (limit_cpu, _) = capacity.table()
    assert peak_cpu > limit_cpu


# --- the system node group: every add-on pod must fit its nodes' pod limit ------------------------------

# Pods a node may run with the VPC CNI: ENIs x (IPv4 addresses per ENI - 1) + 2 (Karpenter v1.14.1,
# pkg/providers/instancetype/zz_generated.vpclimits.go). The group may launch any type it lists.
MAX_PODS = {"t4g.medium": 17, "t4g.large": 35, "m6g.large": 29, "m7g.large": 29}
# The EKS add-ons of terraform/eks.tf: (pods on every node, pods in all that select the system group or
# may land there). Replicas are the add-ons' defaults, assumed: check `kubectl get pods -A -o wide`.
EKS_ADDONS = {
    "vpc-cni": (1, 0),  # aws-node (with the network policy agent)
    "kube-proxy": (1, 0),
    "eks-pod-identity-agent": (1, 0),
    "coredns": (0, 2),
    "metrics-server": (0, 2),
    "amazon-cloudwatch-observability": (2, 1),  # CloudWatch agent and Fluent Bit; the operator (no selector)
}
CHART_DAEMONSETS = {"kube-prometheus-stack": 1}  # node-exporter


def terraform_setting(name, environment):
    """A variable's value in terraform/envs/<environment>.tfvars, else its default in variables.tf."""
    tfvars = (REPO / "terraform" / "envs" / f"{environment}.tfvars").read_text()
    variables = (REPO / "terraform" / "variables.tf").read_text()
    found = re.search(rf"^{name}\s*=\s*(.+)$", tfvars, re.MULTILINE) or re.search(
        rf'variable "{name}" \{{.*?^  default\s*=\s*(.+?)$', variables, re.MULTILINE | re.DOTALL
    )
    assert found, f"terraform sets no {name}"
    return json.loads(found.group(1))


def system_pods(environment, addons=EKS_ADDONS):
    """(nodes, pods per node, pods in all, the nodes' pod limit) of the system group at its minimum size."""
    eks = (REPO / "terraform" / "eks.tf").read_text()
    installed = set(
        re.findall(r"^    ([a-z-]+) = \{", eks.split("  addons = {", 1)[1].split("\n  }\n", 1)[0], re.MULTILINE)
    )
    assert installed == set(addons), f"count the pods of the EKS add-ons {installed ^ set(addons)}"
    per_node = sum(daemonsets for daemonsets, _ in addons.values()) + sum(CHART_DAEMONSETS.values())
    in_all = sum(deployments for _, deployments in addons.values())
    releases = helm_releases(environment)
    for release, workloads in CHART_WORKLOADS.items():
        values = releases[release][2]
        in_all += sum(chart_replicas(values, path, default) for _, path, default in workloads.values())
    nodes = terraform_setting("node_min_size", environment)
    limit = min(MAX_PODS[t] for t in terraform_setting("node_instance_types", environment))
    return nodes, per_node, in_all, limit


def system_sentence(environment):
    nodes, per_node, in_all, limit = system_pods(environment)
    return f"{environment}: {nodes} x {per_node} + {in_all} = {nodes * per_node + in_all} pods of {nodes * limit}"


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_the_add_ons_fit_the_system_node_group(environment):
    """Every add-on selects the system group (tests/test_kustomize.py): at its minimum size, the group
    must hold their pods within the VPC CNI's pods per node, or `helm --wait` stalls on Pending pods."""
    nodes, per_node, in_all, limit = system_pods(environment)
    assert nodes * per_node + in_all <= nodes * limit, system_sentence(environment)
    assert system_sentence(environment) in (REPO / "terraform/README.md").read_text(), system_sentence(environment)


def test_the_system_pod_count_can_fail():
    """t4g.medium (17 pods) could not hold dev's add-ons on its one node."""
    nodes, per_node, in_all, _ = system_pods("dev")
    assert nodes * per_node + in_all > nodes * MAX_PODS["t4g.medium"]
    with pytest.raises(AssertionError, match="count the pods"):
        system_pods("dev", {**EKS_ADDONS, "aws-ebs-csi-driver": (1, 2)})
