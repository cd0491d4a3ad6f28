# The front door. `make` alone lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)
# DVC stages run `python ...`: make it the project's interpreter.
export PATH := $(abspath $(BIN)):$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export TF_CPP_MIN_LOG_LEVEL ?= 2

TRIALS ?= 20
WORKERS ?= 2
VARIANTS ?= all
TIMEOUT ?= 0
STORAGE ?=
# make server: the team's MLflow tracking server (PostgreSQL backend, artifacts served by it).
HOST ?= 127.0.0.1
PORT ?= 5000
BACKEND_STORE ?= postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow
ARTIFACTS ?= $(CURDIR)/mlserver/artifacts
ALLOWED_HOSTS ?=
# make push / pull: empty for .dvc/config's remote `shared`; a directory or s3://bucket/prefix.
DVC_REMOTE ?=

.PHONY: help venv quickstart repro test test-fast lint format tune ui server push pull dashboard bench \
	bench-train clean cluster-seeds cluster-shift train-seeds kill-sweep triton batch-encode \
	bench-batch sample-images bench-data serve promote bench-anomaly bench-photos bench-defects \
	deps verify-unchanged

help: ## List every target
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[pipeline,serving,batch,dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create .venv and install the project (re-runs when pyproject.toml changes)

QUICKSTART_VARIANT ?= dense
QUICKSTART_NAME := quickstart-$(shell date +%Y%m%d-%H%M%S)
# The quickstart's runs and registered models go to a store of their own: the workspace's
# registry (make serve / promote) never sees a model trained on 8x8 digits.
QUICKSTART_STORE ?= sqlite:///$(CURDIR)/mlflow-quickstart.db
quickstart: $(STAMP) ## Offline, ~3 min: one variant on the bundled digits through every stage, as a DVC experiment (workspace and its registry untouched)
	MLFLOW_TRACKING_URI=$(QUICKSTART_STORE) $(BIN)/dvc exp run --temp --name $(QUICKSTART_NAME) \
		-S data.source=digits -S tune.n_trials=2 evaluate@$(QUICKSTART_VARIANT) cluster@$(QUICKSTART_VARIANT)
	@$(BIN)/python -m autoencoders.reporting.experiment $(QUICKSTART_NAME) --variant $(QUICKSTART_VARIANT)
	@echo "quickstart: every stage ran on digits in a temporary copy; its MLflow runs and models: MLFLOW_TRACKING_URI=$(QUICKSTART_STORE) make ui"

# make repro: chains at once (empty: one per usable core) and each chain's threads per stage.
JOBS ?=
CHAIN_THREADS ?= 1
repro: $(STAMP) ## The whole pipeline: fetch, preprocess, the variants' chains side by side (JOBS=n at once, default one a core), the report [ARGS='--keep-going' or '--variants conv,dense']; `dvc repro` alone runs it in turn
	$(BIN)/python tools/repro_chains.py --threads $(CHAIN_THREADS) $(if $(JOBS),--workers $(JOBS)) $(ARGS)

deps: $(STAMP) ## Rewrite dvc.yaml's code deps from each stage script's import closure (tools/stage_deps.py)
	$(BIN)/python tools/stage_deps.py

verify-unchanged: $(STAMP) ## Re-run STAGE=train@conv in a scratch copy, compare outputs byte for byte [COMMIT=1: dvc commit]
	@test -n "$(STAGE)" || { echo "verify-unchanged: name the stage, e.g. STAGE=train@conv"; exit 2; }
	$(BIN)/python tools/verify_unchanged.py '$(STAGE)' $(if $(COMMIT),--commit)

test: $(STAMP) ## Run the whole test suite, slow tests included (what CI runs)
	$(BIN)/python -m pytest $(ARGS)

test-fast: $(STAMP) ## Run the tests not marked slow (-m 'not slow'): tiny models for a few steps, no pipelines
	$(BIN)/python -m pytest -m 'not slow' $(ARGS)

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check src pipeline tests examples tools
	$(BIN)/ruff format --check src pipeline tests examples tools

format: $(STAMP) ## ruff format and autofix
	$(BIN)/ruff format src pipeline tests examples tools
	$(BIN)/ruff check --fix src pipeline tests examples tools

tune: $(STAMP) ## Larger Optuna search: make tune TRIALS=50 WORKERS=2 VARIANTS=conv,vae [STORAGE=url]
	$(BIN)/dvc repro preprocess
	@# silent: STORAGE may hold a password; tune.py prints it masked
	@$(BIN)/python pipeline/tune.py --variants $(VARIANTS) --trials $(TRIALS) --workers $(WORKERS) \
		--timeout $(TIMEOUT) $(if $(STORAGE),--storage $(STORAGE))

ui: $(STAMP) ## MLflow UI on 127.0.0.1:PORT; prints the link to the training runs (a team: the server's)
	@$(BIN)/python -m autoencoders.services.tracking_server ui --host 127.0.0.1 --port $(PORT)

server: $(STAMP) ## Team MLflow server: make server [BACKEND_STORE=postgresql+psycopg://... ARTIFACTS=dir|s3://.. HOST=0.0.0.0]
	@$(BIN)/python -m autoencoders.services.tracking_server server --backend-store '$(BACKEND_STORE)' \
		--artifacts '$(ARTIFACTS)' --host $(HOST) --port $(PORT) \
		$(if $(ALLOWED_HOSTS),--allowed-hosts '$(ALLOWED_HOSTS)')

push: $(STAMP) ## Upload data, models and exports to the DVC remote [DVC_REMOTE=dir|s3://...]
	$(BIN)/python -m autoencoders.services.remote push $(if $(DVC_REMOTE),--url '$(DVC_REMOTE)') $(ARGS)

pull: $(STAMP) ## Download them from the DVC remote (a fresh clone skips retraining)
	$(BIN)/python -m autoencoders.services.remote pull $(if $(DVC_REMOTE),--url '$(DVC_REMOTE)') $(ARGS)

# make serve / promote: the registered <VARIANT>-encoder (ROLE=scorer: -scorer) in MLFLOW_TRACKING_URI.
SERVE_PORT ?= 5001
ROLE ?= encoder
serve: $(STAMP) ## MLflow's model server: make serve VARIANT=conv [VERSION=n|ALIAS=champion] [ROLE=scorer] [HOST=127.0.0.1] [SERVE_PORT=5001]
	@$(BIN)/python -m autoencoders.services.serving serve --variant $(or $(VARIANT),conv) --role $(ROLE) \
		$(if $(VERSION),--version $(VERSION)) $(if $(ALIAS),--alias $(ALIAS)) --host $(HOST) --port $(SERVE_PORT)

promote: $(STAMP) ## Move the alias champion to the candidate (or VERSION=n) if it matches the champion's contract, data and val loss (FORCE=1: anyway): make promote VARIANT=conv [VERSION=n] [FORCE=1]
	@$(BIN)/python -m autoencoders.services.serving promote --variant $(or $(VARIANT),conv) \
		$(if $(VERSION),--version $(VERSION)) $(if $(filter 1,$(FORCE)),--force)

DASHBOARD_PORT ?= 8080
dashboard: $(STAMP) ## optuna-dashboard on http://127.0.0.1:8080 (DASHBOARD_PORT=) for the study storage
	$(BIN)/optuna-dashboard $(or $(STORAGE),$(shell $(BIN)/python -c "from autoencoders import \
		config, tuning; print(tuning.storage_url(config.load_params()['tune']['storage']))")) \
		--host 127.0.0.1 --port $(DASHBOARD_PORT)

bench: $(STAMP) ## ONNX Runtime vs tf.function latency/throughput per encoder -> reports/bench.md
	$(BIN)/python -m autoencoders.benchmarks latency

SEEDS ?= 0,1,2
cluster-seeds: $(STAMP) ## Best variant's clustering head over SEEDS=0,1,2: mean ± std (after repro)
	$(BIN)/python -m autoencoders.benchmarks cluster-seeds $(if $(VARIANT),--variant $(VARIANT),--best) --seeds $(SEEDS)

cluster-shift: $(STAMP) ## cluster@V's head from seeds 42.. and 52.. per variant -> reports/cluster_shift.md
	$(BIN)/python -m autoencoders.benchmarks cluster-shift $(if $(VARIANT),--variants $(VARIANT))

train-seeds: $(STAMP) ## A variant's final training over SEEDS=0,1,2: test MSE (IDEC: own accuracy) mean ± std
	$(BIN)/python -m autoencoders.benchmarks train-seeds --variant $(or $(VARIANT),idec) --seeds $(SEEDS)

bench-train: $(STAMP) ## Training images/s: seed model.fit vs the trainer -> reports/train_bench.md
	$(BIN)/dvc repro preprocess
	$(BIN)/python -m autoencoders.benchmarks training

MAX_BATCH ?=
INSTANCES ?=
KIND ?=
triton: $(STAMP) ## Triton model repository from every export and scorer -> exports/triton/<v>-<role>/ [MAX_BATCH=1024] [INSTANCES=1] [KIND=auto|cpu|gpu]
	$(BIN)/python -m autoencoders.services.triton $(if $(MAX_BATCH),--max-batch-size $(MAX_BATCH)) \
		$(if $(INSTANCES),--instances $(INSTANCES)) $(if $(KIND),--kind $(KIND))

MODEL ?= exports/conv
batch-encode: $(STAMP) ## Encode a folder of .npy image shards with Ray Data: make batch-encode INPUT=dir OUTPUT=dir [MODEL=exports/conv]
	$(BIN)/python -m autoencoders.services.batch --model $(MODEL) --input $(INPUT) --output $(OUTPUT) $(ARGS)

bench-batch: $(STAMP) ## The Ray batch job against the single-process CLI on 60,000 images, side by side
	$(BIN)/python -m autoencoders.benchmarks.batch_encoding --model $(MODEL) --images 60000 --shards 6

SAMPLES ?= data/sample-images
PER_CLASS ?= 300
sample-images: $(STAMP) ## Crops of the photographs bundled in scikit-learn and scikit-image, 64x64, a folder per photo -> SAMPLES=data/sample-images (PER_CLASS=300)
	$(BIN)/python -m autoencoders.data.samples --out $(SAMPLES) --per-class $(PER_CLASS) --size 64

BENCH_IMAGES ?= data/bench-images
bench-data: $(STAMP) ## fetch + the shards' epoch vs keras image_dataset_from_directory, DVC's no-op, on 100,000 64x64 PNGs (made once in BENCH_IMAGES=data/bench-images; FOLDER= for another) -> reports/data_bench.md
	test -n "$(FOLDER)" || test -f $(BENCH_IMAGES)/.samples.json || $(BIN)/python -m autoencoders.data.samples --out $(BENCH_IMAGES) --per-class 10000 --size 64 --jpeg-share 0
	$(BIN)/python -m autoencoders.benchmarks data --folder $(or $(FOLDER),$(BENCH_IMAGES))

bench-anomaly: $(STAMP) ## One-class MNIST anomaly benchmark (10 digits x 3 seeds, after dvc repro preprocess) -> reports/anomaly_bench.md, anomaly_maps.png
	$(BIN)/python -m autoencoders.benchmarks one-class

bench-photos: $(STAMP) ## Every variant with data-derived defaults on photograph patches vs PCA (offline; VARIANTS="conv vae") -> reports/photos_bench.md, .png
	$(BIN)/python -m autoencoders.benchmarks photos $(if $(VARIANTS),--variants $(VARIANTS))

bench-defects: $(STAMP) ## Surface-defect benchmark (3 textures, synthetic scratches/holes/stains; no data needed) -> reports/defects_bench.md, .png
	$(BIN)/python -m autoencoders.benchmarks defects

BACKEND ?= postgresql
kill-sweep: $(STAMP) ## kill -9 a tiny search before each of its storage writes, check the resume (BACKEND=sqlite|postgresql)
	$(BIN)/python tests/killpoints/sweep.py --backend $(BACKEND) $(ARGS)

clean: ## Remove untracked outputs and caches (keeps git-tracked files, .venv, mlflow.db, studies)
	rm -rf .pytest_cache .ruff_cache data models plots exports/*/ timings reports/timings.json dvc_plots
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
