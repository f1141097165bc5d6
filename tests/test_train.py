"""The trainer: TRL hook fidelity, one full run per estimator family, repeatability, run-directory contents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from trl import GRPOTrainer

import estimators
from harness.trial.model import load_policy, load_tokenizer
from harness.tasks import load_task
from harness.trial.train import grpo_arguments, grpo_dataset, reward_mix, run_trial
from harness.trial.trl_hooks import EstimatorGRPOTrainer, check_trl_hooks
from tests.conftest import smoke_config


def test_trl_hooks_match_the_installed_trl():
    check_trl_hooks()


def test_hook_check_fails_loudly_when_trl_changes(monkeypatch):
    monkeypatch.setattr(GRPOTrainer, "_calculate_rewards", lambda self, inputs, prompts: None)
    with pytest.raises(RuntimeError, match=r"GRPOTrainer._calculate_rewards\('self', 'inputs', 'prompts'\)"):
        check_trl_hooks()
    monkeypatch.delattr(GRPOTrainer, "_generate_and_score_completions")
    with pytest.raises(RuntimeError, match="_generate_and_score_completions is gone"):
        check_trl_hooks()


def make_trainer(tmp_path: Path, estimator_name: str, **overrides: object) -> EstimatorGRPOTrainer:
    config = smoke_config(**{"estimator.name": estimator_name, **overrides})
    policy, tokenizer, _ = load_policy(config.model, config.task)
    mix = reward_mix(config, policy, tokenizer)
    dataset = grpo_dataset(load_task(config.task).train[:32])
    return EstimatorGRPOTrainer(model=policy, reward_funcs=mix.components,
                                args=grpo_arguments(config, tmp_path, mix.weights), train_dataset=dataset,
                                processing_class=tokenizer, estimator=estimators.get(estimator_name, scale="group"))


def test_injected_group_mean_equals_trls_own_advantages(tmp_path):
    """On TRL's own code path: the advantages TRL computed for the batch equal the injected group_mean's."""
    trainer = make_trainer(tmp_path, "group_mean")
    trainer.model.train()
    output = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    assert trainer.last_trl_advantages is not None
    torch.testing.assert_close(output["advantages"], trainer.last_trl_advantages)
    assert "old_per_token_logps" not in output  # TRL's importance ratio is exactly 1 (steps aligned, no vLLM)


def test_injected_estimator_replaces_trls_advantages(tmp_path):
    trainer = make_trainer(tmp_path, "attenuated_pairwise", **{"rewards.semantic_density": 1.0})  # a dense reward
    trainer.model.train()
    output = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    assert trainer.last_trl_advantages.abs().sum() > 0
    groups = output["advantages"].view(-1, trainer.num_generations)
    torch.testing.assert_close(groups.sum(dim=1), torch.zeros(groups.shape[0]), atol=1e-5, rtol=0)
    assert not torch.allclose(output["advantages"], trainer.last_trl_advantages)


MECHANISM_KEYS = ("mechanism/cosine", "mechanism/scale_ratio_cv")


def test_arms_differ_only_in_the_advantages(tmp_path):
    """group_mean and attenuated_pairwise on the same rollouts (same seed, same policy): every input of TRL's loss
    but `advantages` is identical, so the importance ratio and clipping are TRL's for both (the attenuation's
    log-probs never reach TRL's output); the mechanism metrics are group_mean's own for group_mean."""
    outputs, metrics = {}, {}
    for name in ("group_mean", "attenuated_pairwise"):
        trainer = make_trainer(tmp_path / name, name, **{"rewards.semantic_density": 1.0})
        trainer.model.train()
        outputs[name] = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
        metrics[name] = {key: trainer._metrics["train"][key] for key in MECHANISM_KEYS}
    plain, attenuated = outputs["group_mean"], outputs["attenuated_pairwise"]
    assert sorted(plain) == sorted(attenuated)
    for key in sorted(set(plain) - {"advantages"}):
        assert (torch.equal(plain[key], attenuated[key]) if torch.is_tensor(plain[key])
                else plain[key] == attenuated[key]), key
    assert not torch.equal(plain["advantages"], attenuated["advantages"])
    assert metrics["group_mean"] == {"mechanism/cosine": [pytest.approx(1.0, abs=1e-9)],
                                     "mechanism/scale_ratio_cv": [pytest.approx(0.0, abs=1e-9)]}
    assert -1.0 <= metrics["attenuated_pairwise"]["mechanism/cosine"][0] <= 1.0


@pytest.mark.parametrize("name", ["group_mean", "rloo", "pairwise_sum", "attenuated_pairwise", "lambdarank"])
def test_every_estimator_family_runs_a_full_trial(tmp_path, name):
    config = smoke_config(**{"estimator.name": name})
    summary = run_trial(config, tmp_path / name)
    run = tmp_path / name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, config.trainer["max_steps"] + 1))
    for key in ["reward", "accuracy", "advantage/abs_mean", "advantage/zero_group_frac", "loss", "entropy",
                "completions/mean_length", "rewards/correctness/mean", *MECHANISM_KEYS]:
        assert all(key in r for r in rows), key
    timing = [json.loads(line) for line in (run / "timing.jsonl").read_text().splitlines()]
    assert [t["step"] for t in timing] == [r["step"] for r in rows]
    assert all(t["step_seconds"] > 0 and t["tokens_per_second"] > 0 for t in timing)
    items = [json.loads(line) for line in (run / "eval_items.jsonl").read_text().splitlines()]
    assert len(items) == config.eval.n_examples == summary["eval"]["n"]
    assert {tuple(sorted(i)) for i in items} == {("greedy", "item_id", "length", "pass@1", "pass@2", "pass@4", "pass@8",
                                                   "reward", "samples")}
    assert json.loads((run / "eval.json").read_text())["metric"] == "pass@1"
    assert summary["eval"]["accuracy"] == pytest.approx(sum(i["pass@1"] for i in items) / len(items))
    assert summary["eval"]["greedy"] == pytest.approx(sum(i["greedy"] for i in items) / len(items))
    assert 0.0 <= summary["eval"]["accuracy"] <= 1.0
    assert json.loads((run / "summary.json").read_text())["config_hash"] == config.config_hash()
    assert (run / "config.yaml").is_file() and (run / "eval.json").is_file()
    tokenizer = load_tokenizer(run / "checkpoint")
    assert tokenizer.decode(tokenizer("3 + 4\n", add_special_tokens=False)["input_ids"]) == "3 + 4\n"


@pytest.mark.parametrize("name", ["group_mean", "attenuated_pairwise"])
def test_a_run_is_repeatable_on_cpu(tmp_path, name):
    """The same config and seed, run twice: byte-identical metrics.jsonl, eval.json, eval_items.jsonl and held-out
    curve (wall-clock figures live in timing.jsonl); another seed changes the metrics."""
    config = smoke_config(**{"estimator.name": name, "eval.every_steps": 1})
    for run in ("a", "b"):
        run_trial(config, tmp_path / run)
    for file in ("metrics.jsonl", "eval.json", "eval_items.jsonl", "eval_curve.jsonl"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    run_trial(config.model_copy(update={"seed": 1}), tmp_path / "c")
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() != (tmp_path / "c" / "metrics.jsonl").read_bytes()


LEARNING_CONFIG = {
    "task": {"name": "arithmetic"}, "estimator": {"name": "group_mean", "scale": "group"},
    "trainer": {"max_steps": 50, "learning_rate": 1e-4, "per_device_train_batch_size": 64, "num_generations": 8,
                "max_completion_length": 48},
    "eval": {"n_examples": 500, "samples": 8},
}
"""The default ablation's trial on `arithmetic` (correctness only, no held-out curve: sampling it draws from its own
streams, so the trained policy is the same): the learning test's config."""


