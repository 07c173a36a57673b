"""The Kustomize overlays and cluster layers: they render, validate against Kubernetes 1.35 and the
CRD schemas, pass checkov, and keep the invariants the app and the platform depend on.

Each kustomization is rendered once per session (`kubectl kustomize`); checkov runs once per overlay.
`overlays/<env>` is what scripts/deploy applies; `cluster/<env>` what an administrator applies first.
"""

import base64
import functools
import json
import re
import runpy
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from django.conf import settings
from django.urls import Resolver404, resolve
from kubernetes_validate import utils as kubernetes_validate

from tests.harness import REPO, tool_path
from tests.infra_readers.kubernetes import (
    CHART_WORKLOADS,
    KUSTOMIZE,
    NAMESPACES,
    OVERLAYS,
    cluster_objects,
    crd_schemas,
    first_install_commands,
    helm_releases,
    objects,
    of_kind,
    one,
    pod_need,
    quantity,
    render,
    rollout_peak,
    system_node_label,
)

KUBERNETES_VERSION = "1.35.0"  # pinned by Terraform
EKS = ["dev", "prod"]  # the overlays behind the ALB, with External Secrets and monitoring
WORKLOAD_KINDS = {"Deployment", "Job", "StatefulSet", "CronJob"}
CLEANUP = "titanic-api-clear-idempotency-keys"  # the hourly CronJob (manage.py clearidempotencykeys)
# Kinds that are not namespaced: the deploy identity's namespace-scoped rights cannot touch them.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "NodePool", "EC2NodeClass", "GatewayClass"}
PLACEHOLDER = "REPLACED-FROM-INFRA-ENV"  # what the components carry until infra-values fills them
# Namespaces of controllers a cluster layer configures besides the app's (the local Envoy's settings).
CONTROLLER_NAMESPACES = {"local": ["envoy-gateway-system"]}

# URLs the public must reach through the ingress, and the ones it must never reach.
PUBLIC_URLS = ["/", "/people", "/people/", "/api/docs/", "/api/schema/", "/api/redoc/", "/api-auth/login/", "/admin/"]
PRIVATE_URLS = ["/metrics", "/metrics/", "/health", "/ready"]
# Settings read by a library rather than titanic/*.py: name -> the module whose source reads it.
LIBRARY_SETTINGS = {"PROMETHEUS_MULTIPROC_DIR": "prometheus_client"}

pytestmark = [pytest.mark.infra, pytest.mark.parametrize("overlay", OVERLAYS)]


# --- rendering, once per overlay -------------------------------------------------------------------


def only_for(overlays, overlay):
    if overlay not in overlays:
        pytest.skip(f"not rendered by overlays/{overlay}")


def pod_template(workload):
    """A workload's pod template (a CronJob's is in its Job template)."""
    spec = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    return spec["template"]


def pod_specs(overlay):
    for o in objects(overlay):
        if o["kind"] in WORKLOAD_KINDS:
            yield o, pod_template(o)["spec"]


def all_containers(pod):
    return pod.get("initContainers", []) + pod["containers"]


def app_config(overlay):
    """The app's ConfigMap (the one the Deployment's envFrom names)."""
    container = one(overlay, "Deployment", "titanic-api")["spec"]["template"]["spec"]["containers"][0]
    names = [e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e]
    assert len(names) == 1
    return one(overlay, "ConfigMap", names[0])["data"]


# --- the app's side of the contract ------------------------------------------------------------------


@functools.cache
def gunicorn_config(overlay="prod"):
    """titanic/gunicorn.conf.py as gunicorn sees it in the pod (the overlay's ConfigMap environment)."""
    path = REPO / "titanic" / "gunicorn.conf.py"
    assert path.is_file(), "titanic/gunicorn.conf.py is missing"
    env = dict(app_config(overlay))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # executing the file must not touch /run
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/kustomize-test-multiproc")
        return runpy.run_path(str(path))


def gunicorn_port():
    binds = gunicorn_config()["bind"]
    binds = [binds] if isinstance(binds, str) else binds
    ports = {int(b.rsplit(":", 1)[1]) for b in binds}
    assert len(ports) == 1, binds
    return ports.pop()


@functools.cache
def internal_endpoints():
    """Paths titanic.middleware.InternalEndpointsMiddleware answers before the URLconf (if installed)."""
    if "titanic.middleware.InternalEndpointsMiddleware" not in settings.MIDDLEWARE:
        return frozenset()
    from titanic.probes import internal_views

    return frozenset(internal_views())


def resolves(url):
    """Whether the app serves url: an internal endpoint or a route of Django's URL resolver."""
    if url in internal_endpoints():
        return True
    try:
        resolve(url)
    except Resolver404:
        return False
    return True


@functools.cache
def settings_the_app_reads():
    pattern = re.compile(
        r"""(?:\benv(?:\.\w+)?\(|os\.environ(?:\.get|\.setdefault)?[\[(]|os\.getenv\()\s*["']([A-Z][A-Z0-9_]*)["']"""
    )
    names = set()
    for source in (REPO / "titanic").glob("*.py"):
        names.update(pattern.findall(source.read_text()))
    return names


def first_group(pattern, text, flags=0):
    found = re.search(pattern, text, flags)
    assert found, f"not found: {pattern}"
    return found.group(1)


def library_reads(name):
    module = __import__(LIBRARY_SETTINGS[name])
    source = "".join(p.read_text() for p in Path(str(module.__file__)).parent.rglob("*.py"))
    return f'"{name}"' in source or f"'{name}'" in source


