"""scripts/deploy end to end against a fake kubectl (tests/fakes/kubectl) that plays the cluster.

Each test copies the script and the real kustomize/ tree into a scratch git repository (two commits,
OLD then NEW, so `git merge-base` can order them), puts the fake kubectl first on PATH, and serves
the smoke check's URL from a loopback HTTP server. The overlays are rendered by the real kubectl.
The fake plays the AWS Load Balancer Controller too: an applied Ingress gets its ALB address (here the
loopback server) after a few reads, and pods created before that get no readiness gate.
"""

import json
import os
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import yaml

from tests.harness import REPO, tool_path

pytestmark = pytest.mark.infra

FAKES = REPO / "tests" / "fakes"
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/titanic-api"
# The load balancer controller gives the Ingress an address on its first read; the address is where
# the loopback app listens, as an ALB's DNS name leads to the ALB.
ALB = {"address": "127.0.0.1", "after": 1}


class App(BaseHTTPRequestHandler):
    """GET / reports the next commit of `commits` (the last one repeats: old pods draining, then the
    new ones); `status` other than 200 makes every answer fail. `hosts` records the Host headers."""

    commits: list[str] = []
    hosts: list[str] = []
    status = 200

    def do_GET(self):
        App.hosts.append(self.headers["Host"])
        commit = App.commits.pop(0) if len(App.commits) > 1 else App.commits[0]
        body = {"/": {"message": "Welcome", "commit": commit}, "/people": []}.get(self.path)
        status = App.status if body is not None else 404
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A scratch repository: scripts/deploy, kustomize/ (placeholders filled), commits OLD and NEW."""
    root = tmp_path_factory.mktemp("tree")
    (root / "scripts").mkdir()
    shutil.copy2(REPO / "scripts/deploy", root / "scripts/deploy")
    shutil.copytree(REPO / "kustomize", root / "kustomize")
    for path in (root / "kustomize").rglob("*.yaml"):  # stand in for the Terraform outputs
        path.write_text(path.read_text().replace("000000000000", "123456789012").replace(".placeholder.", ".example."))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.test"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "."], cwd=root, check=True)
    commits = []
    for message in ("old", "new"):
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", message], cwd=root, check=True)
        commits.append(subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout)
    return SimpleNamespace(root=root, old=commits[0].strip(), new=commits[1].strip())


@pytest.fixture
def deploy(tree, tmp_path, app_url):
    """deploy(env, commit, running=..., ...) -> code, output, calls, result (JSON), state, seconds, applied.

    serves: the commit GET / reports (default: the deployed one), or a list of them in order.
    ingress: the load balancer controller's behaviour (see tests/fakes/kubectl); fail: API errors.
    """
    state_path, log, result_path = tmp_path / "state.json", tmp_path / "calls.log", tmp_path / "result.json"
    applied = tmp_path / "applied"

    def run(
        environment,
        commit,
        *,
        running=None,
        job="Complete",
        rollout="ok",
        serves=None,
        status=200,
        ingress=ALB,
        fail=None,
        url=app_url,
        **env,
    ):
        deployment = None
        if running:  # revision 3 runs `running`; 2 ran something else before it
            image = f"{REGISTRY}:{running}"
            deployment = {"revision": 3, "image": image, "history": {"2": f"{REGISTRY}:{'0' * 40}", "3": image}}
        cluster = {"deployment": deployment, "job": job, "rollout": rollout, "ingress": ingress, "fail": fail or {}}
        state_path.write_text(json.dumps(cluster))
        log.write_text("")
        shutil.rmtree(applied, ignore_errors=True)
        App.commits = list(serves) if isinstance(serves, list) else [serves or commit]
        App.status, App.hosts = status, []
        environ = {
            **os.environ,
            "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
            "REAL_KUBECTL": tool_path("kubectl"),
            "FAKE_KUBECTL_STATE": str(state_path),
            "FAKE_KUBECTL_LOG": str(log),
            "FAKE_KUBECTL_APPLIED": str(applied),
            "APP_URL": url + "/",
            "DEPLOY_RESULT_FILE": str(result_path),
            "POLL_SECONDS": "0.1",
            "SMOKE_INTERVAL": "0.05",
            "SMOKE_TIMEOUT": "30",
            **env,
        }
        result_path.unlink(missing_ok=True)
        started = time.monotonic()
        process = subprocess.run(
            [tree.root / "scripts/deploy", environment, f"{REGISTRY}:{commit}"],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
        seconds = time.monotonic() - started
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        calls = log.read_text().splitlines()
        assert not [c for c in calls if c.endswith("UNEXPECTED")], calls
        return SimpleNamespace(
            code=process.returncode,
            output=process.stdout + process.stderr,
            calls=calls,
            result=result,
            state=json.loads(state_path.read_text()),
            seconds=seconds,
            applied={p.name: p.read_text() for p in sorted(applied.iterdir())} if applied.exists() else {},
        )

    return run


def in_order(calls, expected):
    """Every expected prefix appears in `calls`, in this order."""
    position = 0
    for prefix in expected:
        while position < len(calls) and not calls[position].startswith(prefix):
            position += 1
        assert position < len(calls), f"{prefix!r} missing or out of order in:\n" + "\n".join(calls)
        position += 1


def undos(calls):
    return [c for c in calls if c.startswith("kubectl rollout undo")]


FULL_RELEASE = [
    "kubectl get deployment/titanic-api --namespace titanic-dev --ignore-not-found",
    "kubectl kustomize kustomize/overlays/dev image=",
    "kubectl apply -f before-job.yaml kinds=",
    "kubectl wait --for=condition=Ready --namespace titanic-dev externalsecret --all --timeout=120s",
    "kubectl delete -f job.yaml --ignore-not-found --wait=true",
    "kubectl apply -f job.yaml kinds=Job",
    "kubectl get job/titanic-api-migrate --namespace titanic-dev",
    "kubectl get ingress/titanic-api --namespace titanic-dev",
    "kubectl apply -f rendered.yaml kinds=",
    "kubectl rollout status deployment/titanic-api --namespace titanic-dev",
]


def test_first_release(deploy, tree):
    r = deploy("dev", tree.new)
    assert r.code == 0, r.output
    in_order(r.calls, FULL_RELEASE)
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.new}"
    assert r.result["outcome"] == "success" and r.result["previous_image"] == ""
    before_job = next(c for c in r.calls if c.startswith("kubectl apply -f before-job.yaml"))
    kinds = set(before_job.split("kinds=")[1].split(","))
    assert {"ConfigMap", "ExternalSecret", "SecretStore", "ServiceAccount", "NetworkPolicy", "Ingress"} <= kinds
    assert not kinds & {"Deployment", "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert r.state["deployment"]["readiness_gate"] is True


def test_normal_release(deploy, tree):
    r = deploy("dev", tree.new, running=tree.old)
    assert r.code == 0, r.output
    in_order(r.calls, FULL_RELEASE)
    assert not undos(r.calls)
    assert r.state["deployment"]["revision"] == 4
    assert r.result["previous_image"] == f"{REGISTRY}:{tree.old}"
    assert "served " + tree.new in r.output


def test_rerun_of_the_same_commit(deploy, tree):
    r = deploy("dev", tree.new, running=tree.new)
    assert r.code == 0, r.output
    in_order(r.calls, FULL_RELEASE)
    assert r.state["deployment"]["revision"] == 3, "the same pod template makes no new revision"


def test_job_failure_is_reported_within_seconds_with_its_logs_and_nothing_else_applied(deploy, tree):
    r = deploy("dev", tree.new, running=tree.old, job="Failed")
    assert r.code == 1
    assert r.seconds < 15, r.seconds
    assert "ProgrammingError: column fare does not exist" in r.output
    assert "job/titanic-api-migrate failed" in r.output
    logs = "kubectl logs job/titanic-api-migrate --namespace titanic-dev --all-containers"
    in_order(r.calls, [*FULL_RELEASE[:7], logs])
    assert not [c for c in r.calls if c.startswith(("kubectl apply -f rendered.yaml", "kubectl rollout"))]
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.old}"
    assert r.result["outcome"] == "failure" and "the Deployment was not applied" in r.result["message"]


def test_rollout_failure_rolls_back_to_the_revision_running_before(deploy, tree):
    r = deploy("dev", tree.new, running=tree.old, rollout="fails")
    assert r.code == 1
    assert undos(r.calls) == ["kubectl rollout undo deployment/titanic-api --namespace titanic-dev --to-revision=3"]
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.old}"
    assert r.result["rolled_back_to"] == "3"
    assert not [c for c in r.calls if c.startswith("curl")]


@pytest.mark.parametrize(("serves", "status"), [("0" * 40, 200), (None, 503)], ids=["another-commit", "http-503"])
def test_smoke_check_failure_rolls_back(deploy, tree, serves, status):
    r = deploy("dev", tree.new, running=tree.old, serves=serves, status=status, SMOKE_TIMEOUT="2")
    assert r.code == 1, r.output
    assert undos(r.calls) == ["kubectl rollout undo deployment/titanic-api --namespace titanic-dev --to-revision=3"]
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.old}"
    assert r.result["outcome"] == "failure" and r.result["rolled_back_to"] == "3"


def test_smoke_check_failure_on_a_rerun_rolls_nothing_back(deploy, tree):
    """Undo would switch to the release before the one that was running: nothing changed, undo nothing."""
    r = deploy("dev", tree.new, running=tree.new, status=503, SMOKE_TIMEOUT="2")
    assert r.code == 1
    assert not undos(r.calls)
    assert "revision 3 keeps running" in r.output
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.new}" and r.result["rolled_back_to"] == ""


def test_first_release_failure_has_nothing_to_roll_back(deploy, tree):
    r = deploy("dev", tree.new, rollout="fails")
    assert r.code == 1
    assert not undos(r.calls)
    assert "nothing to roll back to" in r.output


def test_an_older_commit_never_replaces_a_newer_one(deploy, tree):
    r = deploy("dev", tree.old, running=tree.new)
    assert r.code == 0, r.output
    assert r.result["outcome"] == "skipped"
    assert not [c for c in r.calls if not c.startswith("kubectl get deployment/")], r.calls
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.new}"


def test_an_older_commit_deploys_when_asked_explicitly(deploy, tree):
    r = deploy("dev", tree.old, running=tree.new, DEPLOY_ALLOW_OLDER="1")
    assert r.code == 0, r.output
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.old}"


def test_a_running_commit_unknown_to_git_stops_the_deploy(deploy, tree):
    r = deploy("dev", tree.new, running="f" * 40)
    assert r.code == 1
    assert "cannot tell whether" in r.output
    assert not [c for c in r.calls if c.startswith("kubectl apply")]


@pytest.mark.parametrize("tag", ["latest", "0123abc", "main"])
def test_the_image_tag_must_be_a_full_commit_sha(deploy, tag):
    r = deploy("dev", tag)
    assert r.code == 1
    assert "full commit SHA" in r.output and r.calls == []


def test_prod_uses_its_own_namespace(deploy, tree):
    r = deploy("prod", tree.new, running=tree.old)
    assert r.code == 0, r.output
    assert "kubectl rollout status deployment/titanic-api --namespace titanic-prod --timeout=600s" in r.calls


def test_placeholders_stop_the_deploy_before_anything_is_applied(deploy, tree):
    infra = tree.root / "kustomize/overlays/dev/infra.yaml"
    original = infra.read_text()
    try:
        infra.write_text(original.replace("titanic-dev.example.", "titanic-dev.placeholder."))
        r = deploy("dev", tree.new)
    finally:
        infra.write_text(original)
    assert r.code == 1 and "placeholder values" in r.output
    assert not [c for c in r.calls if c.startswith("kubectl apply")]


def test_the_job_deadline_ends_before_the_deploy_stops_waiting():
    """A Job still running after the deploy gave up could be deleted mid-migration by the next one."""
    import yaml

    job = yaml.safe_load((REPO / "kustomize/components/migrate/job.yaml").read_text())
    script = (REPO / "scripts/deploy").read_text()
    wait = int(script.split("job_timeout=${JOB_TIMEOUT:-", 1)[1].split("}", 1)[0])
    assert job["spec"]["activeDeadlineSeconds"] + 30 <= wait
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0]}} in rules


def test_local_environment(deploy, tree):
    """`scripts/deploy local`: the in-cluster PostgreSQL is ready before the Job; no ExternalSecret."""
    r = deploy("local", tree.new)
    assert r.code == 0, r.output
    in_order(
        r.calls,
        [
            "kubectl get deployment/titanic-api --namespace titanic-local",
            "kubectl kustomize kustomize/overlays/local",
            "kubectl apply -f before-job.yaml kinds=",
            "kubectl rollout status statefulset/postgres --namespace titanic-local",
            "kubectl apply -f job.yaml kinds=Job",
            "kubectl apply -f rendered.yaml kinds=",
            "kubectl rollout status deployment/titanic-api --namespace titanic-local",
        ],
    )
    assert not [c for c in r.calls if "externalsecret" in c]
    before_job = next(c for c in r.calls if c.startswith("kubectl apply -f before-job.yaml"))
    assert {"Secret", "StatefulSet", "Service", "NetworkPolicy"} <= set(before_job.split("kinds=")[1].split(","))
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.new}"


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


def test_the_render_is_kustomizes_own_output_with_only_the_image_set(deploy, tree):
    """No text edits of the render: what is applied is `kubectl kustomize` of the overlay, the image
    set by Kustomize in every container that runs the app (the Deployment's and the Job's)."""
    r = deploy("prod", tree.new, running=tree.old)
    assert r.code == 0, r.output
    assert f"kubectl kustomize kustomize/overlays/prod image={REGISTRY}:{tree.new}" in r.calls
    applied = documents(next(text for name, text in r.applied.items() if name.endswith("rendered.yaml")))
    overlay = subprocess.run(
        [tool_path("kubectl"), "kustomize", tree.root / "kustomize/overlays/prod"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = documents(re.sub(r"(image: )\S*titanic-api:\S+", rf"\g<1>{REGISTRY}:{tree.new}", overlay))
    assert applied == expected
    images = re.findall(r"image: (\S+)", yaml.safe_dump_all(applied))
    assert images and set(images) == {f"{REGISTRY}:{tree.new}"}


def test_the_ingress_gets_its_load_balancer_before_the_new_pods_exist(deploy, tree):
    """The controller injects the ALB readiness gate only into pods created after the target group
    binding exists, which it makes before it writes the Ingress's address."""
    r = deploy("dev", tree.new, running=tree.old, ingress={"address": "127.0.0.1", "after": 3})
    assert r.code == 0, r.output
    ingress = "kubectl get ingress/titanic-api --namespace titanic-dev"
    in_order(
        r.calls,
        ["kubectl apply -f before-job.yaml kinds=", ingress, ingress, ingress, "kubectl apply -f rendered.yaml"],
    )
    before_job = next(c for c in r.calls if c.startswith("kubectl apply -f before-job.yaml"))
    assert "Ingress" in before_job.split("kinds=")[1].split(",")
    assert r.state["deployment"]["readiness_gate"] is True


