"""Alert rules, Grafana dashboard and runbook of kustomize/components/monitoring.

- promtool: `check rules` on the PrometheusRule's groups and `test rules` on rules-tests/, where
  every alert must have a firing and a not-firing case.
- End to end: the app under gunicorn (3 workers, PostgreSQL behind a TCP proxy the test can cut),
  a real Prometheus (Debian's package) scraping it every second with the labels the ServiceMonitor
  gives (job="titanic-api", namespace="titanic-prod") and evaluating the real rules. After traffic
  with 4xx, slow requests and a database outage, every app metric and selector the rules and the
  dashboard use must exist, every app-only dashboard query must return data, and the alerts that
  app metrics drive must be pending.

Metrics that only a cluster has (kube-state-metrics, cAdvisor) are listed in CLUSTER_METRICS;
everything else the PromQL names must exist in the end-to-end Prometheus.
"""

import contextlib
import json
import math
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import jsonschema
import pytest
import requests
import yaml

from tests.harness import REPO, tool_path
from tests.harness.gunicorn import HTTPS, Gunicorn
from tests.harness.net import TcpProxy, free_port
from tests.harness.postgres import database_url, dataset_database, scratch_name
from tests.infra_readers.kubernetes import crd_schemas
from tests.infra_readers.promql import metric_names, selectors

pytestmark = pytest.mark.infra

MONITORING = REPO / "kustomize" / "components" / "monitoring"
RULE_FILE = MONITORING / "prometheusrule.yaml"
RULE_TESTS = sorted((MONITORING / "rules-tests").glob("*.test.yaml"))
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/example-org/titanic-api/blob/main/docs/runbook.md"  # PLACEHOLDER org/repo
EXTRACTED_RULES = "titanic-api.rules.yaml"  # the name rules-tests/*.test.yaml load
DATABASE = scratch_name("monitoring")
NAMESPACE = "titanic-prod"
# What the dashboard variables stand for in the end-to-end queries: a rate window covering the
# whole test's traffic (Grafana's $__rate_interval would be ~4 scrape intervals).
DASHBOARD_VARIABLES = {"$__rate_interval": "2m", "$namespace": NAMESPACE, "${namespace}": NAMESPACE}

# Exported by kube-state-metrics or the kubelet's cAdvisor, which only a cluster has.
CLUSTER_METRICS = {
    "kube_deployment_spec_replicas": "kube-state-metrics",
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kube_horizontalpodautoscaler_spec_max_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_spec_min_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_status_current_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_status_desired_replicas": "kube-state-metrics",
    "kube_pod_container_resource_limits": "kube-state-metrics",
    "kube_pod_container_resource_requests": "kube-state-metrics",
    "kube_pod_container_status_ready": "kube-state-metrics",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "kube_pod_container_status_waiting_reason": "kube-state-metrics",
    "container_cpu_usage_seconds_total": "kubelet",
    "container_memory_working_set_bytes": "kubelet",
}
# The alerts the app's own metrics drive, which the end-to-end traffic must make pending.
OUTAGE_REQUEST_ID = "monitoring-e2e-outage"
APP_ALERTS = {"TitanicApiHigh5xxRatio", "TitanicApiHighLatencyP95", "TitanicApiDatabaseErrors"}


def substitute(expr):
    for variable, value in DASHBOARD_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unsubstituted dashboard variable in {expr}"
    return expr


# --- the rules -----------------------------------------------------------------------------------


def prometheus_rule():
    return yaml.safe_load(RULE_FILE.read_text())


def alerts():
    return [rule for group in prometheus_rule()["spec"]["groups"] for rule in group["rules"] if "alert" in rule]


def rule_expressions():
    return [(rule.get("alert") or rule["record"], rule["expr"]) for rule in alerts()]


def write_rule_groups(directory):
    """The PrometheusRule's spec is a Prometheus rule file: {groups: [...]}."""
    path = directory / EXTRACTED_RULES
    path.write_text(yaml.safe_dump(prometheus_rule()["spec"], sort_keys=False))
    return path


