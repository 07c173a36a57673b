"""The restore drills: the local one for real (tests/drill.py, `make dr-drill`), the AWS one
(scripts/dr-drill) against fakes of the AWS CLI and kubectl (tests/fakes/dr-drill), its manifests
(kustomize/drill) against the Kubernetes schemas, and its report."""

import json
import os
import runpy
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from tests import drill
from tests.harness import REPO, tool_path

SCRIPT = REPO / "scripts/dr-drill"
FAKES = REPO / "tests/fakes/dr-drill"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/titanic-api:" + "ab" * 20
KUBERNETES_VERSION = "1.35.0"


# --- the local drill ------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_local_drill_restores_to_just_before_the_disaster_within_the_bounds(tmp_path, record_property):
    report = drill.run(tmp_path)
    record_property("figures", "\n".join(report.lines()))
    assert report.failures == []
    assert report.acknowledged_before > 0 and report.segments_replayed > 0
    assert report.drillcheck.startswith("drillcheck: passed")
    assert report.rto <= drill.MAX_RTO and report.rpo <= drill.MAX_RPO


# --- the AWS drill against fakes --------------------------------------------------------------------------


def source_instance(environment, latest_restorable):
    return {
        "DBInstanceIdentifier": f"titanic-{environment}",
        "DBInstanceStatus": "available",
        "DBInstanceClass": "db.t4g.micro",
        "MasterUsername": "titanic",
        "DBName": "titanic",
        "LatestRestorableTime": latest_restorable.isoformat(),
        "DBSubnetGroup": {"DBSubnetGroupName": f"titanic-{environment}"},
        "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-0123456789abcdef0", "Status": "active"}],
        "DBParameterGroups": [{"DBParameterGroupName": f"titanic-{environment}-20260101000000"}],
        "Endpoint": {"Address": f"titanic-{environment}.abc123.eu-west-1.rds.amazonaws.com", "Port": 5432},
        "TagList": [{"Key": "Project", "Value": "titanic"}],
    }