def test_the_fake_notices_pods_created_before_the_load_balancer(tmp_path):
    """The check above can fail: a Deployment applied before the Ingress has its address gets no gate."""
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"deployment": None, "job": "Complete", "rollout": "ok", "ingress": dict(ALB)}))
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text("kind: Ingress\n---\nkind: Deployment\nspec:\n      - image: titanic-api:1\n")
    environ = {**os.environ, "FAKE_KUBECTL_STATE": str(state), "FAKE_KUBECTL_LOG": str(tmp_path / "log")}
    environ["FAKE_KUBECTL_APPLIED"] = str(tmp_path / "applied")
    subprocess.run([FAKES / "kubectl", "apply", "-f", manifest], env=environ, check=True)
    assert json.loads(state.read_text())["deployment"]["readiness_gate"] is False


def test_no_load_balancer_stops_the_deploy_before_the_rollout(deploy, tree):
    r = deploy("dev", tree.new, running=tree.old, ingress=None, INGRESS_TIMEOUT="1")
    assert r.code == 1
    assert "ingress/titanic-api got no load balancer address within 1s" in r.result["message"]
    assert not [c for c in r.calls if c.startswith(("kubectl apply -f rendered.yaml", "kubectl rollout"))]
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.old}"


def test_a_first_release_before_dns_resolves_is_checked_through_the_alb(deploy, tree, app_url):
    """No DNS record yet (the .invalid name never resolves): the smoke check reaches the ALB address
    from the Ingress status, with the public name as Host (and TLS server name: curl --connect-to)."""
    port = app_url.rsplit(":", 1)[1]
    r = deploy("dev", tree.new, url=f"http://titanic-dev.invalid:{port}", ingress={"address": "127.0.0.1", "after": 2})
    assert r.code == 0, r.output
    assert r.result["outcome"] == "success"
    assert App.hosts and set(App.hosts) == {f"titanic-dev.invalid:{port}"}
    assert "served " + tree.new in r.output