# --- rendering and schemas ---------------------------------------------------------------------------


def test_overlay_renders(overlay):
    kinds = {o["kind"] for o in objects(overlay)}
    assert {"Deployment", "Service", "ServiceAccount", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"ConfigMap", "Job", "CronJob"} <= kinds
    for layer in ("overlays", "cluster"):
        assert "REPLACED-FROM-" not in render(overlay, layer), "a value from infra.yaml was not filled in"
        assert not [
            o
            for o in objects(overlay, layer)
            if o["metadata"].get("annotations", {}).get("config.kubernetes.io/local-config")
        ], "local-config leaked"


def test_the_deploy_applies_nothing_cluster_scoped_and_the_cluster_layer_owns_the_namespace(overlay):
    """The deploy identity's rights are namespaced: namespace, quota and RBAC come from cluster/<env>."""
    assert not [o["kind"] for o in objects(overlay) if o["kind"] in CLUSTER_SCOPED]
    assert not {"ResourceQuota", "LimitRange", "Role", "RoleBinding"} & {o["kind"] for o in objects(overlay)}
    namespaces = [o for o in cluster_objects(overlay) if o["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in namespaces] == [NAMESPACES[overlay]]
    for o in cluster_objects(overlay):
        if o["kind"] not in CLUSTER_SCOPED:
            allowed = {NAMESPACES[overlay], *CONTROLLER_NAMESPACES.get(overlay, ())}
            assert o["metadata"]["namespace"] in allowed, (o["kind"], o["metadata"]["name"])


def test_every_object_is_in_the_environment_namespace(overlay):
    namespace = NAMESPACES[overlay]
    for o in objects(overlay):
        if o["kind"] == "Namespace":
            assert o["metadata"]["name"] == namespace
        else:
            assert o["metadata"].get("namespace") == namespace, (o["kind"], o["metadata"]["name"])


def validate_custom_resource(obj):
    schema = crd_schemas()[(obj["apiVersion"], obj["kind"])]
    jsonschema.validate(obj, schema, cls=jsonschema.Draft7Validator)


def test_objects_validate_against_kubernetes_schemas(overlay):
    errors = []
    for o in objects(overlay) + cluster_objects(overlay):
        if (o["apiVersion"], o["kind"]) in crd_schemas():
            continue
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {getattr(error, 'message', error)}")
    assert not errors, "\n".join(errors)


def test_custom_resources_validate_against_their_crds(overlay):
    custom = [o for o in objects(overlay) + cluster_objects(overlay) if (o["apiVersion"], o["kind"]) in crd_schemas()]
    local = {"HTTPRoute", "Gateway", "GatewayClass", "EnvoyProxy", "BackendTrafficPolicy"}
    expected = local if overlay == "local" else {"ExternalSecret", "SecretStore"}
    expected |= set() if overlay == "local" else {"ServiceMonitor", "PrometheusRule", "NodePool", "EC2NodeClass"}
    assert {o["kind"] for o in custom} == expected
    for o in custom:
        validate_custom_resource(o)
        meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": o["metadata"]}
        kubernetes_validate.validate(meta, KUBERNETES_VERSION, strict=True)  # metadata is an ObjectMeta


def test_crd_validation_rejects_unknown_and_mistyped_fields(overlay):
    if overlay == "local":
        route = one(overlay, "HTTPRoute")
        unknown = json.loads(json.dumps(route))
        unknown["spec"]["rules"][0]["matches"][0]["path"]["kind"] = "Exact"
        mistyped = json.loads(json.dumps(route))
        mistyped["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"  # the ALB's word, not Gateway API's
        proxy = json.loads(json.dumps(one(overlay, "EnvoyProxy", layer="cluster")))
        proxy["spec"]["provider"]["kubernetes"]["envoyService"]["type"] = "Internal"
        for broken in (unknown, mistyped, proxy):
            with pytest.raises(jsonschema.ValidationError):
                validate_custom_resource(broken)
        return
    pool = json.loads(json.dumps(one(overlay, "NodePool", layer="cluster")))
    pool["spec"]["disruption"]["consolidationPolicy"] = "WhenIdle"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(pool)
    monitor = one(overlay, "ServiceMonitor")
    unknown = json.loads(json.dumps(monitor))
    unknown["spec"]["endpoints"][0]["intervall"] = "30s"
    mistyped = json.loads(json.dumps(monitor))
    mistyped["spec"]["endpoints"][0]["interval"] = "30 seconds"
    store = json.loads(json.dumps(one(overlay, "SecretStore")))
    store["spec"]["provider"]["aws"]["service"] = "SecretManager"
    for broken in (unknown, mistyped, store):
        with pytest.raises(jsonschema.ValidationError):
            validate_custom_resource(broken)


# --- checkov -----------------------------------------------------------------------------------------


def test_checkov_finds_nothing(overlay, tmp_path):
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(render(overlay) + "---\n" + render(overlay, "cluster"))
    command = ["--framework", "kubernetes", "-f", str(rendered), "--skip-download", "--compact", "-o", "json"]
    result = subprocess.run(
        [tool_path("checkov"), *command],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= len(objects(overlay)) + len(cluster_objects(overlay)) - 6
    assert summary["passed"] > 100
    assert not failed, failed


def test_every_checkov_skip_is_justified(overlay):
    for o in objects(overlay) + cluster_objects(overlay):
        for key, value in o["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                assert re.fullmatch(r"CKV2?_K8S_\d+=.{20,}", value), (o["metadata"]["name"], value)


# --- workload invariants -----------------------------------------------------------------------------


def assert_hardened(name, pod):
    """Pod Security "restricted" and more: non-root UID 10001, read-only, no capabilities, sized."""
    assert pod["automountServiceAccountToken"] is False, name
    assert pod["securityContext"]["runAsNonRoot"] is True, name
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
    for c in all_containers(pod):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True, (name, c["name"])
        assert sc["runAsUser"] == 10001, (name, c["name"])
        assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
        assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
        assert sc.get("privileged", False) is False, (name, c["name"])
        assert sc["capabilities"] == {"drop": ["ALL"]}, (name, c["name"])
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), (name, c["name"], kind)


def test_pods_run_hardened(overlay):
    for workload, pod in pod_specs(overlay):
        assert_hardened(workload["metadata"]["name"], pod)


def test_images_are_pinned(overlay):
    for workload, pod in pod_specs(overlay):
        for c in all_containers(pod):
            image = c["image"]
            if "@sha256:" in image:
                assert re.search(r"@sha256:[0-9a-f]{64}$", image), image
                continue
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag not in {"", "latest"}, f"{workload['metadata']['name']}: {image} has no pinned tag"
            if overlay == "prod":
                assert re.fullmatch(r"[0-9a-f]{40}", tag), f"prod image tag {tag} is not a commit SHA"


def test_probes_hit_real_routes_on_the_gunicorn_port(overlay):
    pod = one(overlay, "Deployment", "titanic-api")["spec"]["template"]["spec"]
    port = gunicorn_port()
    for c in pod["containers"]:
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert set(ports.values()) == {port}, c["ports"]
        expected = {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
        for probe, path in expected.items():
            get = c[probe]["httpGet"]
            assert get["path"] == path
            assert resolves(get["path"]), f"{probe} {get['path']} is not in the app's URLconf"
            assert ports.get(get["port"], get["port"]) == port, (probe, get["port"])
            assert not get.get("httpHeaders"), "probes must not need Host header tricks"


def alb_attributes(ingress, kind):
    """The ALB attributes an Ingress annotation sets: kind "load-balancer" or "target-group"."""
    value = ingress["metadata"]["annotations"][f"alb.ingress.kubernetes.io/{kind}-attributes"]
    return dict(a.split("=") for a in value.split(","))


def test_shutdown_chain(overlay):
    """ALB deregistration delay < preStop sleep; gunicorn's graceful timeout < grace period - preStop."""
    pod = one(overlay, "Deployment", "titanic-api")["spec"]["template"]["spec"]
    graceful = gunicorn_config(overlay)["graceful_timeout"]
    grace = pod["terminationGracePeriodSeconds"]
    for c in pod["containers"]:
        sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert graceful < grace - sleep, (graceful, grace, sleep)
        for ingress in of_kind(overlay, "Ingress"):
            delay = int(alb_attributes(ingress, "target-group")["deregistration_delay.timeout_seconds"])
            assert delay < sleep, f"preStop {sleep} s must outlast the ALB's deregistration delay {delay} s"
            assert delay >= 10, "in-flight requests need time to finish at the ALB"


def test_gunicorn_keeps_idle_connections_longer_than_the_alb(overlay):
    """The target's keep-alive must outlast the load balancer's idle timeout (ELB User Guide,
    "Connection idle timeout"), or gunicorn closes connections the ALB still sends requests on: 502s."""
    only_for(EKS, overlay)
    idle = int(alb_attributes(one(overlay, "Ingress"), "load-balancer")["idle_timeout.timeout_seconds"])
    assert gunicorn_config(overlay)["keepalive"] > idle, (gunicorn_config(overlay)["keepalive"], idle)


def test_envoy_gives_up_idle_connections_before_gunicorn(overlay):
    """Locally Envoy plays the ALB: its upstream idle timeout (default 1 h) must end before
    gunicorn's keep-alive closes the connection under it."""
    only_for(["local"], overlay)
    [policy] = [p for p in of_kind(overlay, "BackendTrafficPolicy") if p["spec"]["timeout"]["http"]]
    route = one(overlay, "HTTPRoute")["metadata"]["name"]
    assert {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route} in policy["spec"]["targetRefs"]
    idle = policy["spec"]["timeout"]["http"]["connectionIdleTimeout"]
    assert re.fullmatch(r"\d+s", idle), idle
    assert int(idle[:-1]) < gunicorn_config(overlay)["keepalive"], (idle, gunicorn_config(overlay)["keepalive"])


def test_alb_targets_wait_for_the_readiness_gate(overlay):
    """With IP targets, a pod counts as ready only once the ALB reports it healthy (rollouts, PDB)."""
    only_for(EKS, overlay)
    namespace = one(overlay, "Namespace", layer="cluster")
    assert namespace["metadata"]["labels"]["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
    assert one(overlay, "Ingress")["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-type"] == "ip"


def test_metrics_dir_is_a_memory_volume(overlay):
    for workload, pod in pod_specs(overlay):
        if workload["metadata"]["labels"]["app.kubernetes.io/name"] != "titanic-api":
            continue
        memory = {v["name"] for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"}
        for c in all_containers(pod):
            env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
            directory = env.get("PROMETHEUS_MULTIPROC_DIR", app_config(overlay)["PROMETHEUS_MULTIPROC_DIR"])
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            if workload["kind"] == "Deployment":  # gunicorn removes and re-creates it: not a mount point
                owner = [mounts[m] for m in mounts if directory.startswith(m.rstrip("/") + "/")]
            else:  # nothing creates it in the job: it must exist
                owner = [mounts[directory]] if directory in mounts else []
            assert set(owner[:1]) & memory, (workload["metadata"]["name"], c["name"], directory)
            assert "/tmp" in mounts, (workload["metadata"]["name"], c["name"])


def test_config_keys_are_settings_the_app_reads(overlay):
    read = settings_the_app_reads()
    unread = set()
    for key in app_config(overlay):
        if key in LIBRARY_SETTINGS:
            assert library_reads(key), f"{LIBRARY_SETTINGS[key]} no longer reads {key}"
        elif key not in read:
            unread.add(key)
    if overlay == "local":
        secret = next(s for s in of_kind(overlay, "Secret") if s["metadata"]["name"].startswith("titanic-api-"))
        assert set(secret["data"]) == {"DATABASE_URL", "DJANGO_SECRET_KEY"} <= read
    else:
        external = one(overlay, "ExternalSecret", "titanic-api")["spec"]
        assert external["target"]["name"] == "titanic-api"
        assert {d["secretKey"] for d in external["data"]} == {"DJANGO_SECRET_KEY"} <= read
    assert not unread, f"ConfigMap keys read nowhere in titanic/*.py: {unread}"


def test_local_database_is_the_in_cluster_postgresql(overlay):
    only_for(["local"], overlay)
    secret = next(s for s in of_kind(overlay, "Secret") if s["metadata"]["name"].startswith("titanic-api-"))
    url = base64.b64decode(secret["data"]["DATABASE_URL"]).decode()
    assert re.fullmatch(r"postgres://titanic:local-only-[\w-]+@postgres:5432/titanic", url), url
    assert base64.b64decode(secret["data"]["DJANGO_SECRET_KEY"]).decode().startswith("local-")
    postgres = one(overlay, "StatefulSet", "postgres")
    service = one(overlay, "Service", "postgres")
    assert service["spec"]["selector"].items() <= postgres["spec"]["template"]["metadata"]["labels"].items()
    assert postgres["spec"]["template"]["spec"]["containers"][0]["image"].split(":")[1].startswith("16.")
    assert postgres["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert not [o for o in objects(overlay) if o["apiVersion"].startswith(("external-secrets.io", "monitoring.coreos"))]
    assert not of_kind(overlay, "Ingress")


def container_env(overlay, container, name):
    """What `name` is in a container: its own env entry, else the last envFrom source that has it."""
    for entry in container.get("env", []):
        if entry["name"] == name:
            return entry["value"]
    value = None
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            value = one(overlay, "ConfigMap", source["configMapRef"]["name"])["data"].get(name, value)
        else:
            secrets = [s for s in of_kind(overlay, "Secret") if s["metadata"]["name"] == source["secretRef"]["name"]]
            if secrets and name in secrets[0].get("data", {}):
                value = base64.b64decode(secrets[0]["data"][name]).decode()
    return value


def test_database_identities(overlay):
    """On EKS: the pods connect as titanic_app and the migrate Job as titanic_migrator (each with its
    ServiceAccount, which Terraform's Pod Identity associations map to a role allowed rds-db:connect
    as that user), with RDS IAM auth tokens: no password in any URL, no database secret at all."""
    accounts = {o["metadata"]["name"]: o for o in of_kind(overlay, "ServiceAccount")}
    assert {"titanic-api", "titanic-migrate"} <= set(accounts)
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    app = one(overlay, "Deployment", "titanic-api")["spec"]["template"]["spec"]
    job = one(overlay, "Job", "titanic-api-migrate")["spec"]["template"]["spec"]
    cleanup = pod_template(one(overlay, "CronJob", CLEANUP))["spec"]
    assert (app["serviceAccountName"], job["serviceAccountName"]) == ("titanic-api", "titanic-migrate")
    assert cleanup["serviceAccountName"] == "titanic-api"
    if overlay == "local":  # the in-cluster PostgreSQL's own user and password, no IAM
        for container in app["containers"] + all_containers(job) + cleanup["containers"]:
            assert container_env(overlay, container, "DATABASE_URL").startswith("postgres://titanic:")
            assert container_env(overlay, container, "DATABASE_IAM_AUTH") in (None, "0")
        return
    infra = yaml.safe_load((KUSTOMIZE / "overlays" / overlay / "infra.yaml").read_text())["data"]
    users = [("titanic_app", app["containers"] + cleanup["containers"]), ("titanic_migrator", all_containers(job))]
    for user, containers in users:
        for container in containers:
            url = container_env(overlay, container, "DATABASE_URL")
            assert url == f"postgres://{user}@{infra['DATABASE_HOST']}:5432/titanic?sslmode=require"
            assert urllib.parse.urlsplit(url).password is None
            assert container_env(overlay, container, "DATABASE_IAM_AUTH") == "1"
            assert container_env(overlay, container, "AWS_REGION") == infra["AWS_REGION"]
    external = one(overlay, "ExternalSecret", "titanic-api")["spec"]
    assert [d["remoteRef"]["key"] for d in external["data"]] == [f"titanic/{overlay}/django-secret-key"]
    assert "template" not in external["target"], "nothing to assemble: the Secret is the Django key alone"
    store = one(overlay, "SecretStore", external["secretStoreRef"]["name"])
    assert "auth" not in store["spec"]["provider"]["aws"], "the controller's pod identity is the credential"
    assert "DATABASE_MASTER_SECRET_ARN" not in infra


def test_expired_idempotency_keys_are_cleared_hourly_as_the_app(overlay):
    """The CronJob runs the cleanup command once an hour, one run at a time, with the app's identity,
    configuration and security context (only its command and its size differ)."""
    cron = one(overlay, "CronJob", CLEANUP)
    assert re.fullmatch(r"\d{1,2} \* \* \* \*", cron["spec"]["schedule"]), cron["spec"]["schedule"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = pod_template(cron)["spec"]
    app = one(overlay, "Deployment", "titanic-api")["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    for key in ("serviceAccountName", "securityContext", "automountServiceAccountToken", "nodeSelector"):
        assert pod.get(key) == app.get(key), key
    [container] = pod["containers"]
    assert container["command"] == ["python", "manage.py", "clearidempotencykeys"]
    assert container["image"] == app["containers"][0]["image"]
    assert container["envFrom"] == app["containers"][0]["envFrom"]
    assert container["securityContext"] == app["containers"][0]["securityContext"]


# --- environment-specific invariants ------------------------------------------------------------------


def test_scale_and_disruption_budget(overlay):
    deployment = one(overlay, "Deployment", "titanic-api")
    hpa = one(overlay, "HorizontalPodAutoscaler", "titanic-api")
    pdb = one(overlay, "PodDisruptionBudget", "titanic-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "titanic-api"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    # Each `kubectl apply` would reset the HPA's count to an applied replicas value.
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    if overlay == "prod":
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
        assert pdb["spec"] == {**pdb["spec"], "minAvailable": 2}
        assert "maxUnavailable" not in pdb["spec"]
        selector = deployment["spec"]["template"]["spec"]["nodeSelector"]
        assert selector == {"kubernetes.io/arch": "arm64"}, "any Graviton node: Karpenter's Spot or on-demand"
        assert one(overlay, "Job", "titanic-api-migrate")["spec"]["template"]["spec"]["nodeSelector"] == selector
        assert pod_template(one(overlay, "CronJob", CLEANUP))["spec"]["nodeSelector"] == selector
    else:
        assert pdb["spec"].get("maxUnavailable") == 1, "a one-replica environment must stay drainable"


def test_quota_fits_the_largest_rollout(overlay):
    """The namespace's ResourceQuota holds the rollout at HPA maximum: every pod of rollout_peak
    (max + surge + every old pod still terminating + one run of each job), so a rollout is never
    refused pods by the quota."""
    only_for(EKS, overlay)
    hard = one(overlay, "ResourceQuota", layer="cluster")["spec"]["hard"]
    peak = rollout_peak(overlay)
    assert int(hard["pods"]) >= sum(count for _, count, _ in peak)
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            need = sum(count * pod_need(pod, kind, resource) for _, count, pod in peak)
            assert quantity(hard[f"{kind}.{resource}"]) >= need, (kind, resource, need)


# --- traffic: service, ingress, network policies, monitoring ---------------------------------------------


def ingress_routes(ingress, url):
    """Whether an Ingress rule path matches url, by the Kubernetes Exact/Prefix rules."""
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            path, kind = p["path"], p["pathType"]
            if kind == "Exact" and url == path:
                return True
            if kind == "Prefix":
                prefix = path.rstrip("/")
                if prefix in ("", url) or url.startswith(prefix + "/"):
                    return True
            if kind == "ImplementationSpecific":
                return True  # the ALB reads it as a glob: refuse to reason about it
    return False


def test_ingress_routes_the_public_urls_only(overlay):
    only_for(EKS, overlay)
    ingress = one(overlay, "Ingress", "titanic-api")
    annotations = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"].startswith("arn:aws:acm:")
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert resolves(annotations["alb.ingress.kubernetes.io/healthcheck-path"])
    assert not [
        a
        for a in annotations
        if a.startswith(("alb.ingress.kubernetes.io/actions.", "alb.ingress.kubernetes.io/conditions."))
    ]
    for url in PRIVATE_URLS:
        assert not ingress_routes(ingress, url), f"the ingress routes {url}"
    for url in PUBLIC_URLS:
        assert resolves(url), f"{url} is not in the app's URLconf"
        assert ingress_routes(ingress, url), f"the ingress does not route {url}"
    assert ingress_routes(ingress, "/" + settings.STATIC_URL.strip("/") + "/admin/css/base.css")
    service = one(overlay, "Service", "titanic-api")
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in app_config(overlay)["DJANGO_ALLOWED_HOSTS"].split(",")
        for p in rule["http"]["paths"]:
            backend = p["backend"]["service"]
            assert backend["name"] == "titanic-api"
            assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}


def test_prod_ingress_sits_behind_the_waf(overlay):
    """Terraform creates the WAF web ACL for prod only (enable_waf)."""
    only_for(EKS, overlay)
    annotations = one(overlay, "Ingress", "titanic-api")["metadata"]["annotations"]
    waf = annotations.get("alb.ingress.kubernetes.io/wafv2-acl-arn")
    assert waf.startswith("arn:aws:wafv2:") if overlay == "prod" else waf is None


def test_ingress_path_matching_is_not_vacuous(overlay):
    exact = {"spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Exact"}]}}]}}
    prefix = {"spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix"}]}}]}}
    api = {"spec": {"rules": [{"http": {"paths": [{"path": "/api", "pathType": "Prefix"}]}}]}}
    assert not ingress_routes(exact, "/metrics")
    assert ingress_routes(prefix, "/metrics")
    assert ingress_routes(api, "/api/docs/")
    assert not ingress_routes(api, "/api-auth/login/")


