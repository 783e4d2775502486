# The two commands: `make demo` (the whole story on shipped data) and `make test` (the tests).
# Both create .venv and install what they need; afterwards .venv/bin/wmark is the CLI.
# demo installs wmark alone; test adds the [dev] extra (pytest, transformers, triton).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BASE   := $(VENV)/.wmark-base
DEV    := $(VENV)/.wmark-dev

.PHONY: demo test test-all bench clean-venv

$(BASE): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# CPU torch wheel first where no torch is present (an unpinned torch would pull a CUDA build)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q "torch>=2.4"
	$(PY) -m pip install -q -e .
	touch $(BASE)

$(DEV): $(BASE)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(DEV)

demo: $(BASE)
	$(VENV)/bin/wmark demo

test: $(DEV)
	$(PY) -m pytest -q

test-all: $(DEV)
	$(PY) -m pytest -q -m "slow or not slow"

bench: $(DEV)
	$(PY) bench/text_processor.py --overwrite
	$(PY) bench/text_detect.py --overwrite
	$(PY) bench/text_stats.py --overwrite

clean-venv:
	rm -rf $(VENV)
