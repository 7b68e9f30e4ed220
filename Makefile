# ncf-sagemaker: every entry point a user needs. `make help` lists them.
# All targets run inside the project virtual environment created by `make install`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYSTEM ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Data / local training
DATASET ?= ml-100k
DATA_DIR ?= data/default
RUN_DIR ?= runs/local
PREPARED ?= $(RUN_DIR)/prepared
MODEL_DIR ?= $(RUN_DIR)/model
PREPARE_ARGS ?=
TRAIN_ARGS ?=
# e.g. DOWNLOAD_ARGS=--base-url=file:///folder/with/the/zip (a mirror, or a copied archive offline)
DOWNLOAD_ARGS ?=

# Local endpoint
MODEL ?= $(MODEL_DIR)
PORT ?= 8443
K ?= 10
# `USER` is also the login name in the environment: only a value given on the command line counts.
USER_ID ?= $(if $(filter command line,$(origin USER)),$(USER),)

# SageMaker (see deploy/config.py for every setting and its environment variable)
DEPLOY_ARGS ?=

# Quality benchmark options, e.g. BENCH_ARGS="--data path/to/ml-100k"
BENCH_ARGS ?=

.PHONY: help install data default-data prepare train-local test lint results bench bench-speed-steps bench-serve bench-similarity \
        bench-filters bench-features bench-scale bench-distributed bench-local-mode bench-suite tf-serving-venv serve-local \
        invoke-local \
        local-images \
        upload train deploy invoke batch tune status teardown iam-policy doctor clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{ printf "%-18s %s\n", $$1, $$2 }'

$(STAMP): pyproject.toml
	$(PYTHON_SYSTEM) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e ".[deploy,serve,dev]"
	touch $(STAMP)

# The IAM simulator of tests/test_deploy_iam.py (node package, pinned by tests/iam/package-lock.json).
# Without npm the IAM test is skipped on a developer machine; CI (CI set) must have it.
IAM_SIMULATOR := tests/iam/node_modules/.package-lock.json

$(IAM_SIMULATOR): tests/iam/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/iam --no-audit --no-fund; \
	elif [ -n "$$CI" ]; then echo "error: npm not found: CI needs Node.js 20+ for the IAM test (tests/iam)" >&2; exit 1; \
	else echo "npm not found: tests/test_deploy_iam.py will be skipped (install Node.js 20+ and run make install)"; fi

# TF Serving's TensorFlow (tensorflow-cpu, pinned in tests/tf-serving-requirements.txt) in its own environment:
# tests/test_serving_tf219.py loads every export shape with it. The path is fixed: the test and bench-serve look
# there. The stamp depends on the pin, so a second `make install` does nothing and a new pin reinstalls.
# TensorFlow 2.19 has wheels for Python 3.9-3.12 only: TF219_PYTHON_SYSTEM picks another interpreter.
TF219_VENV := .venv-tf219
TF219_STAMP := $(TF219_VENV)/.installed
TF219_REQUIREMENTS := tests/tf-serving-requirements.txt
TF219_PYTHON_SYSTEM ?= $(PYTHON_SYSTEM)

$(TF219_STAMP): $(TF219_REQUIREMENTS)
	@$(TF219_PYTHON_SYSTEM) -c 'import sys; sys.exit(None if (3, 9) <= sys.version_info[:2] <= (3, 12) else \
	    f"error: $(TF219_PYTHON_SYSTEM) is Python {sys.version.split()[0]}; TensorFlow 2.19 needs 3.9-3.12: set TF219_PYTHON_SYSTEM")'
	$(TF219_PYTHON_SYSTEM) -m venv $(TF219_VENV)
	$(TF219_VENV)/bin/pip install -r $(TF219_REQUIREMENTS)
	touch $(TF219_STAMP)

install: $(STAMP) $(IAM_SIMULATOR) $(TF219_STAMP) ## Create .venv/ with everything (training, serving, deploy, tests) and .venv-tf219/

