# The two set-up commands of README: `make demo` (the main job on CPU) and `make test`.
# Each creates or refreshes the virtual environment itself from requirements.lock (exact versions of every package;
# `make lock` rewrites it from pyproject.toml in a fresh venv). constraints.txt keeps the CPU torch pinned.
# --no-compile: pip skips byte-compiling every installed module; Python compiles the ones it imports on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK_VENV := .lock-venv

.PHONY: env lock demo test bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile -c constraints.txt -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m harness.lock check
	touch $@

env: $(STAMP)

lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q -c constraints.txt torch==2.13.0
	$(LOCK_VENV)/bin/pip install -q -c constraints.txt '.[dev]'
	$(LOCK_VENV)/bin/python -c "import harness.lock as l; l.write_lock(l.Path('requirements.lock'))"
	rm -rf $(LOCK_VENV)

demo: env
	$(PY) -m harness.sweep sweeps/ablation.yaml

test: env
	$(PY) -m pytest -q

bench: env
	$(PY) -m harness.bench all

clean:
	rm -rf $(VENV) runs

# On a machine with a CUDA device: a bf16 training step, the estimators' CUDA timings and vLLM colocate rollouts on
# the tiny model -> runs/bench/gpu.json. Without a device every check is reported as skipped (exit code 0).
.PHONY: gpu-check
gpu-check: env
	$(PY) -m harness.gpu_check
