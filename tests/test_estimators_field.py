"""ReMax, GDPO, MaxRL and OTB against plain-Python oracles written from their formulas (issue 34), GDPO against TRL's
`normalize_then_sum` code, the inputs they declare, and the exact-gradient testbed's rows for them."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from trl.trainer.utils import nanstd

import estimators
from harness.diagnostics.diagnose import gradient_statistics
from harness.diagnostics.testbed import make_testbed, starting_point

FIELD = ["remax", "gdpo", "maxrl", "otb"]


def random_batch(seed: int, b: int = 6, g: int = 5, t: int = 7, k: int = 3, ragged: bool = True):
    """Every input the four read: rewards (some groups all zero), a mask with a group of one, greedy rewards, reward
    components and weights, and right-padded token statistics of completions of 1..t tokens."""
    gen = torch.Generator().manual_seed(seed)
    components = (torch.rand(b, g, k, generator=gen) < 0.5).double() * torch.rand(b, g, k, generator=gen).double()
    weights = torch.tensor([1.0, 0.5, -0.25][:k], dtype=torch.float64)
    rewards = components @ weights
    rewards[2] = 0.0  # a group without success (MaxRL: no signal)
    rewards[3] = -0.1 - rewards[3]  # a group of negative mean (MaxRL: no signal either)
    mask = torch.rand(b, g, generator=gen) < 0.8 if ragged else torch.ones(b, g, dtype=torch.bool)
    mask[:, 0] = True
    if ragged:
        mask[1, 1:] = False  # a group of one
    lengths = torch.randint(1, t + 1, (b, g), generator=gen)
    tokens = (torch.arange(t) < lengths.unsqueeze(-1)) & mask.unsqueeze(-1)
    probs = torch.rand(b, g, t, generator=gen).double()
    return {"rewards": rewards, "mask": mask, "greedy_rewards": torch.rand(b, generator=gen).double(),
            "components": components, "weights": weights, "tokens": tokens, "token_logprobs": probs.log(),
            "sum_pi_squared": probs**2 + (1 - probs) ** 2 * torch.rand(b, g, t, generator=gen).double()}


def call(name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The registered estimator on `batch`, given every input it may read (the token mask to the token-level one)."""
    inputs = {key: value for key, value in batch.items() if key not in ("tokens", "rewards")}
    if estimators.get(name).token_level:
        inputs["mask"] = batch["tokens"]
    return estimators.get(name)(batch["rewards"], **inputs)


def valid_rows(batch, b: int) -> list[int]:
    return [i for i in range(batch["mask"].shape[1]) if batch["mask"][b, i]]


# ------------------------------------------------------------------------------ oracles: the formulas, plain Python
def sample_std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def remax_oracle(batch) -> list[list[float]]:
    """A_i = r_i - r_greedy of the prompt; masked completions 0."""
    r, greedy = batch["rewards"].tolist(), batch["greedy_rewards"].tolist()
    return [[r[b][i] - greedy[b] if batch["mask"][b, i] else 0.0 for i in range(len(r[b]))] for b in range(len(r))]


def maxrl_oracle(batch) -> list[list[float]]:
    """A_i = (r_i - mean) / mean over the group's valid completions, 0 when mean <= 0."""
    out = []
    for b, row in enumerate(batch["rewards"].tolist()):
        mean = statistics.fmean(row[i] for i in valid_rows(batch, b))
        out.append([(row[i] - mean) / mean if batch["mask"][b, i] and mean > 0 else 0.0 for i in range(len(row))])
    return out


def gdpo_oracle(batch) -> list[list[float]]:
    """Per component within the group (r_ik - mean_k) / (std_k + 1e-4), weighted sum, then (x - mean) / (std + 1e-4)
    over the batch's valid completions; sample stds."""
    c, w = batch["components"].tolist(), batch["weights"].tolist()
    summed = {}
    for b in range(len(c)):
        rows = valid_rows(batch, b)
        for i in rows:
            total = 0.0
            for k in range(len(w)):
                values = [c[b][j][k] for j in rows]
                total += w[k] * (c[b][i][k] - statistics.fmean(values)) / (sample_std(values) + 1e-4)
            summed[b, i] = total
    mean, std = statistics.fmean(summed.values()), sample_std(list(summed.values()))
    return [[(summed[b, i] - mean) / (std + 1e-4) if (b, i) in summed else 0.0 for i in range(len(c[b]))]
            for b in range(len(c))]


