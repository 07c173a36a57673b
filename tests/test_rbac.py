"""RBAC coverage: the deploy identity may do everything `kubectl apply` and scripts/deploy do.

The identity is the deploy role's EKS access entry: Kubernetes group `titanic-deployers`, plus the
access policy AmazonEKSEditPolicy scoped to the app namespace. Its rules are recorded as data, with
their source, in kustomize/cluster/eks-edit-policy/clusterrole.yaml. The repository adds the Role of
kustomize/cluster/deployer-rbac, bound to the group by each cluster layer. For every object each
overlay renders, `kubectl apply` (client-side) needs get, create and patch; scripts/deploy's other
kubectl commands need what SCRIPT_NEEDS says. Every need must be granted; every rule that grants a
need must matter (removing it loses a need); and the repository's Role grants nothing unneeded.
"""

import re
from typing import Any

import pytest
import yaml

from tests.harness import REPO
from tests.infra_readers.kubernetes import NAMESPACES, OVERLAYS, cluster_objects, objects

pytestmark = pytest.mark.infra

GROUP = "titanic-deployers"
EDIT_POLICY = REPO / "kustomize/cluster/eks-edit-policy/clusterrole.yaml"
EDIT_POLICY_NAME = "eks-access-policy-amazonekseditpolicy"  # bound by cluster/local in place of EKS
# kind -> (API group, resource)
RESOURCES = {
    "ConfigMap": ("", "configmaps"),
    "Secret": ("", "secrets"),
    "ServiceAccount": ("", "serviceaccounts"),
    "Service": ("", "services"),
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "Ingress": ("networking.k8s.io", "ingresses"),
    "ExternalSecret": ("external-secrets.io", "externalsecrets"),
    "SecretStore": ("external-secrets.io", "secretstores"),
    "ServiceMonitor": ("monitoring.coreos.com", "servicemonitors"),
    "PrometheusRule": ("monitoring.coreos.com", "prometheusrules"),
    "HTTPRoute": ("gateway.networking.k8s.io", "httproutes"),
    "BackendTrafficPolicy": ("gateway.envoyproxy.io", "backendtrafficpolicies"),
}
APPLY_VERBS = ("get", "create", "patch")
# scripts/deploy's kubectl commands -> (group, resource, verbs) they need; a kind in the key's
# condition limits the need to overlays that render that kind.
SCRIPT_NEEDS: dict[str, list[tuple[Any, ...]]] = {
    "kustomize": [],  # renders locally
    "apply": [],  # the objects' own needs (APPLY_VERBS)
    "get": [
        ("apps", "deployments", ("get",)),
        ("batch", "jobs", ("get",)),
        ("networking.k8s.io", "ingresses", ("get",), "Ingress"),
    ],
    "wait": [("external-secrets.io", "externalsecrets", ("list", "watch"), "ExternalSecret")],
    "delete": [("batch", "jobs", ("delete", "get", "list", "watch"))],
    "logs": [("batch", "jobs", ("get",)), ("", "pods", ("list",)), ("", "pods/log", ("get",))],
    "rollout status": [
        ("apps", "deployments", ("get", "list", "watch")),
        ("apps", "statefulsets", ("get", "list", "watch"), "StatefulSet"),
    ],
    "rollout undo": [("apps", "deployments", ("get", "patch")), ("apps", "replicasets", ("list",))],
}


def load_rules(path):
    return next(d for d in yaml.safe_load_all(path.read_text()) if d["kind"] in {"Role", "ClusterRole"})["rules"]


def edit_policy():
    return load_rules(EDIT_POLICY)


