# The command surface. Every CI step is one of these targets; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# dvc.yaml runs `python -m mlops.stages.*`: make that the environment's python
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: help setup data repro lint format test demo bench-pipeline clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install requirements.txt (fast when nothing changed)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check pip==26.3
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $@

data: setup ## write the example data (deterministic) and track it with DVC
	mlops data
	dvc add -q data/raw

repro: setup ## run the pipeline (dvc repro): validate -> split -> train -> evaluate
	dvc repro

lint: setup ## ruff, ruff format --check, mypy
	ruff check src tests
	ruff format --check src tests
	mypy

format: setup ## fix what ruff can fix and format the code
	ruff check --fix src tests
	ruff format src tests

test: setup ## the whole test suite (unit, integration, e2e)
	pytest

demo: setup ## from a fresh clone to a trained, evaluated, tracked model
	@test -d data/raw || $(MAKE) --no-print-directory data
	dvc repro
	@echo
	@echo "Done. Where to look:"
	@echo "  metrics          dvc metrics show        (reports/metrics.json)"
	@echo "  plots            dvc plots show           -> dvc_plots/index.html; PNGs in reports/evaluate/"
	@echo "  data validation  reports/validation.json"
	@echo "  MLflow runs      $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db  -> http://127.0.0.1:5000"

bench-pipeline: setup ## time validate on 1M rows, train, evaluate, a no-op dvc repro (after make demo)
	python benchmarks/pipeline.py

clean: ## remove pipeline outputs, MLflow's local store and tool caches (keeps .venv and data/raw)
	rm -rf data/split models/pipeline.joblib mlflow.db mlartifacts mlruns dvc_plots
	rm -rf .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
