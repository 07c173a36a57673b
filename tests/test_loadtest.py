"""The load test (loadtest/, make loadtest): the verdict as a function, then real Locust runs.

- make loadtest without URL starts the app under gunicorn on PostgreSQL and passes its thresholds
  (the `local` set, made loose enough for a busy 2-CPU machine; errors are never allowed);
- against a server whose write throttle the writer exceeds, the run fails: the 429s are failed
  requests, the table says which check was missed, the exit code is 1.
Both runs are bounded (seconds, a handful of users) and stay on loopback.
"""

import os
import subprocess
import sys

import pytest
import yaml

from loadtest import MIX, PROFILES, format_mix, parse_mix
from loadtest.thresholds import (
    READ_ENDPOINTS,
    SETS,
    WRITE_ENDPOINTS,
    Endpoint,
    Latency,
    Measured,
    Thresholds,
    judge,
    table,
)
from tests.harness import REPO
from tests.harness.gunicorn import Gunicorn
from tests.harness.postgres import create_token, dataset_database, scratch_name

THRESHOLDS = Thresholds(
    max_error_ratio=0.01,
    min_share_of_offered=0.9,
    min_rps=5,
    reads=Latency(p95_ms=100, p99_ms=200),
    writes=Latency(p95_ms=300, p99_ms=600),
    endpoints={"GET /people": Latency(p95_ms=150, p99_ms=400)},
)
# The names the scenario reports its requests under (each must have its thresholds).
ENDPOINTS = set(READ_ENDPOINTS + WRITE_ENDPOINTS)


def endpoint(name="GET /people/{uuid}", requests=1000, failures=0, p95=50.0, p99=90.0):
    return Endpoint(name=name, requests=requests, failures=failures, p50_ms=10.0, p95_ms=p95, p99_ms=p99)


def verdict(endpoints, seconds=100.0, offered=None):
    checks = judge(Measured(endpoints=endpoints, seconds=seconds, offered_rps=offered), THRESHOLDS)
    return {check.name: check.passed for check in checks}


# --- the verdict --------------------------------------------------------------------------------


def test_a_run_within_every_threshold_passes():
    run = [endpoint(), endpoint("GET /people", p95=140, p99=390), endpoint("POST /people", 50, 0, 280, 590)]
    assert verdict(run, offered=11) == {
        "failed requests": True,
        "throughput": True,
        "GET /people p95": True,
        "GET /people p99": True,
        "GET /people/{uuid} p95": True,
        "GET /people/{uuid} p99": True,
        "POST /people p95": True,
        "POST /people p99": True,
    }


def test_each_threshold_is_missed_on_its_own():
    assert not verdict([endpoint(failures=11)])["failed requests"]  # 1.1 % > 1 %
    assert verdict([endpoint(failures=10)])["failed requests"]
    assert not verdict([endpoint(p95=101)])["GET /people/{uuid} p95"]
    assert not verdict([endpoint(p99=201)])["GET /people/{uuid} p99"]
    assert not verdict([endpoint("DELETE /people/{uuid}", p95=301)])["DELETE /people/{uuid} p95"]
    assert verdict([endpoint("GET /people", p95=149)])["GET /people p95"]  # its own, looser, limit


def test_throughput_is_judged_against_the_offered_rate_with_a_floor():
    assert not verdict([endpoint(requests=1000)], seconds=100, offered=12)["throughput"]  # 10 < 90 % of 12
    assert verdict([endpoint(requests=1000)], seconds=100, offered=11)["throughput"]
    # Users without pause offer no rate: the floor alone applies.
    assert verdict([endpoint(requests=500)], seconds=100)["throughput"]
    assert not verdict([endpoint(requests=499)], seconds=100)["throughput"]


def test_a_run_without_a_request_fails_and_idle_endpoints_are_not_judged():
    assert verdict([endpoint(requests=0)]) == {"failed requests": False, "throughput": False}