def test_once_the_public_name_resolves_the_smoke_check_uses_it(deploy, tree, app_url):
    port = app_url.rsplit(":", 1)[1]
    unreachable = {"address": "192.0.2.1", "after": 1}  # TEST-NET-1: the ALB path would fail
    r = deploy("dev", tree.new, running=tree.old, url=f"http://localhost:{port}", ingress=unreachable)
    assert r.code == 0, r.output
    assert App.hosts and set(App.hosts) == {f"localhost:{port}"}


def test_old_pods_answering_while_they_drain_do_not_roll_back(deploy, tree):
    """Right after the rollout, old pods in their preStop sleep still get requests from the ALB."""
    answers = [tree.old, tree.new, tree.old, tree.old, tree.new]
    r = deploy("dev", tree.new, running=tree.old, serves=answers)
    assert r.code == 0, r.output
    assert not undos(r.calls)
    assert r.result["outcome"] == "success"


@pytest.fixture
def short_grace(tree):
    """The tree's pods live at most 1 s after termination: the drain window becomes 1 s."""
    base = tree.root / "kustomize/base/deployment.yaml"
    original = base.read_text()
    base.write_text(re.sub(r"terminationGracePeriodSeconds: \d+", "terminationGracePeriodSeconds: 1", original))
    yield
    base.write_text(original)