@pytest.fixture
def aws_drill(tmp_path):
    """aws_drill.run(env, restore=..., check=..., **env) -> code, output, calls, state, result, seconds;
    .start() and .outcome() for a run the test interrupts."""
    state_path, log, result_path = tmp_path / "state.json", tmp_path / "calls.log", tmp_path / "result.json"

    def start(environment="dev", *, restore="available", check="Complete", image=IMAGE, lag=120, extra=(), **env):
        latest = datetime.now(UTC) - timedelta(seconds=lag)
        instances = {i["DBInstanceIdentifier"]: i for i in (source_instance(environment, latest), *extra)}
        state = {"instances": instances, "restore": restore, "ready_after": 2, "image": image, "check": check}
        state_path.write_text(json.dumps({**state, **env.pop("state", {})}))
        log.write_text("")
        environ = {
            **os.environ,
            "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
            "FAKE_DRILL_STATE": str(state_path),
            "FAKE_DRILL_LOG": str(log),
            "DRILL_RESULT_FILE": str(result_path),
            "DRILL_ID": "42-1",
            "POLL_SECONDS": "0.05",
            **env,
        }
        # The interpreter named, not the shebang's: a pyenv shim would put its own `aws` first on PATH.
        return subprocess.Popen(
            [sys.executable, SCRIPT, "aws", environment],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def outcome(process, started):
        output, _ = process.communicate(timeout=120)
        calls = log.read_text().splitlines()
        assert not [c for c in calls if "UNEXPECTED" in c], calls
        return SimpleNamespace(
            code=process.returncode,
            output=output,
            calls=calls,
            state=json.loads(state_path.read_text()),
            result=json.loads(result_path.read_text()),
            seconds=time.monotonic() - started,
        )

    def run(*args, **kwargs):
        started = time.monotonic()
        return outcome(start(*args, **kwargs), started)

    return SimpleNamespace(run=run, start=start, outcome=outcome, log=log)


TARGET = "titanic-dev-drill-42-1"
JOB = "titanic-dr-drill-42-1"
DELETE_INSTANCE = f"aws rds delete-db-instance --db-instance-identifier {TARGET} --skip-final-snapshot"
DELETE_JOB = f"kubectl delete job/{JOB} secret/{JOB} --namespace titanic-dr-drill --ignore-not-found"


def steps(calls):
    """The calls, each once where it was repeated (polling): the drill's steps in order."""
    calls = [call for call in calls if not call.startswith(("-> ", "   "))]  # the fake's notes
    return [call for i, call in enumerate(calls) if i == 0 or call != calls[i - 1]]


def applied(state):
    (text,) = state["applied"]
    return {o["kind"]: o for o in yaml.safe_load_all(text)}


@pytest.mark.infra
def test_success_restores_checks_reports_and_deletes_everything(aws_drill):
    r = aws_drill.run("dev")
    assert r.code == 0, r.output
    described = f"aws rds describe-db-instances --db-instance-identifier {TARGET}"
    expected = [
        "aws rds describe-db-instances",  # leftovers
        "aws rds describe-db-instances --db-instance-identifier titanic-dev",
        "kubectl get deployment/titanic-api --namespace titanic-dev",
        "aws rds restore-db-instance-to-point-in-time --source-db-instance-identifier titanic-dev",
        described,
        "aws rds modify-db-instance --cli-input-json file:",
        described,
        "kubectl apply -f -",
        f"kubectl get job/{JOB} --namespace titanic-dr-drill",
        f"kubectl logs job/{JOB} --namespace titanic-dr-drill",
        DELETE_JOB,
        DELETE_INSTANCE,
    ]
    done = steps(r.calls)
    assert len(done) == len(expected), "\n".join(done)
    assert all(call.startswith(step) for call, step in zip(done, expected, strict=True)), "\n".join(done)
    restored = r.state["instances"][TARGET]
    args = restored["_restored"]["args"]
    assert {"--no-multi-az", "--no-publicly-accessible", "--no-deletion-protection", "Key=dr-drill,Value=42-1"} <= set(
        args
    )
    assert args[args.index("--db-subnet-group-name") + 1] == "titanic-dev"
    assert args[args.index("--vpc-security-group-ids") + 1] == "sg-0123456789abcdef0"
    assert args[args.index("--db-parameter-group-name") + 1] == "titanic-dev-20260101000000"
    assert args[args.index("--backup-retention-period") + 1] == "0"
    assert restored["DBInstanceStatus"] == "deleting"
    assert r.state["instances"]["titanic-dev"]["DBInstanceStatus"] == "available", "the source was touched"
    assert not [c for c in r.calls if c.startswith("-> ")], "an AWS call was refused (AccessDenied, ...)"

    # The Job connects to the throw-away instance with the password the drill set there, nothing else.
    objects = applied(r.state)
    url = urllib.parse.urlsplit(objects["Secret"]["stringData"]["DATABASE_URL"])
    assert (url.hostname, url.port, url.username, url.path) == (
        f"{TARGET}.abc123.eu-west-1.rds.amazonaws.com",
        5432,
        "titanic",
        "/titanic",
    )
    assert urllib.parse.unquote(url.password) == restored["_password"] and url.query == "sslmode=require"
    assert restored["_password"] not in "\n".join(r.calls) + r.output
    job = objects["Job"]["spec"]["template"]["spec"]
    assert job["containers"][0]["image"] == IMAGE
    assert job["containers"][0]["command"] == ["python", "manage.py", "drillcheck"]
    assert sorted(r.state["deleted"]) == [f"job/{JOB}", f"secret/{JOB}"]

    assert r.result["outcome"] == "success"
    assert 115 <= r.result["rpo_seconds"] <= 180  # LatestRestorableTime 120 s before the drill started
    assert r.result["rto_seconds"] >= 0 and set(r.result["steps"]) == {"restore", "new password", "check"}
    assert r.result["check"].startswith("drillcheck: passed")
    assert r.result["cleanup"] == f"job/{JOB} and its Secret deleted; deletion of {TARGET} requested"


@pytest.mark.infra
def test_a_failed_check_fails_the_drill_with_its_log_and_deletes_everything(aws_drill):
    r = aws_drill.run("prod", check="Failed")
    assert r.code == 1
    assert "1 migration(s) not applied" in r.output
    assert r.result["outcome"] == "failure" and "the check of titanic-prod-drill-42-1 failed" in r.result["message"]
    assert "rto_seconds" not in r.result
    assert r.state["instances"]["titanic-prod-drill-42-1"]["DBInstanceStatus"] == "deleting"
    assert sorted(r.state["deleted"]) == [f"job/{JOB}", f"secret/{JOB}"]


@pytest.mark.infra
def test_a_restore_that_never_becomes_available_stops_at_the_bound_and_is_deleted(aws_drill):
    # RDS refuses the first delete request (the instance is still being created); the drill retries.
    r = aws_drill.run("dev", restore="never", RESTORE_TIMEOUT="1", state={"delete_refusals": 1})
    assert r.code == 1
    assert r.seconds < 30, r.seconds
    assert f"{TARGET} did not become available within 1 s (status creating" in r.result["message"]
    assert not [c for c in r.calls if c.startswith(("aws rds modify", "kubectl apply", "kubectl delete"))]
    assert [c for c in r.calls if c.startswith(DELETE_INSTANCE)] == [
        DELETE_INSTANCE + " --delete-automated-backups"
    ] * 2
    assert r.state["instances"][TARGET]["DBInstanceStatus"] == "deleting"
    assert r.result["cleanup"] == f"deletion of {TARGET} requested"


@pytest.mark.infra
def test_an_instance_rds_keeps_refusing_to_delete_is_reported_left_behind(aws_drill):
    r = aws_drill.run("dev", CLEANUP_TIMEOUT="0.5", state={"delete_refusals": 1000})
    assert r.code == 1, r.output
    assert r.result["outcome"] == "failure" and r.result["message"].endswith("and checked; cleanup incomplete")
    assert r.result["cleanup"].startswith(f"job/{JOB} and its Secret deleted; LEFT BEHIND, delete it by hand: aws rds")
    assert "(InvalidDBInstanceState)" in r.result["cleanup"]
    assert r.state["instances"][TARGET]["DBInstanceStatus"] == "available"


@pytest.mark.infra
def test_a_check_that_never_ends_stops_at_the_bound_and_everything_is_deleted(aws_drill):
    r = aws_drill.run("dev", check="running", CHECK_TIMEOUT="1")
    assert r.code == 1
    assert "not finished within 1 s" in r.result["message"]
    assert sorted(r.state["deleted"]) == [f"job/{JOB}", f"secret/{JOB}"]
    assert r.state["instances"][TARGET]["DBInstanceStatus"] == "deleting"


@pytest.mark.infra
def test_sigterm_while_waiting_for_the_restore_still_deletes_the_instance(aws_drill):
    started = time.monotonic()
    process = aws_drill.start("dev", restore="never", POLL_SECONDS="0.2")
    while f"describe-db-instances --db-instance-identifier {TARGET}" not in aws_drill.log.read_text():  # restoring
        assert time.monotonic() < started + 30 and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    r = aws_drill.outcome(process, started)
    assert r.code == 1
    assert r.result["message"] == "interrupted by SIGTERM"
    assert r.state["instances"][TARGET]["DBInstanceStatus"] == "deleting"


@pytest.mark.infra
def test_instances_left_by_an_earlier_drill_are_deleted_first_and_others_left_alone(aws_drill):
    tagged = {"TagList": [{"Key": "dr-drill", "Value": "41-1"}], "DBInstanceStatus": "available"}
    leftover = {"DBInstanceIdentifier": "titanic-dev-drill-41-1", **tagged}
    untagged = {"DBInstanceIdentifier": "titanic-dev-drill-manual", "DBInstanceStatus": "available"}
    prod = {**leftover, "DBInstanceIdentifier": "titanic-prod-drill-41-1"}
    r = aws_drill.run("dev", extra=(leftover, untagged, prod))
    assert r.code == 0, r.output
    done = steps(r.calls)
    assert done.index(DELETE_INSTANCE.replace(TARGET, "titanic-dev-drill-41-1") + " --delete-automated-backups") < next(
        i for i, call in enumerate(done) if call.startswith("aws rds restore")
    )
    statuses = {name: i["DBInstanceStatus"] for name, i in r.state["instances"].items()}
    assert statuses == {
        "titanic-dev": "available",
        "titanic-dev-drill-41-1": "deleting",
        "titanic-dev-drill-manual": "available",
        "titanic-prod-drill-41-1": "available",
        TARGET: "deleting",
    }


@pytest.mark.infra
def test_an_rpo_beyond_its_bound_fails_the_drill_after_the_check(aws_drill):
    r = aws_drill.run("dev", lag=400)
    assert r.code == 1
    assert r.result["check"].startswith("drillcheck: passed")
    assert f"{TARGET} restored and checked, but RPO" in r.result["message"] and "exceeds 300 s" in r.result["message"]
    assert r.state["instances"][TARGET]["DBInstanceStatus"] == "deleting"


@pytest.mark.infra
def test_without_a_running_release_nothing_is_restored(aws_drill):
    r = aws_drill.run("dev", image="")
    assert r.code == 1 and "no titanic-api Deployment runs in namespace titanic-dev" in r.result["message"]
    assert not [c for c in r.calls if c.startswith("aws rds restore")]
    assert r.result["cleanup"] == "nothing to delete"


@pytest.mark.infra
@pytest.mark.parametrize("arguments", [["aws", "staging"], ["aws"], ["report", "x.json", "status"], []])
def test_usage_errors(arguments):
    process = subprocess.run([sys.executable, SCRIPT, *arguments], capture_output=True, text=True)
    assert process.returncode == 1 and "scripts/dr-drill aws <dev|prod>" in process.stderr


# --- the manifests ----------------------------------------------------------------------------------------


@pytest.mark.infra
def test_what_the_drill_applies_and_the_namespace_are_valid_objects_of_the_drill_namespace(aws_drill):
    job = applied(aws_drill.run("dev").state)
    namespace = list(yaml.safe_load_all((REPO / "kustomize/drill/namespace.yaml").read_text()))
    for document in [*namespace, *job.values()]:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        assert document["kind"] == "Namespace" or document["metadata"]["namespace"] == "titanic-dr-drill"
    assert namespace[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    pod = job["Job"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "titanic-dr-drill" and pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "DATABASE_IAM_AUTH", "value": "0"} in container["env"]
    timeout = int(SCRIPT.read_text().split('setting("CHECK_TIMEOUT", ', 1)[1].split(")", 1)[0])
    assert job["Job"]["spec"]["activeDeadlineSeconds"] < timeout, "the Job must end before the drill stops waiting"


@pytest.mark.infra
def test_checkov_finds_nothing_in_what_the_drill_applies(aws_drill, tmp_path):
    (tmp_path / "job.yaml").write_text(aws_drill.run("dev").state["applied"][0])
    (tmp_path / "namespace.yaml").write_text((REPO / "kustomize/drill/namespace.yaml").read_text())
    command = ["--framework", "kubernetes", "-d", str(tmp_path), "--skip-download", "--compact", "-o", "json"]
    result = subprocess.run([tool_path("checkov"), *command], capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0 and summary["passed"] > 50, summary
    assert not [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    skipped = report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} == {"CKV_K8S_43", "CKV_K8S_35"}, "each skip is annotated with its reason"


# --- the report -------------------------------------------------------------------------------------------

RESULT = {
    "outcome": "success",
    "message": "titanic-prod restored into titanic-prod-drill-42-1 and checked",
    "environment": "prod",
    "instance": "titanic-prod-drill-42-1",
    "image": IMAGE,
    "latest_restorable_time": "2026-12-07T05:25:00+00:00",
    "rpo_seconds": 183,
    "rto_seconds": 1395,
    "max_rto_seconds": 1800,
    "max_rpo_seconds": 300,
    "steps": {"restore": 1210, "new password": 125, "check": 60},
    "check": "drillcheck: passed: schema at passengers.0002_dataset_stamp_triggers",
    "cleanup": "deletion of titanic-prod-drill-42-1 requested",
    "duration_seconds": 1420,
}


@pytest.fixture(scope="module")
def script():
    """scripts/dr-drill's functions (its __main__ block does not run)."""
    return SimpleNamespace(**runpy.run_path(str(SCRIPT), run_name="dr_drill"))


@pytest.mark.infra
def test_summary_shows_rto_rpo_their_bounds_steps_and_cleanup(script):
    text = script.summary(RESULT)
    assert text.startswith("### Restore drill ✅ prod: success")
    assert "| RTO (restore request to checks passed) | 23 min 15 s (bound 30 min 0 s) |" in text
    assert "| RPO (drill start minus latest restorable time) | 3 min 3 s (bound 5 min 0 s) |" in text
    assert "| Steps | restore 20 min 10 s, new password 2 min 5 s, check 1 min 0 s |" in text
    assert "| Cleanup | deletion of titanic-prod-drill-42-1 requested |" in text


@pytest.mark.infra
def test_chat_message(script, monkeypatch):
    for name, value in {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_RUN_ID": "42",
    }.items():
        monkeypatch.setenv(name, value)
    text = json.loads(script.chat(RESULT))["text"]
    assert text.startswith("Restore drill ✅ prod: success - RTO 23 min 15 s, RPO 3 min 3 s - titanic-prod restored")
    assert text.endswith("https://github.com/o/r/actions/runs/42")


@pytest.mark.infra
def test_a_drill_that_reported_nothing_is_a_failure(tmp_path):
    """As the workflow calls it, with no result file: the drill died before writing one."""
    for what, expected in (("summary", "### Restore drill ❌ : failure"), ("chat", "RTO not measured")):
        report = [sys.executable, SCRIPT, "report", tmp_path / "missing.json", what]
        process = subprocess.run(report, capture_output=True, text=True, check=True)
        assert expected in process.stdout and "stopped before reporting" in process.stdout
