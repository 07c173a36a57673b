"""scripts/kind-e2e: what can run without Docker: its arguments, its preflight errors, and whether
every condition it waits for is one the local cluster layer and overlay can reach on plain kind.

The run itself (kind, Envoy Gateway, the deploy, the checks through the route) needs a Docker
daemon, which the project's build machines lack; the kind-e2e CI job runs it.
"""

import json
import os
import re
import subprocess
import time

import pytest

from tests.harness import REPO
from tests.infra_readers.kubernetes import objects, one, pod_need

pytestmark = pytest.mark.infra

SCRIPT = REPO / "scripts/kind-e2e"


def run(*args, path, env=None):
    started = time.monotonic()
    result = subprocess.run(
        [SCRIPT, *args],
        env={"PATH": path, "HOME": os.environ.get("HOME", "/root"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


def fake_tools(tmp_path, docker_info_rc):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("docker", "kind", "kubectl", "helm"):
        rc = docker_info_rc if tool == "docker" else 0
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >>"{log}"\nexit {rc}\n')
        (bin_dir / tool).chmod(0o755)
    return bin_dir, log


@pytest.mark.parametrize("args", [["--bogus"], ["--port", "eighty"], ["--name"]])
def test_bad_arguments_print_the_usage(args):
    result, _ = run(*args, path=os.environ["PATH"])
    assert result.returncode == 2
    assert "usage: scripts/kind-e2e" in result.stderr or "--port needs a number" in result.stderr


def test_help():
    result, _ = run("--help", path=os.environ["PATH"])
    assert result.returncode == 0 and "usage: scripts/kind-e2e" in result.stdout


def test_missing_docker_fails_fast_and_clearly():
    result, seconds = run(path="/usr/bin:/bin")  # no docker, kind or helm there
    assert result.returncode == 2
    assert "docker is not installed" in result.stderr and "kind v0.31.0" in result.stderr
    assert seconds < 5


def test_missing_kind_fails_fast_and_clearly(tmp_path):
    bin_dir, _ = fake_tools(tmp_path, docker_info_rc=0)
    (bin_dir / "kind").unlink()
    result, seconds = run(path=f"{bin_dir}:/usr/bin:/bin")
    assert result.returncode == 2 and "kind is not installed" in result.stderr
    assert seconds < 5


def test_a_docker_without_a_daemon_fails_fast_before_any_cluster_is_made(tmp_path):
    bin_dir, log = fake_tools(tmp_path, docker_info_rc=1)
    result, seconds = run(path=f"{bin_dir}:/usr/bin:/bin")
    assert result.returncode == 2 and "Docker daemon is not reachable" in result.stderr
    assert seconds < 5
    assert log.read_text().splitlines() == ["docker info"], "nothing else may run"


# --- the local path on plain kind: what the script waits for must be reachable ----------------------
# kind has no LoadBalancer implementation (kind docs/user/loadbalancer.md: that needs cloud-provider-kind),
# so a Service of type LoadBalancer never gets an address there. Envoy Gateway v1.9.0 (the release
# scripts/kind-e2e installs) decides the conditions waited on as follows:
#   GatewayClass Accepted: False (InvalidParameters) when its parametersRef names no EnvoyProxy
#     (internal/provider/kubernetes/controller.go, processGatewayClassParamsRef; a missing namespace
#     means "default");
#   Gateway Programmed: True once the Gateway has an address and an Envoy replica is available
#     (internal/gatewayapi/status/gateway.go): a LoadBalancer Service's address comes only from its
#     load-balancer status, a ClusterIP Service's is its cluster IP, a NodePort's the nodes' addresses;
#     with no EnvoyProxy setting the Service type is LoadBalancer (api/v1alpha1/kubernetes_helpers.go).

EG_CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"


def of_kind(rendered, kind):
    return [o for o in rendered if o["kind"] == kind]


def local_objects():
    return objects("local", "cluster") + objects("local")


def envoy_service_type(rendered, gateway):
    """The type of the Service Envoy Gateway makes for `gateway`, from the EnvoyProxy that applies."""

    def proxy(namespace, name):
        proxies = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in of_kind(rendered, "EnvoyProxy")}
        return proxies.get((namespace, name))

    ref = gateway["spec"].get("infrastructure", {}).get("parametersRef")
    chosen = proxy(gateway["metadata"]["namespace"], ref["name"]) if ref else None
    if chosen is None:
        gateway_class = gateway_class_of(rendered, gateway)
        ref = gateway_class["spec"].get("parametersRef")
        chosen = proxy(ref.get("namespace", "default"), ref["name"]) if ref else None
    service = (chosen or {}).get("spec", {}).get("provider", {}).get("kubernetes", {}).get("envoyService", {})
    return service.get("type", "LoadBalancer")


def gateway_class_of(rendered, gateway):
    return next(
        o
        for o in rendered
        if o["kind"] == "GatewayClass" and o["metadata"]["name"] == gateway["spec"]["gatewayClassName"]
    )


def gateway_class_accepted(rendered, script, name, namespace):
    gateway_class = next(o for o in rendered if o["kind"] == "GatewayClass" and o["metadata"]["name"] == name)
    if gateway_class["spec"]["controllerName"] != EG_CONTROLLER:
        return False
    ref = gateway_class["spec"].get("parametersRef")
    if ref is None:
        return True
    return ref["kind"] == "EnvoyProxy" and any(
        o["kind"] == "EnvoyProxy"
        and o["metadata"]["name"] == ref["name"]
        and o["metadata"].get("namespace") == ref.get("namespace", "default")
        for o in rendered
    )


def gateway_programmed(rendered, script, name, namespace):
    gateway = next(
        o
        for o in rendered
        if o["kind"] == "Gateway" and (o["metadata"]["name"], o["metadata"].get("namespace")) == (name, namespace)
    )
    return gateway_class_accepted(rendered, script, gateway["spec"]["gatewayClassName"], None) and (
        envoy_service_type(rendered, gateway) in {"ClusterIP", "NodePort"}
    )


def metrics_api_available(rendered, script, name, namespace):
    """metrics-server's APIService is Available only once it scrapes the kubelets, whose certificates
    kind does not sign with the cluster CA (metrics-server README: --kubelet-insecure-tls)."""
    install = next((line for line in helm_installs(script) if " metrics-server " in line), "")
    return name == "v1beta1.metrics.k8s.io" and "--kubelet-insecure-tls" in install


def helm_deployment_available(rendered, script, name, namespace):
    """Deployments the script's own `helm install --wait` created: Available once their pods are."""
    return (namespace, name) == ("envoy-gateway-system", "envoy-gateway") and any(
        "gateway-helm" in line and "--namespace envoy-gateway-system" in line for line in helm_installs(script)
    )


REACHABLE = {
    ("gatewayclass", "Accepted"): gateway_class_accepted,
    ("gateway", "Programmed"): gateway_programmed,
    ("apiservice", "Available"): metrics_api_available,
    ("deployment", "Available"): helm_deployment_available,
}


def script_text():
    return "\n".join(line for line in SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#"))


def helm_installs(script):
    joined = script.replace("\\\n", " ")
    return [line for line in joined.splitlines() if "helm install" in line]


def waits(script):
    """(kind, name, namespace, condition) of every `kubectl wait` in the script."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        if "kubectl wait" not in line:
            continue
        words = line.replace('"$NAMESPACE"', "titanic-local").split()
        condition = next(w.split("=", 2)[2] for w in words if w.startswith("--for=condition="))
        resource = next(w for w in words if "/" in w and not w.startswith("-"))
        namespace = words[words.index("--namespace") + 1] if "--namespace" in words else None
        kind, name = resource.split("/", 1)
        found.append((kind, name, namespace, condition))
    return found


def test_the_local_path_needs_no_load_balancer_implementation():
    rendered = local_objects()
    assert not [o for o in rendered if o["kind"] == "Service" and o["spec"].get("type") == "LoadBalancer"]
    gateways = [o for o in rendered if o["kind"] == "Gateway"]
    assert gateways
    for gateway in gateways:
        assert envoy_service_type(rendered, gateway) in {"ClusterIP", "NodePort"}, gateway["metadata"]["name"]


def test_kind_e2e_waits_only_for_conditions_the_objects_reach():
    script = script_text()
    found = waits(script)
    assert {(kind, condition) for kind, _, _, condition in found} >= {
        ("gatewayclass", "Accepted"),
        ("gateway", "Programmed"),
    }
    rendered = local_objects()
    for kind, name, namespace, condition in found:
        rule = REACHABLE.get((kind, condition))
        assert rule, f"kubectl wait {kind}/{name} --for=condition={condition}: record when it becomes true"
        assert rule(rendered, script, name, namespace), f"{kind}/{name} never becomes {condition} on plain kind"


def test_the_reachability_rules_catch_a_load_balancer_service():
    """Without the EnvoyProxy the Gateway is never Programmed on kind: it has no LoadBalancer implementation."""
    rendered = local_objects()
    script = script_text()
    without_proxy = [o for o in rendered if o["kind"] != "EnvoyProxy"]
    assert not gateway_class_accepted(without_proxy, script, "envoy-gateway", None)
    no_ref = json.loads(json.dumps(rendered))
    for o in no_ref:
        if o["kind"] == "GatewayClass":
            del o["spec"]["parametersRef"]
    assert gateway_class_accepted(no_ref, script, "envoy-gateway", None)
    assert not gateway_programmed(no_ref, script, "titanic", "titanic-local")
    load_balancer = json.loads(json.dumps(rendered))
    for o in load_balancer:
        if o["kind"] == "EnvoyProxy":
            o["spec"]["provider"]["kubernetes"]["envoyService"]["type"] = "LoadBalancer"
    assert not gateway_programmed(load_balancer, script, "titanic", "titanic-local")
    verified = script.replace("--kubelet-insecure-tls", "")
    assert not metrics_api_available(rendered, verified, "v1beta1.metrics.k8s.io", None)


def test_the_scale_in_can_happen_within_the_wait():
    """After the load, the HPA removes pods only once its scale-down window has passed (plus a sync
    period and a metrics scrape, 15 s each by default), and the Deployment counts a pod gone when it
    starts terminating; the base's 300 s window alone would outlast the script's wait."""
    hpa = next(o for o in objects("local") if o["kind"] == "HorizontalPodAutoscaler")
    window = hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 300)
    match = re.search(r"^SCALE_IN_SECONDS=(\d+)$", SCRIPT.read_text(), re.MULTILINE)
    assert match, "scripts/kind-e2e sets no SCALE_IN_SECONDS"
    wait = int(match.group(1))
    assert window + 15 + 15 < wait, (window, wait)
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"], "the load test must have room to scale out"


# One kind node on a 2-vCPU runner (GitHub's standard runner for private repositories; kind reserves
# nothing for the system). CPU requests already on it before the deploy, in millicores: kubeadm's
# static pods (API server 250, controller manager 200, scheduler 100, etcd 100), CoreDNS 2 x 100,
# kindnet 100, metrics-server 100, the Envoy Gateway controller 100, its Envoy 100 + shutdown
# manager 10. Assumed from the components' defaults, not measured (no Docker here).
KIND_NODE_CPU_M = 2000
KIND_BASELINE_CPU_M = 250 + 200 + 100 + 100 + 2 * 100 + 100 + 100 + 100 + 110


def test_the_rolling_restart_and_the_scale_out_fit_one_kind_node_on_a_2_vcpu_runner():
    """maxUnavailable 0: the rolling restart needs room for its surge pod while old pods terminate
    (at worst all of them), and the scale-out for the HPA's maximum; else pods stay Pending."""
    deployment = one("local", "Deployment", "titanic-api")["spec"]
    hpa = one("local", "HorizontalPodAutoscaler")["spec"]
    surge = -(-hpa["minReplicas"] * int(deployment["strategy"]["rollingUpdate"]["maxSurge"].rstrip("%")) // 100)
    app_pods = max(hpa["maxReplicas"], 2 * hpa["minReplicas"] + surge)
    app = pod_need(deployment["template"]["spec"], "requests", "cpu") * 1000
    others = [one("local", "StatefulSet", "postgres")["spec"]["template"]["spec"]]
    others += [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in objects("local") if c["kind"] == "CronJob"]
    needed = KIND_BASELINE_CPU_M + app_pods * app + sum(pod_need(pod, "requests", "cpu") * 1000 for pod in others)
    assert needed <= KIND_NODE_CPU_M, (needed, app_pods, app)
    assert KIND_BASELINE_CPU_M + app_pods * 250 > KIND_NODE_CPU_M, "the base's 250m would not fit: the check can fail"


def test_the_route_is_reached_through_envoys_node_port_not_a_port_forward():
    """kind maps the node port the EnvoyProxy fixes for the Gateway's listener to 127.0.0.1:PORT;
    `kubectl port-forward` (one stream through the API server) breaks under the load test."""
    script = SCRIPT.read_text()
    assert "port-forward" not in script_text()
    match = re.search(r"^ENVOY_NODE_PORT=(\d+)$", script, re.MULTILINE)
    assert match, "scripts/kind-e2e sets no ENVOY_NODE_PORT"
    node_port = int(match.group(1))
    assert re.search(r"containerPort: \$ENVOY_NODE_PORT\n\s+hostPort: \$port\n\s+listenAddress: 127.0.0.1", script)
    assert '--config "$work/kind.yaml"' in script
    rendered = local_objects()
    [gateway] = of_kind(rendered, "Gateway")
    [listener] = gateway["spec"]["listeners"]
    assert envoy_service_type(rendered, gateway) == "NodePort"
    [proxy] = of_kind(rendered, "EnvoyProxy")
    ports = proxy["spec"]["provider"]["kubernetes"]["envoyService"]["patch"]["value"]["spec"]["ports"]
    assert {"port": listener["port"], "nodePort": node_port} in ports
    assert 30000 <= node_port <= 32767, "the default node port range"