def test_new_pods_answering_with_the_previous_commit_roll_back_after_the_drain_window(deploy, tree, short_grace):
    r = deploy("dev", tree.new, running=tree.old, serves=tree.old, SMOKE_TIMEOUT="600")
    assert r.code == 1, r.output
    assert "still reports the previous commit" in r.output, "the drain window ends it, not the smoke timeout"
    assert undos(r.calls) == ["kubectl rollout undo deployment/titanic-api --namespace titanic-dev --to-revision=3"]
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.old}"


def test_a_transient_api_error_while_polling_the_job_is_retried(deploy, tree):
    r = deploy("dev", tree.new, running=tree.old, fail={"get job/titanic-api-migrate": 2})
    assert r.code == 0, r.output
    assert "kubectl get job/titanic-api-migrate failed (1 of 5, retrying): Unable to connect to the server" in r.output
    assert "(2 of 5, retrying)" in r.output
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.new}"


def test_an_api_error_that_persists_stops_the_deploy_and_says_what_failed(deploy, tree):
    r = deploy("dev", tree.new, running=tree.old, fail={"get job/titanic-api-migrate": 9}, KUBECTL_ATTEMPTS="3")
    assert r.code == 1
    assert r.result["message"].startswith(
        "kubectl get job/titanic-api-migrate failed 3 times in a row: Unable to connect"
    )
    assert not [c for c in r.calls if c.startswith("kubectl apply -f rendered.yaml")]