data: $(STAMP) ## Download a MovieLens dataset into data/raw/ (DATASET=ml-100k|ml-1m|ml-20m|ml-25m|ml-latest-small)
	$(PY) data/download.py --dataset $(DATASET) --dest data/raw $(DOWNLOAD_ARGS)

default-data: $(STAMP) ## Regenerate the embedded default dataset in data/default/ (deterministic)
	$(PY) data/generate_default.py --output data/default

prepare: $(STAMP) ## Split DATA_DIR into train/validation/test channels under PREPARED
	$(PY) training/prepare.py --input $(DATA_DIR) --output $(PREPARED) --overwrite $(PREPARE_ARGS)

train-local: prepare ## Prepare DATA_DIR (default: embedded data), train, evaluate, export (RESUME=1: resume checkpoints)
	$(if $(RESUME),,rm -rf $(RUN_DIR)/checkpoints)
	$(PY) training/train.py --train $(PREPARED)/train --validation $(PREPARED)/validation \
	    --test $(PREPARED)/test --model-dir $(MODEL_DIR) --output-data-dir $(RUN_DIR)/output \
	    --checkpoint-dir $(RUN_DIR)/checkpoints $(TRAIN_ARGS)

# Two pytest-xdist workers, each given whole modules (module fixtures are built once) and all Docker modules
# to one worker (tests/conftest.py); TEST_WORKERS=1 runs the suite in one process.
TEST_WORKERS ?= 2

test: $(STAMP) $(IAM_SIMULATOR) $(TF219_STAMP) ## Run the whole test suite (offline; TEST_WORKERS=2 processes)
	$(PY) -m pytest $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

lint: $(STAMP) ## ruff, and no function in training/ longer than 60 lines
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tests/tools/function_length.py --max-lines 60 training

bench: $(STAMP) ## Quality (MovieLens 100K) and training-speed benchmarks -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_quality.py $(BENCH_ARGS)
	$(PY) tests/benchmarks/bench_speed.py

bench-speed-steps: $(STAMP) ## NeuMF training speed per technique (XLA step loop, thread pools, sampling) -> tests/benchmarks/results/speed-steps.json
	$(PY) tests/benchmarks/bench_speed_steps.py

bench-serve: $(STAMP) ## Serving latency/throughput and two-stage retrieval (1M items; TF 2.19 check) -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_serve.py
	$(PY) tests/benchmarks/bench_retrieval.py $(BENCH_ARGS)

tf-serving-venv: $(TF219_STAMP) ## Create .venv-tf219/ with TF Serving 2.19.1's TensorFlow (part of install; tests and bench-serve load exports with it)

bench-similarity: $(STAMP) ## Similar-items quality on MovieLens 100K (genre overlap) -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_similarity.py $(BENCH_ARGS)

bench-filters: $(STAMP) ## Filters: MovieLens 100K correctness, 1M items never starved + latency -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_filters.py $(BENCH_ARGS)

bench-features: $(STAMP) ## Item features and cold-start items on MovieLens 100K -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_features.py $(BENCH_ARGS)

bench-scale: $(STAMP) ## ML-20M-sized synthetic data: prepare + 1 epoch, time and memory -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_scale.py

bench-distributed: $(STAMP) ## Throughput with 1 and 2 local workers (replicated and sharded) -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_distributed.py

.PHONY: bench-sasrec-cost bench-gpu
bench-sasrec-cost: $(STAMP) ## Sequence model cost: an epoch on a 30k-user / 20k-item sparse set, ML-100K quality of both objectives -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_sasrec_cost.py $(BENCH_ARGS)

bench-gpu: $(STAMP) ## On a GPU machine (<10 min): SASRec ML-1M-sized with/without mixed precision, NeuMF ML-20M-sized -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_gpu.py

.PHONY: bench-memory
bench-memory: $(STAMP) ## Peak RSS: SASRec evaluation (ML-1M size; BENCH_ARGS=--full adds ML-20M), a 1,000-user request and similar_items at 1M items -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_memory.py $(BENCH_ARGS)

