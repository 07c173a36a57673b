"""scripts/deploy end to end against a fake kubectl (tests/fakes/kubectl) that plays the cluster.

Each test copies the script and the real kustomize/ tree into a scratch git repository (two commits,
OLD then NEW, so `git merge-base` can order them), puts the fake kubectl first on PATH, and serves
the smoke check's URL from a loopback HTTP server. The overlays are rendered by the real kubectl.
"""

import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from tests.support import REPO, tool_path

pytestmark = pytest.mark.infra

FAKES = REPO / "tests" / "fakes"
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/titanic-api"


class App(BaseHTTPRequestHandler):
    """GET / reports `commit`; `status` other than 200 makes every answer fail."""

    commit, status = None, 200

    def do_GET(self):
        body = {"/": {"message": "Welcome", "commit": App.commit}, "/people": []}.get(self.path)
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
    """deploy(env, commit, running=..., ...) -> code, output, calls, result (JSON), state, seconds."""
    state_path, log, result_path = tmp_path / "state.json", tmp_path / "calls.log", tmp_path / "result.json"

    def run(environment, commit, *, running=None, job="Complete", rollout="ok", serves=None, status=200, **env):
        deployment = None
        if running:  # revision 3 runs `running`; 2 ran something else before it
            image = f"{REGISTRY}:{running}"
            deployment = {"revision": 3, "image": image, "history": {"2": f"{REGISTRY}:{'0' * 40}", "3": image}}
        state_path.write_text(json.dumps({"deployment": deployment, "job": job, "rollout": rollout}))
        log.write_text("")
        App.commit, App.status = serves or commit, status
        environ = {
            **os.environ,
            "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
            "REAL_KUBECTL": tool_path("kubectl"),
            "FAKE_KUBECTL_STATE": str(state_path),
            "FAKE_KUBECTL_LOG": str(log),
            "APP_URL": app_url + "/",
            "DEPLOY_RESULT_FILE": str(result_path),
            "POLL_SECONDS": "0.1",
            "SMOKE_RETRIES": "0",
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
    "kubectl kustomize kustomize/overlays/dev",
    "kubectl apply -f before-job.yaml kinds=",
    "kubectl wait --for=condition=Ready --timeout=120s --namespace titanic-dev externalsecret --all",
    "kubectl delete -f job.yaml --ignore-not-found --wait=true",
    "kubectl apply -f job.yaml kinds=Job",
    "kubectl get job/titanic-api-migrate --namespace titanic-dev",
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
    assert {"ConfigMap", "ExternalSecret", "SecretStore", "ServiceAccount", "NetworkPolicy"} <= kinds
    assert not kinds & {"Deployment", "Job", "HorizontalPodAutoscaler", "Ingress", "PodDisruptionBudget"}


def test_normal_release(deploy, tree):
    r = deploy("dev", tree.new, running=tree.old)
    assert r.code == 0, r.output
    in_order(r.calls, FULL_RELEASE)
    assert not undos(r.calls)
    assert r.state["deployment"]["revision"] == 4
    assert r.result["previous_image"] == f"{REGISTRY}:{tree.old}"
    assert "serves " + tree.new in r.output


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
    assert r.result["outcome"] == "failure" and "nothing else was applied" in r.result["message"]


def test_rollout_failure_rolls_back_to_the_revision_running_before(deploy, tree):
    r = deploy("dev", tree.new, running=tree.old, rollout="fails")
    assert r.code == 1
    assert undos(r.calls) == ["kubectl rollout undo deployment/titanic-api --namespace titanic-dev --to-revision=3"]
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.old}"
    assert r.result["rolled_back_to"] == "3"
    assert not [c for c in r.calls if c.startswith("curl")]


@pytest.mark.parametrize(("serves", "status"), [("0" * 40, 200), (None, 503)], ids=["another-commit", "http-503"])
def test_smoke_check_failure_rolls_back(deploy, tree, serves, status):
    r = deploy("dev", tree.new, running=tree.old, serves=serves, status=status)
    assert r.code == 1, r.output
    assert undos(r.calls) == ["kubectl rollout undo deployment/titanic-api --namespace titanic-dev --to-revision=3"]
    assert r.state["deployment"]["image"] == f"{REGISTRY}:{tree.old}"
    assert r.result["outcome"] == "failure" and r.result["rolled_back_to"] == "3"


def test_smoke_check_failure_on_a_rerun_rolls_nothing_back(deploy, tree):
    """Undo would switch to the release before the one that was running: nothing changed, undo nothing."""
    r = deploy("dev", tree.new, running=tree.new, status=503)
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