def test_transient_api_errors_while_changing_the_cluster_are_retried(deploy, tree):
    """A blip of the API server during an apply, the Job's delete, a wait or the rollout's status
    does not fail a good deploy; each wait keeps its deadline."""
    fail = {"apply -f": 2, "delete -f": 1, "wait --for=condition=Ready": 1, "rollout status deployment/": 1}
    r = deploy("dev", tree.new, running=tree.old, fail=fail)
    assert r.code == 0, r.output
    for what in ["apply -f before-job.yaml", "delete -f job.yaml", "wait --for=condition=Ready", "rollout status"]:
        assert f"kubectl {what} failed (1 of 5, retrying): Unable to connect to the server" in r.output, what
    assert "kubectl apply -f before-job.yaml failed (2 of 5, retrying)" in r.output
    waits = [c for c in r.calls if c.startswith("kubectl wait --for=condition=Ready")]
    assert len(waits) == 2 and all(re.search(r"--timeout=1[12]\ds( FAILED)?$", c) for c in waits), waits
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.new}" and not undos(r.calls)


def test_an_api_error_that_persists_during_an_apply_stops_the_deploy_and_names_it(deploy, tree):
    r = deploy("dev", tree.new, running=tree.old, fail={"apply -f": 9}, KUBECTL_ATTEMPTS="3")
    assert r.code == 1
    assert r.result["message"].startswith("kubectl apply -f before-job.yaml failed 3 times in a row: Unable to connect")
    assert len([c for c in r.calls if c.startswith("kubectl apply")]) == 3
    assert not [c for c in r.calls if c.startswith(("kubectl delete", "kubectl rollout"))]