def repo_grants(overlay):
    """(namespace or None for cluster-wide, rule) for the group's bindings in cluster/<env>.

    The local cluster's stand-in for the EKS access policy is the policy itself, counted as such.
    """
    rendered = cluster_objects(overlay)
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in rendered}
    grants = []
    for binding in rendered:
        if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        if not any(s["kind"] == "Group" and s["name"] == GROUP for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        if ref["name"] == EDIT_POLICY_NAME:
            continue
        namespace = binding["metadata"].get("namespace")
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        grants += [(namespace, rule) for rule in role["rules"]]
    return grants


def script_commands():
    lines = (REPO / "scripts/deploy").read_text().splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    # kubectl itself, or read_cluster <output file> and retry_kubectl (kubectl with retries)
    return set(re.findall(r"\b(?:kubectl|read_cluster \S+|retry_kubectl) (rollout \w+|\w+)", code))


def needs(overlay):
    namespace = NAMESPACES[overlay]
    rendered = objects(overlay)
    kinds = {o["kind"] for o in rendered}
    wanted = set()
    for o in rendered:
        assert o["kind"] in RESOURCES, f"{o['kind']}: add it to RESOURCES (and to the RBAC if needed)"
        group, resource = RESOURCES[o["kind"]]
        wanted |= {(group, resource, verb, namespace) for verb in APPLY_VERBS}
    for command in script_commands():
        for group, resource, verbs, *only_with in SCRIPT_NEEDS[command]:
            if not only_with or only_with[0] in kinds:
                wanted |= {(group, resource, verb, namespace) for verb in verbs}
    return wanted


def grants(rule, group, resource, verb):
    return (
        not rule.get("resourceNames")
        and (group in rule["apiGroups"] or "*" in rule["apiGroups"])
        and (resource in rule["resources"] or "*" in rule["resources"])
        and (verb in rule["verbs"] or "*" in rule["verbs"])
    )


def missing(overlay, policy, repo):
    """Needs of `overlay` that neither the policy (in the app namespace) nor the repo grants."""
    namespace = NAMESPACES[overlay]
    granted = [(namespace, rule) for rule in policy] + repo
    return {
        need
        for need in needs(overlay)
        if not any(ns in (None, need[3]) and grants(rule, *need[:3]) for ns, rule in granted)
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_deploy_identity_may_apply_and_deploy_everything(overlay):
    assert script_commands() == set(SCRIPT_NEEDS), "a kubectl command of scripts/deploy has no recorded needs"
    assert not missing(overlay, edit_policy(), repo_grants(overlay))


def test_the_local_cluster_grants_what_eks_grants():
    """kind has no access entries: cluster/local binds the recorded policy in the app namespace."""
    rendered = cluster_objects("local")
    role = next(o for o in rendered if o["kind"] == "ClusterRole" and o["metadata"]["name"] == EDIT_POLICY_NAME)
    assert role["rules"] == edit_policy()
    bindings = [o for o in rendered if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == EDIT_POLICY_NAME]
    assert [(b["metadata"]["namespace"], b["subjects"][0]["name"]) for b in bindings] == [("titanic-local", GROUP)]
    assert not [o for o in cluster_objects("dev") + cluster_objects("prod") if o["kind"] == "ClusterRole"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_deploy_identity_cannot_change_its_own_rights_or_the_namespace(overlay):
    namespace = NAMESPACES[overlay]
    rules = edit_policy() + [rule for _, rule in repo_grants(overlay)]
    for forbidden in [
        ("rbac.authorization.k8s.io", "roles", "patch"),
        ("rbac.authorization.k8s.io", "rolebindings", "create"),
        ("", "resourcequotas", "patch"),
        ("", "namespaces", "patch"),
    ]:
        assert not any(grants(rule, *forbidden) for rule in rules), (namespace, forbidden)


def test_removing_any_rule_that_grants_a_need_loses_that_need():
    """Each rule that grants something is needed: drop it and some overlay's need goes ungranted."""
    checked = 0
    policy = edit_policy()
    for index in range(len(policy)):
        without = policy[:index] + policy[index + 1 :]
        lost = [overlay for overlay in OVERLAYS if missing(overlay, without, repo_grants(overlay))]
        used = any(grants(policy[index], *need[:3]) for overlay in OVERLAYS for need in needs(overlay))
        assert bool(lost) == used, (policy[index], lost)
        checked += used
    repo_rules = load_rules(REPO / "kustomize/cluster/deployer-rbac/role.yaml")
    for index in range(len(repo_rules)):
        lost = []
        for overlay in OVERLAYS:
            kept = [(ns, rule) for ns, rule in repo_grants(overlay) if rule != repo_rules[index]]
            lost += sorted(missing(overlay, policy, kept))
        assert lost, f"the deployer Role's rule {repo_rules[index]} grants nothing any overlay needs"
        checked += 1
    assert checked >= 10


def test_the_deployer_role_grants_nothing_unneeded():
    wanted = set().union(*(needs(overlay) for overlay in OVERLAYS))
    wanted = {need[:3] for need in wanted}
    for rule in load_rules(REPO / "kustomize/cluster/deployer-rbac/role.yaml"):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert (group, resource, verb) in wanted, f"{verb} {resource}.{group} is never needed"


def test_the_recorded_policy_is_the_published_one():
    """A sample of the EKS User Guide table, so an edit of the data file cannot pass unnoticed."""
    text = EDIT_POLICY.read_text()
    assert "https://docs.aws.amazon.com/eks/latest/userguide/access-policy-permissions.html" in text
    policy = edit_policy()
    assert len(policy) == 20  # rows of the table
    assert not any(grants(r, "external-secrets.io", "externalsecrets", "get") for r in policy)
    assert not any(grants(r, "", "resourcequotas", "create") for r in policy)
    assert any(grants(r, "", "resourcequotas", "get") for r in policy)
    assert any(grants(r, "batch", "jobs", "deletecollection") for r in policy)