def otb_oracle(batch) -> list[list[list[float]]]:
    """W_t = sum_{j<=t} (1 - 2 pi_j + sum pi^2); B_t = sum_i G_t W_t / (sum_i W_t + 1e-8) over the completions still
    running at t (baseline 0 with fewer than two); A_t = (G_t - B_t) m_t, G_t = r_i."""
    m, r = batch["tokens"].tolist(), batch["rewards"].tolist()
    lp, spp = batch["token_logprobs"].tolist(), batch["sum_pi_squared"].tolist()
    out = []
    for b in range(len(m)):
        g, t_max = len(m[b]), len(m[b][0])
        path = [[0.0] * t_max for _ in range(g)]
        for i in range(g):
            running = 0.0
            for t in range(t_max):
                if m[b][i][t]:
                    running += 1 - 2 * math.exp(lp[b][i][t]) + spp[b][i][t]
                    path[i][t] = running
        rows = []
        for i in range(g):
            row = []
            for t in range(t_max):
                alive = [j for j in range(g) if m[b][j][t]]
                baseline = 0.0
                if len(alive) > 1:
                    baseline = sum(r[b][j] * path[j][t] for j in alive) / (sum(path[j][t] for j in alive) + 1e-8)
                row.append(r[b][i] - baseline if m[b][i][t] else 0.0)
            rows.append(row)
        out.append(rows)
    return out


ORACLES = {"remax": remax_oracle, "gdpo": gdpo_oracle, "maxrl": maxrl_oracle, "otb": otb_oracle}


@pytest.mark.parametrize("name", FIELD)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ragged", [True, False])
def test_vectorised_equals_the_formula(name, seed, ragged):
    batch = random_batch(seed, ragged=ragged)
    expected = torch.tensor(ORACLES[name](batch), dtype=torch.float64)
    torch.testing.assert_close(call(name, batch), expected)


def test_gdpo_equals_trl_normalize_then_sum():
    """TRL 1.16's `multi_objective_aggregation="normalize_then_sum"` lines, unscorable completions as NaN rows."""
    batch = random_batch(5)
    g, k = batch["components"].shape[1:]
    per_func = batch["components"].reshape(-1, k).where(batch["mask"].reshape(-1, 1), math.nan)
    grouped = per_func.view(-1, g, k)
    mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
    std_k = nanstd(grouped, dim=1, keepdim=True)
    reward_k = ((grouped - mean_k) / (std_k + 1e-4)).view(-1, k)
    rewards = (reward_k * batch["weights"].unsqueeze(0)).nansum(dim=1)
    rewards[~batch["mask"].reshape(-1)] = math.nan
    trl = torch.nan_to_num((rewards - torch.nanmean(rewards)) / (nanstd(rewards) + 1e-4), nan=0.0)
    # TRL's nanstd of a group with one valid completion is NaN, which its nansum turns into 0: our std 0 does too
    torch.testing.assert_close(call("gdpo", batch).flatten(), trl)