def test_the_table_is_markdown_for_a_job_summary():
    checks = judge(Measured([endpoint(p99=999)], 100, None), THRESHOLDS)
    lines = table(checks, markdown=True).splitlines()
    assert lines[:2] == ["| Check | Measured | Threshold | Result |", "|---|---|---|---|"]
    assert "| GET /people/{uuid} p99 | 999 ms | ≤ 200 ms | FAIL |" in lines
    assert table(checks).splitlines()[0].split() == ["Check", "Measured", "Threshold", "Result"]


def test_every_set_covers_every_endpoint_and_the_deployment_set_is_stricter_than_local():
    for thresholds in SETS.values():
        for name in ENDPOINTS:
            limit = thresholds.latency(name)
            assert 0 < limit.p95_ms <= limit.p99_ms
    assert SETS["local"].max_error_ratio == SETS["scale-out"].max_error_ratio == 0
    for name in ENDPOINTS:
        assert SETS["deployment"].latency(name).p95_ms <= SETS["local"].latency(name).p95_ms
    assert PROFILES["scale-out"].rate == 0 and PROFILES["scale-out"].thresholds == "scale-out"


def test_mix():
    assert parse_mix(format_mix(MIX)) == MIX
    assert parse_mix("detail=1, stats=0") == {"detail": 1, "stats": 0}
    for bad, message in (("detail=x", "whole number"), ("nope=1", "unknown task"), ("stats=0", "no task")):
        with pytest.raises(ValueError, match=message):
            parse_mix(bad)


# --- real runs ----------------------------------------------------------------------------------


