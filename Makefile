# One entry point for people, .ci/run and the GitHub workflows.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
TOOLS := .venv-tools
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py
# PostgreSQL for tests; override to run several suites side by side.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/titanic
export PATH := $(PATH):$(CURDIR)/$(TOOLS)/bin

.PHONY: help venv tools run test test-quick test-sqlite test-postgres postgres system-packages static lint schema migrations-check \
        hadolint secrets-scan k8s-check tf-check kind-e2e smoke compose-smoke bench bench-smoke bench-profile loadtest \
        dr-drill lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/base.txt requirements/dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements/base.txt -r requirements/dev.txt
	touch $@

venv: $(VENV)/.installed ## the project's virtualenv (.venv)

$(TOOLS)/.installed: requirements/tools.txt
	test -x $(TOOLS)/bin/python || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -qq --upgrade pip
	$(TOOLS)/bin/python -m pip install -qq -r requirements/tools.txt
	touch $@

tools: $(TOOLS)/.installed ## scanners and linters in their own virtualenv (.venv-tools)

run: venv ## serve http://127.0.0.1:8000 on SQLite with the dataset loaded
	DJANGO_DEBUG=1 $(MANAGE) migrate --noinput
	DJANGO_DEBUG=1 $(MANAGE) loadcsv
	DJANGO_DEBUG=1 $(MANAGE) runserver 127.0.0.1:8000

postgres: ## start the local PostgreSQL if it is down
	scripts/ensure-postgres

system-packages: ## Debian packages the end-to-end tests use (chromium, podman, prometheus, wrk, valgrind)
	scripts/install-system-packages

static: venv
	DJANGO_SECRET_KEY=collectstatic $(MANAGE) collectstatic --noinput --verbosity 0

test: venv tools postgres system-packages static ## lint, then the whole suite: SQLite pass, then PostgreSQL with coverage
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

# In the whole-suite runs (and so in CI) a missing tool fails its test; elsewhere the test is skipped.
test test-postgres: export TITANIC_REQUIRE_TOOLS := 1

test-quick: venv static ## the quick loop, nothing but the virtualenv: pytest -m "not e2e and not infra and not slow"
	$(VENV)/bin/pytest -q -m "not e2e and not infra and not slow"

test-sqlite: venv static ## the app's tests on SQLite
	DATABASE_URL=sqlite:///$(CURDIR)/.test-sqlite.db $(VENV)/bin/pytest -q passengers

test-postgres: venv static ## the whole suite on PostgreSQL, with coverage
	DATABASE_URL=$(TEST_DATABASE_URL) $(VENV)/bin/pytest --cov --cov-report=term:skip-covered --cov-fail-under=90

lint: venv ## ruff, ruff format, django-upgrade, mypy (the tools of .pre-commit-config.yaml, over every file)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	git ls-files -z '*.py' | xargs -0 $(VENV)/bin/django-upgrade --target-version 5.2
	$(VENV)/bin/mypy

schema: venv ## validate the OpenAPI schema
	DJANGO_DEBUG=1 $(MANAGE) spectacular --validate --fail-on-warn --file /dev/null

migrations-check: venv ## fail if models and migrations disagree
	DJANGO_DEBUG=1 $(MANAGE) makemigrations --check --dry-run

hadolint: tools ## lint the Dockerfile
	$(TOOLS)/bin/hadolint docker/Dockerfile

secrets-scan: venv ## detect-secrets against the committed baseline
	scripts/secrets-scan

k8s-check: venv tools ## render, validate and policy-scan the Kustomize overlays; RBAC, capacity, scripts/deploy
	$(VENV)/bin/pytest --no-cov tests/test_kustomize.py tests/test_rbac.py tests/test_capacity.py tests/test_deploy.py \
		tests/test_deploy_report.py tests/test_kind_e2e.py

kind-e2e: venv ## kind cluster + Envoy Gateway, build, deploy, contract suite through the route (needs Docker)
	scripts/kind-e2e

tf-check: venv tools ## parse, check and policy-scan the Terraform
	$(VENV)/bin/pytest --no-cov tests/test_terraform.py

smoke: venv system-packages ## build the image with podman and smoke-test it against PostgreSQL
	scripts/container-smoke

compose-smoke: venv $(if $(filter docker,$(COMPOSE_ENGINE)),,system-packages) ## docker/compose.yaml up, contract suite, restart, down (podman here; COMPOSE_ENGINE=docker)
	scripts/compose-smoke

bench: venv postgres system-packages ## benchmark the API under gunicorn with wrk (see docs/performance.md)
	$(PY) -m bench

bench-smoke: venv postgres system-packages ## a seconds-long run of the benchmark, to keep it working
	$(PY) -m bench --smoke

bench-profile: venv postgres system-packages ## instructions per cached read, layer by layer, under callgrind (docs/performance.md)
	$(PY) -m bench.profile

dr-drill: venv static ## restore drill: point-in-time recovery of a PostgreSQL of its own under load; prints RTO and RPO (docs/runbook.md)
	$(PY) -m tests.drill

# URL= the deployment (default: the app started here on PostgreSQL), TOKEN= a DRF token for the writes;
# LOADTEST_SECONDS, LOADTEST_USERS, LOADTEST_PROFILE, LOADTEST_REPORT (Markdown), ... : python -m loadtest --help
loadtest: venv $(if $(URL),,postgres) ## the Locust load test against URL= or the app here; fails on a missed threshold
	$(PY) -m loadtest $(if $(URL),--url "$(URL)")
loadtest: export LOADTEST_TOKEN := $(or $(TOKEN),$(LOADTEST_TOKEN))

lock: ## recompile requirements/*.txt from the .in files
	cd requirements && ../$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links base.in -o base.txt
	cd requirements && ../$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links dev.in -o dev.txt
	cd requirements && ../$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links tools.in -o tools.txt

clean: ## remove virtualenvs, databases and build output
	rm -rf $(VENV) $(TOOLS) staticfiles db.sqlite3 .test-sqlite.db .coverage htmlcov .mypy_cache .ruff_cache