def test_local_route_mirrors_the_ingress(overlay):
    """The HTTPRoute routes the public URLs and not /metrics, /health, /ready, on the allowed host."""
    only_for(["local"], overlay)
    route = one(overlay, "HTTPRoute", "titanic-api")
    kinds = {"Exact": "Exact", "PathPrefix": "Prefix"}
    paths = [
        {"path": m["path"]["value"], "pathType": kinds[m["path"]["type"]]}
        for rule in route["spec"]["rules"]
        for m in rule["matches"]
    ]
    as_ingress = {"spec": {"rules": [{"http": {"paths": paths}}]}}
    for url in PRIVATE_URLS:
        assert not ingress_routes(as_ingress, url), f"the route sends {url} to the app"
    for url in PUBLIC_URLS:
        assert ingress_routes(as_ingress, url), f"the route does not send {url} to the app"
    assert route["spec"]["hostnames"] == app_config(overlay)["DJANGO_ALLOWED_HOSTS"].split(",") == ["titanic.localhost"]
    gateway = one(overlay, "Gateway", layer="cluster")
    assert [ref["name"] for ref in route["spec"]["parentRefs"]] == [gateway["metadata"]["name"]]
    assert one(overlay, "GatewayClass", layer="cluster")["metadata"]["name"] == gateway["spec"]["gatewayClassName"]
    service = one(overlay, "Service", "titanic-api")
    for rule in route["spec"]["rules"]:
        assert [(b["name"], b["port"]) for b in rule["backendRefs"]] == [
            ("titanic-api", service["spec"]["ports"][0]["port"])
        ]
    for o in of_kind(overlay, "Deployment") + of_kind(overlay, "Job") + of_kind(overlay, "CronJob"):
        for c in all_containers(pod_template(o)["spec"]):
            assert c["imagePullPolicy"] == "IfNotPresent", "kind loads the image; there is no registry to pull from"