def make_loadtest(*variables, env=None):
    return subprocess.run(
        ["make", "--no-print-directory", "loadtest", *variables],
        cwd=REPO,
        env={**os.environ, "LOADTEST_TOKEN": "", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def checks_of(markdown):
    """{check: result} from the report's table of checks."""
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.endswith(("| pass |", "| FAIL |"))]
    return {cells[0].strip(): cells[-1].strip() for cells in rows}


def every_check(endpoints):
    return {"failed requests", "throughput"} | {f"{name} {p}" for name in endpoints for p in ("p95", "p99")}


def all_passed_with_writes(markdown):
    """Every check passed; each write, and most reads, were judged (readers pick at random, so a short
    run may miss a rare one)."""
    checks = checks_of(markdown)
    assert set(checks.values()) == {"pass"}, checks
    assert every_check(WRITE_ENDPOINTS) <= set(checks) <= every_check(ENDPOINTS)
    assert len(set(checks) & every_check(READ_ENDPOINTS)) >= 2 * 4, checks


@pytest.mark.e2e
def test_make_loadtest_starts_the_app_here_and_passes_the_local_thresholds(tmp_path):
    report = tmp_path / "loadtest.md"
    run = make_loadtest("LOADTEST_SECONDS=15", "LOADTEST_USERS=4", f"LOADTEST_REPORT={report}")
    output = run.stdout + run.stderr
    assert run.returncode == 0, run.stderr[-4000:] + run.stdout[-3000:]
    assert "loadtest: the app under gunicorn" in output
    assert "loadtest: passed" in output and "(thresholds local)" in output
    markdown = report.read_text()
    assert markdown.startswith("### Load test: passed")
    all_passed_with_writes(markdown)  # the local run makes its own token


@pytest.mark.e2e
def test_make_loadtest_against_a_url_with_a_token_leaves_nothing_behind(tmp_path):
    with dataset_database(scratch_name("loadtest_url")) as url:
        token = create_token(url, "loadtest-writer", "add_passenger", "change_passenger", "delete_passenger")
        with Gunicorn(tmp_path, database_url=url, env={"DJANGO_SECURE_SSL_REDIRECT": "0"}) as server:
            report = tmp_path / "loadtest.md"
            run = make_loadtest(
                f"URL={server.url}",
                f"TOKEN={token}",
                "LOADTEST_SECONDS=10",
                "LOADTEST_USERS=2",
                "LOADTEST_THRESHOLDS=local",
                f"LOADTEST_REPORT={report}",
            )
            _, leftovers = server.request("GET", "/people?search=Loadtest")
    output = run.stdout + run.stderr
    assert run.returncode == 0, run.stderr[-4000:] + run.stdout[-3000:]
    assert token not in output, "the token stays out of the output"
    all_passed_with_writes(report.read_text())
    assert leftovers == b"[]", "the writer deletes every passenger it created"


@pytest.mark.e2e
def test_a_missed_threshold_fails_the_run(tmp_path):
    """The writer outruns the server's write throttle: the 429s are failures, and the run says so."""
    throttled = {"TITANIC_WRITE_THROTTLE_RATE": "6/min", "DJANGO_SECURE_SSL_REDIRECT": "0"}
    with dataset_database(scratch_name("loadtest_throttled")) as url:
        token = create_token(url, "loadtest-writer", "add_passenger", "change_passenger", "delete_passenger")
        with Gunicorn(tmp_path, database_url=url, env=throttled) as server:
            report = tmp_path / "report.md"
            run = subprocess.run(
                [
                    *[sys.executable, "-m", "loadtest", "--url", server.url, "--seconds", "12", "--users", "2"],
                    *["--writes-per-minute", "60", "--thresholds", "local", "--report", str(report)],
                ],
                cwd=REPO,
                env={**os.environ, "LOADTEST_TOKEN": token},
                capture_output=True,
                text=True,
                timeout=180,
            )
    output = run.stdout + run.stderr
    assert run.returncode == 1, run.stderr[-4000:] + run.stdout[-3000:]
    assert "loadtest: FAILED" in output and "missed: failed requests" in output
    markdown = report.read_text()
    assert markdown.startswith("### Load test: FAILED")
    assert checks_of(markdown)["failed requests"] == "FAIL"
    assert "429" in markdown  # the most frequent failures are listed


# --- where it runs ------------------------------------------------------------------------------


def dry_run(*arguments):
    return subprocess.run(["make", "-n", *arguments], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_make_loadtest_against_a_url_needs_no_local_postgresql():
    assert "ensure-postgres" in dry_run("loadtest")
    remote = dry_run("loadtest", "URL=https://dev.example.com", "TOKEN=secret-token")
    assert "ensure-postgres" not in remote
    assert '-m loadtest --url "https://dev.example.com"' in remote
    assert "secret-token" not in remote, "the token goes through the environment, not the command line"


def test_the_deploy_load_tests_dev_gently_and_prod_only_when_asked():
    workflows = REPO / ".github" / "workflows"
    deploy = yaml.safe_load((workflows / "deploy.yml").read_text())
    assert deploy["jobs"]["dev"]["with"]["load-test"] is True
    assert deploy["jobs"]["prod"]["with"]["load-test"] == "${{ inputs.load_test_prod == true }}"
    assert deploy[True]["workflow_dispatch"]["inputs"]["load_test_prod"]["default"] is False
    steps = yaml.safe_load((workflows / "deploy-environment.yml").read_text())["jobs"]["deploy"]["steps"]
    names = [step.get("name", step.get("uses", "")) for step in steps]
    deployed = next(i for i, step in enumerate(steps) if 'scripts/deploy "$ENVIRONMENT"' in step.get("run", ""))
    load = next(i for i, step in enumerate(steps) if step.get("run", "").startswith("make loadtest"))
    assert deployed < load, names
    assert steps[load]["if"] == "inputs.load-test && steps.dns.outputs.resolved == 'true'"  # DNS: the step before
    assert steps[load]["env"]["LOADTEST_PROFILE"] == "gentle" and "URL=" in steps[load]["run"]
    assert PROFILES["gentle"].thresholds is None  # with a URL: the deployment set
    summary = steps[load + 1]
    assert summary["if"] == "always() && inputs.load-test" and "GITHUB_STEP_SUMMARY" in summary["run"]
