"""Issue 34's estimators in the TRL hook: remax (a greedy completion per prompt), gdpo (the reward mix's components)
and otb (token-level advantages, sum pi^2 from the hook's one forward pass), each in a 2-step trial and on one batch
of the smoke sweep's trainer, against inputs computed here independently of the hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.tasks import load_task
from harness.trial.train import build_trainer, run_trial
from harness.trial.trl_hooks import EstimatorGRPOTrainer
from tests.conftest import smoke_config

MIX = {"rewards.semantic_density": 0.5}
"""Two rewards (correctness and a dense one): gdpo's components differ from the mixed reward."""


def trial_config(name: str, **overrides: object):
    return smoke_config(**{"estimator": {"name": name}, **MIX, **overrides})


def one_batch(tmp_path: Path, name: str, **overrides: object) -> tuple[EstimatorGRPOTrainer, dict, list[dict]]:
    """The trial's trainer, the hook's output for its first generation batch and that batch's rows."""
    config = trial_config(name, **overrides)
    trainer = build_trainer(config, tmp_path, load_task(config.task, config.rewards)).trainer
    trainer.model.train()
    inputs = next(iter(trainer.get_train_dataloader()))
    return trainer, trainer._generate_and_score_completions(inputs), inputs


def read_rows(run: Path, file: str) -> list[dict]:
    return [json.loads(line) for line in (run / file).read_text().splitlines()]


@pytest.mark.parametrize("name", ["remax", "gdpo", "maxrl", "otb"])
def test_a_two_step_trial_trains_on_the_estimators_advantages(tmp_path, name):
    run_trial(trial_config(name), tmp_path)
    rows, timing = read_rows(tmp_path, "metrics.jsonl"), read_rows(tmp_path, "timing.jsonl")
    assert [r["step"] for r in rows] == [t["step"] for t in timing] == [1, 2]
    assert all(r["advantage/abs_mean"] > 0 and -1 <= r["mechanism/cosine"] <= 1 for r in rows)
    if name == "remax":  # 8 completions in groups of 4 a step: 2 prompts, 2 greedy completions, in the step's time
        assert [r["greedy/completions"] for r in rows] == [2.0, 2.0]
        assert all(0.0 <= r["greedy/reward"] <= 1.5 and t["step_time"] > 0 for r, t in zip(rows, timing))


def greedy_reward(trainer: EstimatorGRPOTrainer, row: dict) -> float:
    """The mixed reward of `row`'s prompt completed by argmax decoding (a loop here, not `generate`)."""
    tokenizer, model = trainer.processing_class, trainer.model
    ids = tokenizer(row["prompt"], return_tensors="pt")["input_ids"]
    completion: list[int] = []
    with torch.no_grad():
        for _ in range(trainer.max_completion_length):
            token = int(model(torch.cat([ids, torch.tensor([completion], dtype=ids.dtype)], dim=1)).logits[0, -1]
                        .argmax())
            completion.append(token)
            if token in trainer.eos_token_ids:
                break
    text = tokenizer.decode(completion, skip_special_tokens=True)
    scores = [f(prompts=[row["prompt"]], completions=[text], answer=[row["answer"]])[0] for f in trainer.reward_funcs]
    return sum(w * s for w, s in zip(trainer.reward_weights.tolist(), scores))


def test_remax_baseline_is_the_reward_of_a_greedy_completion_of_each_prompt(tmp_path):
    trainer, output, inputs = one_batch(tmp_path, "remax")
    batch = trainer.last_batch
    group = trainer.num_generations
    expected = torch.tensor([greedy_reward(trainer, inputs[b * group]) for b in range(len(inputs) // group)])
    torch.testing.assert_close(batch.inputs["greedy_rewards"], expected)
    assert output["advantages"].shape == (len(inputs),)
    torch.testing.assert_close(output["advantages"], (batch.rewards - expected.unsqueeze(1)).flatten())


def test_gdpo_reads_the_mix_components_and_equals_trls_normalize_then_sum(tmp_path):
    """TRL's own advantages under `multi_objective_aggregation: normalize_then_sum` are GDPO's."""
    trainer, output, _ = one_batch(tmp_path, "gdpo", **{"trainer.multi_objective_aggregation": "normalize_then_sum"})
    components = trainer.last_batch.inputs["components"]
    assert components.shape == (*trainer.last_batch.rewards.shape, 2)
    torch.testing.assert_close((components * trainer.reward_weights).sum(-1), trainer.last_batch.rewards)
    assert components[..., 1].std() > 0  # the dense reward varies: the components are not the mix
    torch.testing.assert_close(output["advantages"], trainer.last_trl_advantages, atol=1e-5, rtol=1e-5)


def test_otb_advantages_reach_the_loss_per_token_from_one_forward_pass(tmp_path):
    """[n, T] advantages; the token log-probs are TRL's own on the same completions, sum_v pi_v^2 is the softmax's
    at TRL's temperature computed here from the logits; the advantages are the estimator's on those inputs and the
    loss accepts them."""
    trainer, output, inputs = one_batch(tmp_path, "otb")
    batch = trainer.last_batch
    mask = output["completion_mask"].bool()
    assert output["advantages"].shape == mask.shape and torch.all(output["advantages"][~mask] == 0)
    ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
    keep = mask.shape[1]
    with torch.no_grad():
        trl_logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, attention, keep)
        logits = trainer.model(input_ids=ids, attention_mask=attention).logits[:, -keep - 1:-1] / trainer.temperature
    sum_sq = torch.softmax(logits.float(), dim=-1).pow(2).sum(-1)
    inputs = {key: value.view(mask.shape) for key, value in batch.inputs.items() if key != "rewards"}
    assert torch.equal(inputs["mask"], mask)
    torch.testing.assert_close(inputs["token_logprobs"][mask], trl_logps[mask])
    torch.testing.assert_close(inputs["sum_pi_squared"][mask], sum_sq[mask])
    expected = trainer.estimator(**batch.inputs).view(-1, keep)
    torch.testing.assert_close(output["advantages"], expected)
    assert (output["advantages"][mask] != output["advantages"][mask].roll(1)).any()  # not one value per completion
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps  # set by train()
    loss = trainer.compute_loss(trainer.model, output)
    assert torch.isfinite(loss)


def test_sequence_level_advantages_are_unchanged_and_still_trls_for_group_mean(tmp_path):
    """group_mean through the extended hook: [n] advantages equal to TRL's own GRPO advantages, bit for bit."""
    trainer, output, _ = one_batch(tmp_path, "group_mean", **{"estimator": {"name": "group_mean", "scale": "group"}})
    assert output["advantages"].shape == trainer.last_trl_advantages.shape == (len(output["completion_ids"]),)
    assert torch.equal(output["advantages"], trainer.last_trl_advantages)