def test_service_reaches_the_app_port(overlay):
    service = one(overlay, "Service", "titanic-api")
    deployment = one(overlay, "Deployment", "titanic-api")
    template = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    for job in of_kind(overlay, "Job") + of_kind(overlay, "CronJob"):
        job_labels = pod_template(job)["metadata"]["labels"]
        assert not service["spec"]["selector"].items() <= job_labels.items(), "the Service must not select jobs"
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    for port in service["spec"]["ports"]:
        assert ports.get(port["targetPort"], port["targetPort"]) == gunicorn_port()


def test_servicemonitor_scrapes_metrics_from_the_service(overlay):
    only_for(EKS, overlay)
    monitor = one(overlay, "ServiceMonitor", "titanic-api")
    service = one(overlay, "Service", "titanic-api")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "release" in monitor["metadata"]["labels"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert resolves(endpoint["path"]), "/metrics is not in the app's URLconf"


def test_network_policies(overlay):
    only_for(EKS, overlay)
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(overlay, "NetworkPolicy")}
    deny = policies["default-deny-all"]
    assert deny["podSelector"] == {}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny
    assert "egress" not in deny
    app_labels = one(overlay, "Deployment")["spec"]["template"]["metadata"]["labels"]
    job_labels = one(overlay, "Job")["spec"]["template"]["metadata"]["labels"]
    cleanup_labels = pod_template(one(overlay, "CronJob", CLEANUP))["metadata"]["labels"]
    allowed_in, allowed_out = set(), set()
    for spec in policies.values():
        selected = spec["podSelector"].get("matchLabels", {}).items()
        for rule in spec.get("ingress", []):
            assert selected <= app_labels.items()
            for peer in rule["from"]:
                if "ipBlock" in peer:
                    allowed_in.add(("vpc", peer["ipBlock"]["cidr"]))
                else:
                    allowed_in.add(("ns", peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]))
            assert {p["port"] for p in rule["ports"]} == {gunicorn_port()}
        for rule in spec.get("egress", []):
            assert selected <= app_labels.items()
            assert selected <= job_labels.items()
            assert selected <= cleanup_labels.items()
            for port in rule["ports"]:
                allowed_out.add((port["protocol"], port["port"]))
            if {p["port"] for p in rule["ports"]} == {5432}:
                assert all(peer["ipBlock"]["cidr"].endswith(("/24", "/25", "/26", "/27", "/28")) for peer in rule["to"])
            if {p["port"] for p in rule["ports"]} == {80}:  # EKS Pod Identity's credentials, nothing else
                assert [peer["ipBlock"]["cidr"] for peer in rule["to"]] == ["169.254.170.23/32"]
    assert allowed_out == {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 80)}
    assert ("ns", "monitoring") in allowed_in
    assert any(kind == "vpc" and cidr.endswith("/16") for kind, cidr in allowed_in)