def test_prometheusrule_validates_against_its_crd():
    rule = prometheus_rule()
    schema = crd_schemas()[(rule["apiVersion"], rule["kind"])]
    # Not jsonschema.validate(): its check_schema() rejects the CRD's Go-syntax pattern
    # "^(?i)(abort|warn)?$" for partial_response_strategy (Python's re wants flags first).
    validator = jsonschema.Draft7Validator(schema)
    validator.validate(rule)
    broken = json.loads(json.dumps(rule))
    broken["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    broken["spec"]["groups"][1]["rules"][0]["severity"] = "critical"
    assert len(list(validator.iter_errors(broken))) == 2


def test_promtool_check_rules(tmp_path):
    result = subprocess.run(
        [tool_path("promtool"), "check", "rules", str(write_rule_groups(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_rule_unit_tests(tmp_path):
    assert RULE_TESTS, "no unit tests in rules-tests/"
    write_rule_groups(tmp_path)
    for path in RULE_TESTS:
        shutil.copy(path, tmp_path / path.name)
    result = subprocess.run(
        [tool_path("promtool"), "test", "rules", *(p.name for p in RULE_TESTS)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def test_every_alert_has_a_firing_and_a_not_firing_unit_test():
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        suite = yaml.safe_load(path.read_text())
        assert suite["rule_files"] == [EXTRACTED_RULES]
        for case in suite["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts without a firing case"
    assert names - quiet == set(), "alerts without a not-firing case"
    assert (firing | quiet) <= names, "unit tests for alerts that do not exist"


def github_anchors(markdown):
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, flags=re.MULTILINE):
        text = re.sub(r"[`*_]", "", heading).strip().lower()
        anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_every_alert_has_severity_annotations_and_a_runbook_section():
    anchors = github_anchors(RUNBOOK.read_text())
    assert "titanicapihigh5xxratio" in anchors
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        url, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert url == RUNBOOK_URL, name
        assert anchor == name.lower(), f"{name}: runbook anchor {anchor}"
        assert anchor in anchors, f"docs/runbook.md has no section for {name}"
    assert {rule["labels"]["severity"] for rule in alerts()} == {"critical", "warning"}


def test_runbook_links_to_its_own_sections_resolve():
    markdown = RUNBOOK.read_text()
    links = set(re.findall(r"\]\(#([^)]+)\)", markdown))
    assert len(links) >= 5
    assert links <= github_anchors(markdown), links - github_anchors(markdown)


# --- the dashboard ---------------------------------------------------------------------------------


def dashboard():
    assert len(DASHBOARDS) == 1, DASHBOARDS
    return json.loads(DASHBOARDS[0].read_text())


def dashboard_targets():
    """(panel title, expr with the dashboard's variables filled in) of every query of every panel."""
    return [
        (panel["title"], substitute(target["expr"]))
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_dashboard_uses_datasource_and_namespace_variables():
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert namespace["query"]["query"] == 'label_values(up{job="titanic-api"}, namespace)'
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert "$namespace" in target["expr"], (panel["title"], target["expr"])
            for window in re.findall(r"\[([^\]]+)\]", target["expr"]):
                assert window in {"$__rate_interval", "1h"}, (panel["title"], window)
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ["requests", "error", "p50", "p95", "p99", "queries", "query duration", "database errors"]:
        assert topic in titles, topic
    for topic in ["cpu", "memory", "replicas"]:
        assert topic in titles, topic


def test_selectors_name_their_job():
    """App selectors pin job="titanic-api" (the ServiceMonitor's job); cluster ones their exporter's."""
    for source, expr in rule_expressions() + dashboard_targets():
        for name, selector in selectors(expr):
            job = CLUSTER_METRICS.get(name, "titanic-api")
            assert f'job="{job}"' in selector, (source, selector)


def test_cluster_metrics_list_is_exact():
    used = set().union(*(metric_names(expr) for _, expr in rule_expressions() + dashboard_targets()))
    assert set(CLUSTER_METRICS) <= used, f"listed but unused: {set(CLUSTER_METRICS) - used}"
    assert not [m for m in CLUSTER_METRICS if m.startswith("django_")]


def test_overlays_ship_the_rule_and_the_dashboard():
    """The monitoring component puts the PrometheusRule and the dashboard ConfigMap in each overlay."""
    for overlay in ["dev", "prod"]:
        rendered = subprocess.run(
            [tool_path("kubectl"), "kustomize", str(REPO / "kustomize" / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rendered.returncode == 0, rendered.stderr
        objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
        rules = [o for o in objects if o["kind"] == "PrometheusRule"]
        assert len(rules) == 1
        assert rules[0]["spec"] == prometheus_rule()["spec"]
        boards = [o for o in objects if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]]
        assert len(boards) == 1, overlay
        assert boards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert [json.loads(v) for v in boards[0]["data"].values()] == [dashboard()]


# --- end to end: the app, a real Prometheus, traffic ------------------------------------------------


class Prometheus:
    def __init__(self, directory, app_port):
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        write_rule_groups(directory)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [EXTRACTED_RULES],
            "scrape_configs": [
                {
                    # what the ServiceMonitor's relabelling gives each pod: job = the Service name
                    "job_name": "titanic-api",
                    "metrics_path": "/metrics",
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{app_port}"],
                            "labels": {"namespace": NAMESPACE, "pod": "titanic-api-5c8d7f9b4-e2e00"},
                        }
                    ],
                }
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (directory / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                tool_path("prometheus"),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.directory / "prometheus.log").read_text()
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/-/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError("Prometheus did not start:\n" + (self.directory / "prometheus.log").read_text())

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def query(self, expr):
        response = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def alerts(self):
        return requests.get(self.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]


def drive_traffic(app, proxy):
    """Requests of every kind the rules and dashboard look at: 2xx, 4xx, slow, and a database outage.

    Each kind is sent once, then again after two scrapes: a counter first seen by Prometheus with
    its final value would show no increase, so rate() would be 0 in the test (and in production).
    """
    https = {**HTTPS, "Connection": "close"}
    session = requests.Session()

    def get(path, headers=None):
        return session.get(app.url + path, headers={**https, **(headers or {})}, timeout=30)

    people = get("/people").json()

    def normal(count):
        for i in range(count):
            assert get("/people").status_code == 200
            assert get(f"/people/{people[i]['uuid']}").status_code == 200
            assert get("/people/stats").status_code == 200
            assert get("/people?limit=5").status_code == 200
            assert get("/").status_code == 200

    def client_errors(count):
        for _ in range(count):
            assert get("/no-such-page").status_code == 404
            assert get(f"/people/{uuid.uuid4()}").status_code == 404
            assert get("/people?survived=maybe").status_code == 400
            unauthorised = session.post(
                app.url + "/people", json={}, headers={**https, "Authorization": "Token wrong"}, timeout=30
            )
            assert unauthorised.status_code == 401

    def outage(count):
        with proxy.down():
            assert get("/people/stats", headers={"X-Request-ID": OUTAGE_REQUEST_ID}).status_code == 503
            for _ in range(count - 1):
                assert get("/people/stats").status_code == 503
        assert get("/people/stats").status_code == 200

    def slow(count):
        # each message to PostgreSQL waits 0.6 s: an uncached /people/stats (5 round trips) > 1 s
        with proxy.slowed(0.6):
            results = []
            threads = [
                threading.Thread(target=lambda: results.append(get(f"/people/stats?search={uuid.uuid4()}")))
                for _ in range(count)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        assert len(results) == count
        assert all(r.status_code == 200 and r.elapsed.total_seconds() > 1 for r in results), [
            (r.status_code, r.elapsed.total_seconds()) for r in results
        ]

    for rounds in (1, 8):  # first appearance, then increases
        normal(rounds)
        client_errors(rounds)
        outage(rounds * 3)
        slow(rounds + 2)
        time.sleep(2.5)


@pytest.fixture(scope="module")
def stack():
    """Database, proxy, gunicorn (3 workers) and Prometheus; all removed afterwards, even on failure."""
    with contextlib.ExitStack() as cleanup:
        directory = Path(tempfile.mkdtemp(prefix="titanic-monitoring-"))
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        cleanup.enter_context(dataset_database(DATABASE))
        proxy = TcpProxy().start()
        cleanup.callback(proxy.stop)
        app = Gunicorn(
            directory,
            database_url=database_url(DATABASE, proxy.port),
            workers=3,
            env={"DJANGO_SECURE_SSL_REDIRECT": "1"},
        )
        cleanup.enter_context(app)
        prometheus = Prometheus(directory, app.port)
        cleanup.callback(prometheus.stop)
        prometheus.wait_ready()
        drive_traffic(app, proxy)
        yield app, prometheus


def wait_for(check, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def app_queries():
    """Every selector of the rules and dashboard, and every dashboard query, that uses app metrics only."""
    selectors_used = {
        selector
        for _, expr in rule_expressions() + dashboard_targets()
        for name, selector in selectors(expr)
        if name not in CLUSTER_METRICS
    }
    panels = [(title, expr) for title, expr in dashboard_targets() if not metric_names(expr) & set(CLUSTER_METRICS)]
    return sorted(selectors_used), panels


@pytest.mark.e2e
def test_end_to_end_metrics_exist_and_dashboard_queries_return_data(stack):
    app, prometheus = stack
    worker_files = {f.name.rsplit("_", 1)[-1] for f in Path(app.env["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db")}
    assert len(worker_files) >= 2, "one worker served everything: the multiprocess merge is untested"
    selectors_used, panels = app_queries()
    assert len(selectors_used) >= 8 and len(panels) >= 15
    assert wait_for(lambda: prometheus.query('up{job="titanic-api"} == 1'))

    missing = [s for s in selectors_used if not prometheus.query(f"count({s})")]
    assert not missing, f"selectors of the rules/dashboard that match nothing the app exports: {missing}"

    empty = []
    for title, expr in panels:
        values = [float(r["value"][1]) for r in prometheus.query(expr)]
        if not [v for v in values if math.isfinite(v)]:
            empty.append((title, expr, values))
    assert not empty, f"dashboard queries without data: {empty}"

    namespaces = {r["metric"]["namespace"] for r in prometheus.query('up{job="titanic-api"}')}
    assert namespaces == {NAMESPACE}, "the dashboard's namespace variable would be empty"


@pytest.mark.e2e
def test_end_to_end_app_alerts_go_pending(stack):
    _, prometheus = stack

    def active():
        return [a for a in prometheus.alerts() if a["state"] in {"pending", "firing"}]

    wait_for(lambda: {a["labels"]["alertname"] for a in active()} >= APP_ALERTS)
    found = active()
    names = {a["labels"]["alertname"] for a in found}
    assert names >= APP_ALERTS, f"not pending: {APP_ALERTS - names}"
    assert "TitanicApiTargetMissing" not in names, "the scrape target is up: TargetMissing must stay quiet"
    for alert in found:
        assert alert["labels"]["namespace"] == NAMESPACE, alert
    slow_views = {a["labels"]["view"] for a in found if a["labels"]["alertname"] == "TitanicApiHighLatencyP95"}
    assert "people-stats" in slow_views


@pytest.mark.e2e
def test_end_to_end_log_lines_carry_the_request_id_as_the_runbook_queries_it(stack):
    """docs/runbook.md matches raw lines on '"request_id":"<id>"' and parsed ones on request_id."""
    app, _ = stack
    needle = f'"request_id":"{OUTAGE_REQUEST_ID}"'
    lines = [line for line in app.log_lines() if needle in line]
    records = [json.loads(line) for line in lines]
    assert {r["request_id"] for r in records} == {OUTAGE_REQUEST_ID}
    assert len([r for r in app.log_lines() if OUTAGE_REQUEST_ID in r]) == len(lines)
    request_lines = [r for r in records if r["logger"] == "titanic.request"]
    assert len(request_lines) == 2, records  # the warm-up round and the bulk round
    assert all(r["status"] == 503 and r["path"] == "/people/stats" for r in request_lines)
    assert len(records) > len(request_lines), "the error itself is logged under the same request id"
