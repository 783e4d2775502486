# The two commands: `make demo` (the main job) and `make test` (the tests).
# Both create .venv and install what they need; afterwards .venv/bin/wmark is the CLI.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.wmark-installed

.PHONY: demo test test-all bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# CPU torch wheel first where no torch is present (an unpinned torch would pull a CUDA build)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q "torch>=2.4"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/wmark demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	$(PY) bench/text_processor.py
	$(PY) bench/text_detect.py
	$(PY) bench/text_stats.py

clean-venv:
	rm -rf $(VENV)