# --- the sources ---------------------------------------------------------------------------------------


def test_kustomizations_use_current_fields_only(overlay):
    deprecated = {"commonLabels", "patchesStrategicMerge", "patchesJson6902", "bases", "vars", "imageTags"}
    for path in KUSTOMIZE.rglob("kustomization.yaml"):
        used = set(yaml.safe_load(path.read_text()))
        assert not used & deprecated, (str(path), used & deprecated)
    overlay_kustomization = yaml.safe_load((KUSTOMIZE / "overlays" / overlay / "kustomization.yaml").read_text())
    if overlay in EKS:
        assert overlay_kustomization["components"][-1].endswith("infra-values"), "infra-values must come last"
    assert [i["name"] for i in overlay_kustomization["images"]] == ["titanic-api"]


# --- the first install (kustomize/README.md, "First install") -------------------------------------------

BOOTSTRAP = KUSTOMIZE / "bootstrap"
# The controllers' ServiceAccounts (namespace, name) as each Helm release creates them: the Pod Identity
# associations in terraform/ must name the same. Karpenter's is the chart's default, the release name.
HELM_SERVICE_ACCOUNTS = {
    "karpenter": ("kube-system", "karpenter"),
    "aws-load-balancer-controller": ("kube-system", "aws-load-balancer-controller"),
    "external-secrets": ("external-secrets", "external-secrets"),
    "external-dns": ("external-dns", "external-dns"),
}