@pytest.mark.parametrize("rollout", ["fails", "times out"])
def test_a_rollout_that_failed_or_timed_out_is_not_retried(deploy, tree, rollout):
    """Past its progress deadline or its --timeout, the rollout has failed: roll back at once."""
    r = deploy("dev", tree.new, running=tree.old, rollout=rollout)
    assert r.code == 1
    statuses = [c for c in r.calls if c.startswith(("kubectl rollout status", "kubectl rollout undo"))]
    assert [c.split(" --")[0] for c in statuses] == [
        "kubectl rollout status deployment/titanic-api",
        "kubectl rollout undo deployment/titanic-api",
        "kubectl rollout status deployment/titanic-api",
    ], statuses
    assert "retrying" not in r.output
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.old}"


def test_the_workflow_gives_the_deploy_time_for_every_wait():
    """GitHub kills a job at timeout-minutes: the deploy's bounded waits (and a rollback) must fit."""
    script = (REPO / "scripts/deploy").read_text()

    def default(name, variable=None):
        value = rf"\${{{variable}:-(\d+)}}" if variable else r"(\d+)"
        match = re.search(rf"^{name}={value}$", script, re.MULTILINE)
        assert match, f"scripts/deploy sets no {name}"
        return int(match.group(1))

    rollout = default("rollout_timeout", "ROLLOUT_TIMEOUT")
    waits = {
        "ExternalSecrets": default("secrets_timeout"),
        "migrate Job": default("job_timeout", "JOB_TIMEOUT"),
        "load balancer": default("ingress_timeout", "INGRESS_TIMEOUT"),
        "rollout": rollout,
        "smoke check": default("smoke_timeout", "SMOKE_TIMEOUT"),
        "rollback's rollout": rollout,
    }
    workflow = yaml.safe_load((REPO / ".github/workflows/deploy-environment.yml").read_text())
    job = workflow["jobs"]["deploy"]
    [dns] = [s for s in job["steps"] if s.get("id") == "dns"]
    waits["the public name (before the load test)"] = dns["env"]["DNS_WAIT_SECONDS"]
    from loadtest import PROFILES

    waits["load test"] = PROFILES["gentle"].seconds
    minutes = job["timeout-minutes"]
    assert sum(waits.values()) + 5 * 60 <= minutes * 60, (waits, minutes)  # 5 minutes for the rest
