# Two commands: `make reproduce` and `make test`. Both create .venv on first use and
# reinstall only when requirements.txt or pyproject.toml change.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PARAMS  ?= params/default.yaml
STAMP   := $(VENV)/.knowfree-installed
# Tests on the real datasets need the mirror; beside a checkout of this repo it is ../shared/datasets.
KNOWFREE_DATA_MIRROR ?= $(abspath ../shared/datasets)
export KNOWFREE_DATA_MIRROR
# OpenMP threads that spin while waiting for a busy core cost 2-3x on a shared machine
# (results/benchmarks/inference.md); passive waiting loses nothing measurable when idle.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

.PHONY: venv test unit notebooks reproduce llm bench env-check clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

test: $(STAMP)
	$(PY) -m pytest tests notebooks --nbval-lax -q

unit: $(STAMP)
	$(PY) -m pytest tests -q

notebooks: $(STAMP)
	$(PY) -m pytest notebooks --nbval-lax -q

reproduce: $(STAMP)
	$(PY) -m knowfree reproduce --params $(PARAMS)

# Optional extra: llama.cpp server + the offline Qwen2.5 GGUF models (builds from source, ~5 min).
llm: $(STAMP)
	bash .ci/install_llm.sh

bench: $(STAMP)
	$(PY) benchmarks/bench_head.py
	$(PY) benchmarks/bench_inference.py

env-check:
	python3 scripts/environment.py --check

clean-venv:
	rm -rf $(VENV)