def test_every_controller_is_installed_pinned_with_existing_values(overlay):
    only_for(EKS, overlay)
    releases = helm_releases(overlay)
    assert set(releases) == {*HELM_SERVICE_ACCOUNTS, "kube-prometheus-stack"}
    versions = (KUSTOMIZE / "README.md").read_text().split("## Versions", 1)[1].split("\n## ", 1)[0]
    for release, (_, version, _) in releases.items():
        assert version in versions, f"{release} {version} is not in the Versions table"
    ingress = one(overlay, "Ingress")
    assert releases["external-dns"][2]["sources"] == ["ingress"], "ExternalDNS publishes the Ingress's host"
    assert releases["external-dns"][2]["policy"] == "upsert-only"
    assert ingress["spec"]["rules"][0]["host"] == app_config(overlay)["DJANGO_ALLOWED_HOSTS"]


def node_selector(values, paths):
    """The nodeSelector a chart's template reads from values: the first of `paths` that is set."""
    for path in paths:
        node = values
        for key in path:
            node = node.get(key) or {} if isinstance(node, dict) else {}
        if node:
            return node
    return {}


def test_every_controller_runs_on_the_system_node_group(overlay):
    """The system group has no taint: a pod that does not select it may land on a Karpenter Spot node."""
    only_for(EKS, overlay)
    releases = helm_releases(overlay)
    assert set(CHART_WORKLOADS) == set(releases)
    label = system_node_label()
    for release, workloads in CHART_WORKLOADS.items():
        values = releases[release][2]
        for workload, (paths, _, _) in workloads.items():
            assert label.items() <= node_selector(values, paths).items(), f"{release} {workload}: no {label}"


