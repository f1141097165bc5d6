# The two set-up commands of README: `make demo` (the main job on CPU) and `make test`.
# Each creates or refreshes the virtual environment itself; constraints.txt keeps the CPU torch pinned.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: env demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

env: $(STAMP)

demo: env
	$(PY) -m harness.sweep sweeps/ablation.yaml

test: env
	$(PY) -m pytest -q

bench: env
	$(PY) -m harness.bench all

clean:
	rm -rf $(VENV) runs
