"""`make bench-smoke`: the benchmark harness runs end to end and writes sane results.

Targets are not asserted here: timing on shared CI machines is noise.
"""

import json
import subprocess
import sys

import pytest

from tests.harness import REPO, tool_path
from tests.harness.postgres import database_url

pytestmark = pytest.mark.e2e

ENDPOINTS = {"people", "detail", "people_token", "detail_token", "filtered", "stats", "create"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tool_path("wrk")
    output = tmp_path_factory.mktemp("bench") / "bench-smoke.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ratio to the ceiling" in run.stdout
    return json.loads(output.read_text())


def test_every_endpoint_and_its_ceiling_were_measured(results):
    assert set(results["endpoints"]) == ENDPOINTS
    for name, row in results["endpoints"].items():
        for measured in (row, row["ceiling"]):
            assert measured["requests"] > 0, name
            assert measured["requests_per_s"] > 0, name
            assert 0 < measured["p50_ms"] <= measured["p99_ms"], name
            assert measured["errors"] == 0, (name, measured["errors_by_kind"])
        # pooled over the rounds: not any single round's ratio, but within their range
        assert row["ratio_to_ceiling"] == pytest.approx(
            row["requests_per_s_pooled"] / row["ceiling"]["requests_per_s_pooled"], abs=0.001
        )
        assert len(row["round_ratios"]) == results["load"]["rounds"] >= 2
        assert row["round_ratios"][0] - 0.01 <= row["ratio_to_ceiling"] <= row["round_ratios"][-1] + 0.01
    assert results["endpoints"]["create"]["method"] == "POST"
    assert results["body_bytes"]["people"] > 100 * results["body_bytes"]["detail"]  # the whole list
    assert results["detail_at_8_connections"]["connections"] == 8
    latency = results["detail_at_8_connections"]
    assert 0 < latency["p99_ms"] <= latency["worst_p99_ms"] == max(latency["runs_p99_ms"])
    assert len(latency["runs_p99_ms"]) == results["load"]["rounds"]
    posts = results["create_at_8_connections"]
    assert posts["connections"] == 8 and posts["errors"] == 0
    assert 0 < posts["p50_ms"] <= posts["p99_ms"]
    assert [row["token"] for name, row in results["endpoints"].items() if name.endswith("_token")] == [True, True]


def test_the_ceiling_with_a_stamp_read_was_measured(results):
    for name in ("people", "detail"):
        row = results["stamped_ceiling"][name]
        assert row["errors"] == 0 and row["ratio_to_ceiling"] > 0, name
        assert len(row["round_ratios"]) == results["load"]["rounds"]


def test_the_stamped_ceiling_reads_the_stamp_before_it_answers(tmp_path):
    """Against a database without the passengers' tables, its first request fails."""
    (tmp_path / "body").write_bytes(b"[]")
    (tmp_path / "map.json").write_text(json.dumps({"GET /people": {"status": 200, "file": str(tmp_path / "body")}}))
    script = "import bench.ceiling as c; c.application({'REQUEST_METHOD': 'GET', 'PATH_INFO': '/people'}, print)"
    env = {"BENCH_CEILING_MAP": str(tmp_path / "map.json"), "PYTHONPATH": str(REPO)}
    answered = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert answered.returncode == 0, answered.stderr
    env["BENCH_CEILING_STAMP_URL"] = database_url("postgres")
    failed = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert failed.returncode != 0 and "passengers_datasetversion" in failed.stderr


def test_gunicorn_ran_with_the_shipped_config(results):
    assert results["gunicorn"]["worker_class"] == "gthread"
    assert int(results["gunicorn"]["workers"]) >= 2
    memory = results["memory"]
    assert len(memory["rss_mb_after_run"]) == int(results["gunicorn"]["workers"])
    assert 10 < memory["peak_rss_mb_max"] < 1000


def test_loadcsv_scaling_was_timed(results):
    assert [row["rows"] for row in results["loadcsv"]] == [887, 20_000]
    for row in results["loadcsv"]:
        assert row["seconds"] > 0 and row["peak_rss_mb"] > 10
    assert results["loadcsv"][1]["time_vs_smallest"] > 0


def test_targets_are_judged(results):
    ratios = {"people_ratio", "detail_ratio", "people_token_ratio", "detail_token_ratio"}
    assert {*ratios, "detail_p99_ms_at_8", "worker_rss_mb"} <= set(results["targets"])
    assert all(isinstance(target["met"], bool) for target in results["targets"].values())
