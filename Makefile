# The front door. `make` alone lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)
# DVC stages run `python ...`: make it the project's interpreter.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export TF_CPP_MIN_LOG_LEVEL ?= 2

TRIALS ?= 20
WORKERS ?= 2
VARIANTS ?= all
TIMEOUT ?= 0
STORAGE ?=

.PHONY: help venv repro test test-fast lint format tune ui dashboard bench bench-train clean cluster-seeds

help: ## List every target
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create .venv and install the project (re-runs when pyproject.toml changes)

repro: $(STAMP) ## Run the whole DVC pipeline (dvc repro) on params.yaml's data source
	$(BIN)/dvc repro $(ARGS)

test: $(STAMP) ## Run the whole test suite, slow tests included (what CI runs)
	$(BIN)/python -m pytest $(ARGS)

test-fast: $(STAMP) ## Run the tests that train nothing for real (-m 'not slow')
	$(BIN)/python -m pytest -m 'not slow' $(ARGS)

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check src pipeline tests examples
	$(BIN)/ruff format --check src pipeline tests examples

format: $(STAMP) ## ruff format and autofix
	$(BIN)/ruff format src pipeline tests examples
	$(BIN)/ruff check --fix src pipeline tests examples

tune: $(STAMP) ## Larger Optuna search: make tune TRIALS=50 WORKERS=2 VARIANTS=conv,vae [STORAGE=url]
	$(BIN)/dvc repro preprocess
	$(BIN)/python pipeline/tune.py --variants $(VARIANTS) --trials $(TRIALS) --workers $(WORKERS) \
		--timeout $(TIMEOUT) $(if $(STORAGE),--storage $(STORAGE))

ui: $(STAMP) ## MLflow UI on http://127.0.0.1:5000 (every trial and run)
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000

dashboard: $(STAMP) ## optuna-dashboard on http://127.0.0.1:8080 for the study storage
	$(BIN)/optuna-dashboard $(or $(STORAGE),sqlite:///tuning/optuna.db) --host 127.0.0.1 --port 8080

bench: $(STAMP) ## ONNX Runtime vs tf.function latency/throughput per encoder -> reports/bench.md
	$(BIN)/python pipeline/bench.py

SEEDS ?= 0,1,2
cluster-seeds: $(STAMP) ## Best variant's clustering head over SEEDS=0,1,2: mean ± std (after repro)
	$(BIN)/python pipeline/cluster.py $(if $(VARIANT),--variant $(VARIANT),--best) --seeds $(SEEDS)

bench-train: $(STAMP) ## Training images/s: seed model.fit vs the trainer -> reports/train_bench.md
	$(BIN)/dvc repro preprocess
	$(BIN)/python pipeline/bench_train.py

clean: ## Remove caches and pipeline outputs (keeps .venv, mlflow.db and Optuna storage)
	rm -rf .pytest_cache .ruff_cache data models tuning metrics plots exports/*/ reports/bench.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