def test_the_node_selector_check_can_fail(overlay):
    only_for(EKS, overlay)
    values = {"webhook": {"nodeSelector": {"other": "pool"}}, "global": {"nodeSelector": system_node_label()}}
    assert node_selector(values, CHART_WORKLOADS["external-secrets"]["webhook"][0]) == {"other": "pool"}
    assert node_selector({}, CHART_WORKLOADS["karpenter"]["controller"][0]) == {}


def test_the_app_rules_see_kube_state_metrics_in_their_own_namespace(overlay):
    """With enforcedNamespaceLabel, the operator would rewrite the namespace label of every series a
    ServiceMonitor scrapes to that ServiceMonitor's namespace (kube-state-metrics': monitoring) and add
    the rule's namespace to every selector of a PrometheusRule: the app's kube_* alerts never fire."""
    only_for(EKS, overlay)
    values = helm_releases(overlay)["kube-prometheus-stack"][2]
    rules = json.dumps(one(overlay, "PrometheusRule")["spec"])
    assert 'job=\\"kube-state-metrics\\"' in rules
    assert not values.get("prometheus", {}).get("prometheusSpec", {}).get("enforcedNamespaceLabel")
    assert not values.get("alertmanager", {}).get("alertmanagerSpec", {}).get("enforcedNamespaceLabel")


# The Kubernetes minors each pinned chart supports, as read upstream at that version: (version,
# oldest, newest; where no upper bound is published, the newest minor out then, 1.36). A new chart
# version or cluster minor fails the test below until checked again.
KUBERNETES_SUPPORT = {
    # website/content/en/docs/upgrading/compatibility.md: 1.35 needs >= 1.9; 1.36 lists 1.13.x only.
    "karpenter": ("1.14.1", "1.30", "1.35"),
    # Its docs: v2.5 and newer support Kubernetes 1.22+.
    "aws-load-balancer-controller": ("3.5.0", "1.22", "1.36"),
    # ESO's table (docs/introduction/stability-support.md) gives the k8s.io libraries it is built on
    # (2.9.0: v0.36.3, so 1.36; client-go works with servers one minor apart) while its own e2e suite
    # runs on kindest/node v1.33.4 (e2e/Makefile): 1.35 is inside both.
    "external-secrets": ("2.9.0", "1.33", "1.37"),
    # README, "Kubernetes version compatibility": 0.18+ on 1.33+ (EndpointSlices).
    "external-dns": ("1.21.1", "1.33", "1.36"),
    # Chart.yaml kubeVersion ">=1.25.0-0".
    "kube-prometheus-stack": ("88.5.3", "1.25", "1.36"),
}


def minor(version):
    return tuple(int(part) for part in version.split(".")[:2])