@pytest.mark.slow
def test_grpo_raises_held_out_pass_at_1_over_the_warm_start(tmp_path):
    """GRPO from the default (shipped) warm start raises sampled pass@1 (8 samples per item) on the 500 held-out items.

    Measured on 2 CPU cores with the locked environment (AMD EPYC; the shipped warm start, pass@1 0.179-0.187 over
    the seeds' sample streams), held-out gain after 50 steps, seeds 0-4 of this config: 0.134, 0.118, 0.133, 0.115,
    0.118: mean 0.124, sd 0.0093 (`make repro` for seeds 0-2; seeds 3-4 with `lph sweep sweeps/ablation.yaml --set
    'grid.task.name=[arithmetic]' --set 'grid.estimator.name=[group_mean]' --set 'grid.rewards.semantic_density=[0.0]'
    --set 'seeds=[3,4]'`). The assertion asks for a gain above 0.08, about 4.7 sd below the mean, and for the items
    whose pass@1 the trained policy raises to outnumber those it lowers in a paired sign test (p < 0.001)."""
    from scipy import stats

    from harness.config import RunConfig
    from harness.trial.train import score_warm_start

    config = RunConfig.model_validate(LEARNING_CONFIG)
    warm = score_warm_start(config, tmp_path / "warm")["eval"]["pass@1"]
    trained = run_trial(config, tmp_path / "trained")["eval"]["pass@1"]
    assert trained - warm > 0.08, (warm, trained)
    before, after = (
        {i["item_id"]: i["pass@1"] for i in map(json.loads, (tmp_path / run / "eval_items.jsonl").open())}
        for run in ("warm", "trained"))
    gained = sum(after[k] > before[k] for k in before)
    lost = sum(after[k] < before[k] for k in before)
    assert stats.binomtest(gained, gained + lost, alternative="greater").pvalue < 0.001, (gained, lost)