.PHONY: bench-sasrec
bench-sasrec: $(STAMP) ## Sequence model: new users, epoch speed, and NeuMF vs SASRec where order carries no signal -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_sasrec.py $(BENCH_ARGS)
	$(PY) tests/benchmarks/bench_quality.py --models neumf,sasrec --shuffle-time \
		--output tests/benchmarks/results/quality-weak-order.json $(BENCH_ARGS)

.PHONY: bench-newusers
bench-newusers: $(STAMP) ## New users over five held-out draws x two tie orders (SASRec with its blend, NeuMF fold-in, item-kNN, popularity; blend chosen on validation users) -> tests/benchmarks/results/newusers.json
	$(PY) tests/benchmarks/bench_newusers.py $(BENCH_ARGS)

bench-local-mode: $(STAMP) ## deploy train --local vs train-local on data/default (needs local images) -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_local_mode.py

bench-suite: $(STAMP) $(IAM_SIMULATOR) $(TF219_STAMP) ## Time `make test` (bar: under 12 minutes on 2 cores) -> tests/benchmarks/results/
	$(PY) tests/benchmarks/bench_suite.py

# Every benchmark the README quotes, one after another (hours on 2 cores); tests/test_readme_figures.py
# checks the README's figures against the files they write.
RESULTS_TARGETS := bench bench-speed-steps bench-serve bench-similarity bench-filters bench-features bench-scale \
	bench-distributed bench-sasrec bench-sasrec-cost bench-memory bench-newusers bench-local-mode bench-suite

results: $(RESULTS_TARGETS) ## Rerun every benchmark the README quotes (hours on 2 cores) -> tests/benchmarks/results/

serve-local: $(STAMP) ## Serve MODEL (dir or model.tar.gz) like the SageMaker container, HTTPS on PORT
	$(PY) -m deploy.local --model $(MODEL) --port $(PORT)

invoke-local: $(STAMP) ## Ask the local endpoint for USER's top-K items (make invoke-local USER=42)
	@test -n "$(USER_ID)" || { echo "error: give a user id, e.g. make invoke-local USER=42" >&2; exit 2; }
	$(PY) -m deploy invoke --endpoint-url https://127.0.0.1:$(PORT) --user $(USER_ID) --k $(K)

local-images: $(STAMP) ## Build (or reuse) the Docker images of SDK local mode (`deploy ... --local`), offline
	$(PY) -m deploy.localmode.build

upload: $(STAMP) ## Upload PREPARED channels to S3
	$(PY) -m deploy upload --prepared $(PREPARED) $(DEPLOY_ARGS)

train: $(STAMP) ## Launch a SageMaker training job
	$(PY) -m deploy train $(DEPLOY_ARGS)

deploy: $(STAMP) ## Create or update the SageMaker endpoint
	$(PY) -m deploy deploy $(DEPLOY_ARGS)

invoke: $(STAMP) ## Invoke the SageMaker endpoint (make invoke USER=42)
	@test -n "$(USER_ID)" || { echo "error: give a user id, e.g. make invoke USER=42" >&2; exit 2; }
	$(PY) -m deploy invoke --user $(USER_ID) --k $(K) $(DEPLOY_ARGS)

batch: $(STAMP) ## Batch Transform over a JSON Lines file of users in S3
	$(PY) -m deploy batch $(DEPLOY_ARGS)

tune: $(STAMP) ## Hyperparameter tuning job (objective: validation NDCG@10)
	$(PY) -m deploy tune $(DEPLOY_ARGS)

status: $(STAMP) ## List the SageMaker resources this project created
	$(PY) -m deploy status $(DEPLOY_ARGS)

teardown: $(STAMP) ## Delete this project's endpoints, configs, models and scaling policies
	$(PY) -m deploy teardown $(DEPLOY_ARGS)

iam-policy: $(STAMP) ## Print the least-privilege IAM policy and trust policy
	$(PY) -m deploy iam-policy $(DEPLOY_ARGS)

doctor: $(STAMP) ## Check credentials, region, bucket, role, image tags and quotas before a first run
	$(PY) -m deploy doctor $(DEPLOY_ARGS)

clean: ## Remove run outputs (keeps .venv and downloaded data)
	rm -rf runs .pytest_cache