def test_otb_special_cases():
    """A group of one keeps its return (baseline 0); where every W is 0 (a certain policy: pi_j = sum pi^2 = 1) the
    baseline is 0; a lone longest completion's tail gets baseline 0 (verl's handle_zero_tail) while the shared part
    is baselined."""
    rewards = torch.tensor([[1.0, 0.0]])
    tokens = torch.tensor([[[True, True, True], [True, False, False]]])
    ones = torch.ones(1, 2, 3)
    otb = estimators.get("otb")
    certain = otb(rewards, mask=tokens, token_logprobs=torch.zeros(1, 2, 3), sum_pi_squared=ones)
    assert certain.tolist() == [[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]
    lone = otb(rewards, mask=tokens & torch.tensor([True, False]).view(1, 2, 1), token_logprobs=-ones,
               sum_pi_squared=ones / 2)
    assert lone.tolist() == [[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]
    shared = otb(rewards, mask=tokens, token_logprobs=-ones, sum_pi_squared=ones / 2)
    assert shared[0, 0, 1:].tolist() == [1.0, 1.0] and shared[0, :, 0].tolist() == pytest.approx([0.5, -0.5])


@pytest.mark.parametrize("name", FIELD)
def test_permutation_equivariance_and_padding_never_leaks(name):
    batch = random_batch(6, ragged=False)
    perm = torch.randperm(batch["rewards"].shape[1], generator=torch.Generator().manual_seed(0))
    permuted = {key: value[:, perm] if value.dim() > 1 else value for key, value in batch.items()}
    torch.testing.assert_close(call(name, permuted), call(name, batch)[:, perm])
    padded = dict(batch)
    padded["mask"] = batch["mask"].clone()
    padded["mask"][:, -1] = False  # the last completion unscorable, its tokens too
    padded["tokens"] = batch["tokens"] & padded["mask"].unsqueeze(-1)
    for key in ("rewards", "components", "token_logprobs", "sum_pi_squared"):
        padded[key] = batch[key].clone()
        padded[key][:, -1] = math.nan
    padded["token_logprobs"] = padded["token_logprobs"].where(padded["tokens"], -math.inf)  # and past each end
    trimmed = {key: value[:, :-1] if value.dim() > 1 else value for key, value in batch.items()}
    out = call(name, padded)
    torch.testing.assert_close(out[:, :-1], call(name, trimmed))
    assert torch.all(out[:, -1] == 0) and torch.isfinite(out).all()


def test_declared_inputs_and_clear_errors():
    assert {name: estimators.get(name).extra_inputs for name in FIELD} == {
        "remax": ("greedy_rewards",), "gdpo": ("components", "weights"), "maxrl": (),
        "otb": ("token_logprobs", "sum_pi_squared")}
    assert [name for name in FIELD if estimators.get(name).batch_dependent] == ["gdpo"]
    assert [name for name in estimators.available() if estimators.get(name).token_level] == ["otb"]
    rewards = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"'remax' needs greedy_rewards \(the reward of one greedy completion"):
        estimators.get("remax")(rewards)
    with pytest.raises(ValueError, match=r"greedy_rewards has shape \(2, 4\), expected \(2,\)"):
        estimators.get("remax")(rewards, greedy_rewards=rewards)
    with pytest.raises(ValueError, match=r"components has shape \(2, 4, 2\), expected \(2, 4, 3\)"):
        estimators.get("gdpo")(rewards, components=torch.zeros(2, 4, 2), weights=torch.ones(3))
    with pytest.raises(ValueError, match=r"'otb' needs mask of shape \[B, G, T\]"):
        estimators.get("otb")(rewards, mask=torch.ones(2, 4, dtype=torch.bool))
    tokens = torch.ones(2, 4, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"'otb' needs token_logprobs .*; sum_pi_squared"):
        estimators.get("otb")(rewards, mask=tokens)
    with pytest.raises(ValueError, match=r"sum_pi_squared has shape \(2, 4, 4\), expected \(2, 4, 5\)"):
        estimators.get("otb")(rewards, mask=tokens, token_logprobs=torch.zeros(2, 4, 5),
                              sum_pi_squared=torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="unknown input.*greedy_reward; allowed: rewards, seq_logprobs"):
        estimators.get("remax")(rewards, greedy_reward=torch.zeros(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", FIELD)
def test_cuda_matches_cpu(name):
    batch = random_batch(7)
    out = call(name, {key: value.cuda() for key, value in batch.items()})
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), call(name, batch))


# ---------------------------------------------------------------------------- the exact-gradient testbed's rows
def test_testbed_rows_remax_is_unbiased_and_otb_has_the_highest_snr():
    """ReMax's baseline (the reward of the policy's mode) does not depend on the draws: its mean estimate is the exact
    gradient, like RLOO's. OTB on one-token completions weighs each draw by |e_k - pi|^2, the norm of its score:
    the variance-minimising baseline, so the best signal-to-noise ratio of the unbiased-direction estimators here."""
    testbed = make_testbed(6, 5, "binary", "tabular", 4, torch.Generator().manual_seed(3))
    start = starting_point(testbed, "confident_wrong") * 0.5
    stats = {name: gradient_statistics(testbed, start, estimators.get(name), 4, 1500, torch.Generator().manual_seed(1))
             for name in ["rloo", "group_mean", "remax", "gdpo", "maxrl", "otb"]}
    assert stats["remax"]["cosine"] > 0.999 and stats["remax"]["relative_norm_error"] < 0.05
    assert all(s["cosine"] > 0.99 for s in stats.values())
    assert stats["otb"]["snr"] > max(s["snr"] for name, s in stats.items() if name != "otb")