def test_a_local_model_directory_can_be_the_policy(tmp_path):
    """model.path: any local Hugging Face model directory (here a trained checkpoint) replaces the tiny model."""
    first = smoke_config(**{"estimator.name": "rloo"})
    run_trial(first, tmp_path / "first")
    config = smoke_config(**{"estimator.name": "rloo", "model.path": str(tmp_path / "first" / "checkpoint")})
    summary = run_trial(config, tmp_path / "second")
    assert summary["model_dir"] == str(tmp_path / "first" / "checkpoint")
    with pytest.raises(ValueError, match="is not a local model directory"):
        run_trial(smoke_config(**{"model.path": str(tmp_path / "missing")}), tmp_path / "third")


def test_embedding_semantic_density_reads_the_policys_embeddings(tmp_path):
    config = smoke_config(**{"estimator.name": "group_mean", "rewards.semantic_density": 1.0,
                             "reward_params.semantic_density": {"units": "embedding", "idf": True}})
    summary = run_trial(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["rewards/semantic_density/mean"] <= 1.0 for r in rows)
    assert any(r["rewards/semantic_density/mean"] > 0 for r in rows)
    assert summary["reward_failures"]["semantic_density"] == 0


def test_a_non_finite_loss_stops_the_trial(tmp_path):
    @estimators.register("test_only_huge")
    def huge(rewards, seq_logprobs, lengths, mask, *, value: float = 3e38):
        """A_i = +-value: overflows the loss to infinity."""
        return torch.where(torch.arange(rewards.shape[1]) % 2 == 0, value, -value).expand_as(rewards).clone()

    from harness.config import EstimatorConfig
    from harness.trial.train import NonFiniteLoss

    config = smoke_config().model_copy(update={"estimator": EstimatorConfig(name="test_only_huge")})
    with pytest.raises(NonFiniteLoss, match=r"(loss|grad_norm) is (nan|inf)"):
        run_trial(config, tmp_path)
