"""`make bench-smoke`: the benchmark harness runs end to end and writes sane results.

Targets are not asserted here: timing on shared CI machines is noise.
"""

import json
import subprocess
import sys

import pytest

from tests.support import REPO, tool_path

pytestmark = pytest.mark.e2e

ENDPOINTS = {"people", "detail", "filtered", "stats", "create"}


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
    assert {"people_ratio", "detail_ratio", "detail_p99_ms_at_8", "worker_rss_mb"} <= set(results["targets"])
    assert all(isinstance(target["met"], bool) for target in results["targets"].values())