def test_every_controller_supports_the_clusters_kubernetes(overlay):
    only_for(EKS, overlay)
    variables = (REPO / "terraform" / "variables.tf").read_text()
    cluster = first_group(r'variable "kubernetes_version" \{.*?default\s*=\s*"([\d.]+)"', variables, re.DOTALL)
    assert minor(cluster) == minor(KUBERNETES_VERSION)
    releases = helm_releases(overlay)
    assert set(KUBERNETES_SUPPORT) == set(releases)
    for release, (version, oldest, newest) in KUBERNETES_SUPPORT.items():
        assert releases[release][1] == version, f"{release} moved to {releases[release][1]}: check its support"
        assert minor(oldest) <= minor(cluster) <= minor(newest), (release, version, cluster)


def test_karpenter_fits_the_managed_node_group(overlay):
    """Karpenter runs only on the managed nodes, one replica per node (the chart's required node
    affinity and hostname anti-affinity): more replicas than dev's one node stay Pending. It must
    not need CoreDNS, which may run on the nodes it manages."""
    only_for(EKS, overlay)
    values = helm_releases(overlay)["karpenter"][2]
    tfvars = (REPO / "terraform" / "envs" / f"{overlay}.tfvars").read_text()
    minimum = int(first_group(r"^node_min_size\s*=\s*(\d+)", tfvars, re.MULTILINE))
    assert 1 <= values["replicas"] <= minimum, (values["replicas"], minimum)
    assert values["dnsPolicy"] == "Default"


def test_the_controllers_service_accounts_have_pod_identities(overlay):
    """Each controller's ServiceAccount (and the app's two) is one that Terraform associates with a role."""
    only_for(EKS, overlay)
    releases = helm_releases(overlay)
    wanted = set()
    for release, (namespace, default_name) in HELM_SERVICE_ACCOUNTS.items():
        installed_in, _, values = releases[release]
        name = values.get("serviceAccount", {}).get("name") or default_name
        assert (installed_in, name) == (namespace, default_name), release
        wanted.add((namespace, name))
    wanted |= {("{app}", o["metadata"]["name"]) for o in of_kind(overlay, "ServiceAccount")}
    terraform = "".join(path.read_text() for path in (REPO / "terraform").glob("*.tf"))
    found = set(re.findall(r'namespace\s*=\s*"([^"]+)"\s*\n\s*service_account\s*=\s*"([^"]+)"', terraform))
    found = {("{app}" if "local.app_namespace" in ns or ns.startswith("titanic-") else ns, sa) for ns, sa in found}
    # The app's two (rds.tf): one association per entry of local.db_users, in the app namespace.
    assert re.search(
        r"namespace\s*=\s*local\.app_namespace\s*\n\s*service_account\s*=\s*each\.value\.service_account", terraform
    )
    db_users = first_group(r"db_users = \{(.*?)\n  \}", terraform, re.DOTALL)
    found |= {("{app}", sa) for sa in re.findall(r'service_account\s*=\s*"([^"]+)"', db_users)}
    assert wanted <= found, f"no Pod Identity association in terraform/ for {wanted - found}"


def kubectl_run_pod():
    """The pod `kubectl run ... --overrides "$(cat kustomize/bootstrap/dbroles-pod.json)"` creates:
    what kubectl run makes from its flags, with the overrides merged as a strategic merge patch."""
    [command] = [c for c in first_install_commands() if "kubectl run" in c]
    run = command[command.index("kubectl run") :].split()
    assert "--override-type=strategic" in run and '"$(cat' in run
    labels = dict(pair.split("=") for pair in run[run.index("--labels") + 1].split(","))
    name = run[2]
    container = {"name": name, "image": "titanic-api:" + "0" * 40, "stdin": True, "stdinOnce": True}
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}}
    pod["spec"] = {"containers": [container], "restartPolicy": "Never"}
    overrides = json.loads((BOOTSTRAP / "dbroles-pod.json").read_text())
    for key, value in overrides["spec"].items():
        if key == "containers":
            [patch] = [c for c in value if c["name"] == name]  # merged by name
            container.update(patch)
        else:
            pod["spec"][key] = value
    return pod


def test_the_database_roles_pod_passes_pod_security_and_the_network_policies(overlay):
    only_for(EKS, overlay)
    pod = kubectl_run_pod()
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    assert_hardened("dbroles", pod["spec"])
    [container] = pod["spec"]["containers"]
    assert container["stdin"] is True and "read -r DATABASE_URL" in container["command"][-1]
    assert not [e for e in container.get("env", []) if e["name"] == "DATABASE_URL"], "the URL comes from stdin only"
    assert container["command"][-1].endswith("python manage.py dbroles")
    labels = pod["metadata"]["labels"].items()
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(overlay, "NetworkPolicy")}
    assert policies["titanic-api-egress"]["podSelector"]["matchLabels"].items() <= labels
    assert not policies["titanic-api-ingress"]["podSelector"]["matchLabels"].items() <= labels
    assert not one(overlay, "Service", "titanic-api")["spec"]["selector"].items() <= labels


def test_the_app_never_takes_the_system_node_groups_room(overlay):
    """The system group has no taint: without a required node affinity, app pods could fill dev's one
    system node and leave a rescheduled controller Pending."""
    affinity = one(overlay, "Deployment")["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    [(key, value)] = system_node_label().items()
    assert terms and all(
        {"key": key, "operator": "NotIn", "values": [value]} in term["matchExpressions"] for term in terms
    )
