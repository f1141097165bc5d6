"""Property and oracle tests of the advantage estimators (double-loop references, identities, TRL's formula)."""

from __future__ import annotations

import math

import pytest
import torch
from trl.trainer.utils import nanstd

import estimators

ALL = [name for name in estimators.available() if not estimators.get(name).extra_inputs]
"""The estimators of rewards, log-probs and lengths alone (those reading more: tests/test_estimators_field.py)."""
DETERMINISTIC = [name for name in ALL if name != "shuffled"]  # shuffled draws a random permutation per call
ANTISYMMETRIC = ["group_mean", "rloo", "pairwise_sum", "attenuated_pairwise", "lambdarank", "shuffled"]


def random_batch(seed: int, b: int = 7, g: int = 6, ragged: bool = True, binary: bool = False):
    """Rewards, log-probs, lengths and a mask with at least one valid completion per group."""
    gen = torch.Generator().manual_seed(seed)
    rewards = (torch.rand(b, g, generator=gen) < 0.5).double() if binary else torch.rand(b, g, generator=gen).double()
    seq_logprobs = -10 * torch.rand(b, g, generator=gen).double()
    lengths = torch.randint(1, 30, (b, g), generator=gen).double()
    mask = torch.rand(b, g, generator=gen) < 0.75 if ragged else torch.ones(b, g, dtype=torch.bool)
    mask[:, 0] = True
    return rewards, seq_logprobs, lengths, mask


def call(name: str, batch, **params) -> torch.Tensor:
    rewards, lp, n, mask = batch
    return estimators.get(name, **params)(rewards, seq_logprobs=lp, lengths=n, mask=mask)


# ---------------------------------------------------------------- double-loop references (one group, plain Python)
def sigmoid(x):
    """Logistic function without overflow for any finite x."""
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def ref_pairwise(r, s, attenuation="ranknet", beta=1.0, lambdarank=False, magnitude="reward"):
    g = len(r)
    order = sorted(range(g), key=lambda i: (-s[i], i))
    rank = {i: k + 1 for k, i in enumerate(order)}
    gains = [2.0 ** x - 1 for x in r]
    idcg = sum(gain / math.log2(1 + k + 1) for k, gain in enumerate(sorted(gains, reverse=True)))
    out = []
    for i in range(g):
        total = 0.0
        for j in range(g):
            if r[i] == r[j]:
                continue
            a, b = (i, j) if r[i] > r[j] else (j, i)
            p_ab = sigmoid(beta * (s[a] - s[b]))
            w = 1 - p_ab if attenuation == "ranknet" else -math.log(p_ab) if attenuation == "log" else 1.0
            if lambdarank:
                d = lambda k: 1 / math.log2(1 + k)  # noqa: E731
                delta = abs(gains[i] - gains[j]) * abs(d(rank[i]) - d(rank[j])) / idcg if idcg > 0 else 0.0
                total += math.copysign(1.0, r[i] - r[j]) * delta * (1 - p_ab)
            else:
                total += (r[i] - r[j] if magnitude == "reward" else math.copysign(1.0, r[i] - r[j])) * w
        out.append(total / max(g - 1, 1))
    return out


def ref_group_mean(r, scale):
    g = len(r)
    mean = sum(r) / g
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / (g - 1)) if g > 1 else 0.0
    return [(x - mean) / (std + 1e-4) if scale == "group" else x - mean for x in r]


def ref_rloo(r):
    g = len(r)
    return [r[i] - sum(r[j] for j in range(g) if j != i) / (g - 1) if g > 1 else 0.0 for i in range(g)]


def per_group_reference(name: str, batch, **params) -> torch.Tensor:
    rewards, lp, n, mask = batch
    out = torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        idx = [i for i in range(rewards.shape[1]) if mask[b, i]]
        r = [rewards[b, i].item() for i in idx]
        s = [(lp[b, i] / (n[b, i] if params.get("score", "mean") == "mean" else 1)).item() for i in idx]
        if name == "group_mean":
            vals = ref_group_mean(r, params.get("scale", "group"))
        elif name in ("rloo", "pairwise_sum"):
            vals = ref_rloo(r)
        elif name == "attenuated_pairwise":
            vals = ref_pairwise(r, s, params.get("attenuation", "ranknet"), params.get("beta", 1.0),
                                magnitude=params.get("magnitude", "reward"))
        else:
            vals = ref_pairwise(r, s, beta=params.get("beta", 1.0), lambdarank=True)
        for i, v in zip(idx, vals):
            out[b, i] = v
    return out


@pytest.mark.parametrize(
    "name,params",
    [
        ("group_mean", {}),
        ("group_mean", {"scale": "none"}),
        ("rloo", {}),
        ("pairwise_sum", {}),
        ("attenuated_pairwise", {}),
        ("attenuated_pairwise", {"attenuation": "log", "beta": 2.5}),
        ("attenuated_pairwise", {"attenuation": "none"}),
        ("attenuated_pairwise", {"magnitude": "sign"}),
        ("attenuated_pairwise", {"magnitude": "sign", "attenuation": "log", "score": "sum", "beta": 0.2}),
        ("attenuated_pairwise", {"magnitude": "sign", "attenuation": "none"}),
        ("attenuated_pairwise", {"score": "sum", "beta": 0.7}),
        ("lambdarank", {}),
        ("lambdarank", {"beta": 0.3}),
    ],
)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("binary", [False, True])
def test_vectorised_equals_double_loop_with_random_masks(name, params, seed, binary):
    batch = random_batch(seed, binary=binary)
    torch.testing.assert_close(call(name, batch, **params), per_group_reference(name, batch, **params))


@pytest.mark.parametrize("name", ANTISYMMETRIC)
def test_zero_sum_per_group(name):
    batch = random_batch(1)
    assert call(name, batch, scale="none").sum(dim=-1).abs().max() < 1e-9


@pytest.mark.parametrize("name", ["group_mean", "rloo", "pairwise_sum", "attenuated_pairwise"])
def test_shift_invariance(name):
    rewards, lp, n, mask = random_batch(2)
    torch.testing.assert_close(call(name, (rewards + 3.7, lp, n, mask)), call(name, (rewards, lp, n, mask)))


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_permutation_equivariance(name):
    rewards, lp, n, mask = random_batch(3, ragged=False)
    perm = torch.randperm(rewards.shape[1], generator=torch.Generator().manual_seed(0))
    permuted = call(name, (rewards[:, perm], lp[:, perm], n[:, perm], mask[:, perm]))
    torch.testing.assert_close(permuted, call(name, (rewards, lp, n, mask))[:, perm])


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_padded_group_equals_unpadded_group(name):
    rewards, lp, n, _ = random_batch(4, b=1, g=5, ragged=False)
    pad = lambda t, v: torch.cat([t, torch.full((1, 3), v, dtype=t.dtype)], dim=1)  # noqa: E731
    mask = torch.tensor([[True] * 5 + [False] * 3])
    padded = call(name, (pad(rewards, math.nan), pad(lp, -math.inf), pad(n, math.inf), mask))  # padding never leaks
    torch.testing.assert_close(padded[:, :5], call(name, (rewards, lp, n, None)))
    assert torch.all(padded[:, 5:] == 0)


def test_identities_between_estimators():
    batch = random_batch(5, ragged=False)
    rewards = batch[0]
    g = rewards.shape[1]
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    torch.testing.assert_close(call("pairwise_sum", batch, normalize="none"), g * centred)
    torch.testing.assert_close(call("pairwise_sum", batch), call("rloo", batch))
    torch.testing.assert_close(call("attenuated_pairwise", batch, attenuation="none"), call("pairwise_sum", batch))
    torch.testing.assert_close(call("attenuated_pairwise", batch, beta=0.0), 0.5 * call("pairwise_sum", batch))
    torch.testing.assert_close(call("group_mean", batch, scale="none"), centred)


def test_sign_magnitude_equals_reward_magnitude_for_binary_rewards_and_differs_for_graded():
    binary = random_batch(8, binary=True)
    signs = call("attenuated_pairwise", binary, magnitude="sign")
    torch.testing.assert_close(signs, call("attenuated_pairwise", binary))
    graded = random_batch(8)
    assert not torch.allclose(call("attenuated_pairwise", graded, magnitude="sign"),
                              call("attenuated_pairwise", graded))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("spread", [3.0, 300.0, 3000.0])
def test_attenuated_pairwise_stays_exact_for_far_apart_scores(dtype, spread):
    """Summed log-probs hundreds of nats apart (long completions): no overflow, against the double loop with a
    stable sigmoid."""
    rewards, lp, n, mask = random_batch(9)
    lp = lp * spread / 10
    batch = (rewards.to(dtype), lp.to(dtype), n.to(dtype), mask)
    for params in ({"score": "sum"}, {"score": "sum", "magnitude": "sign", "beta": 0.5}):
        got = call("attenuated_pairwise", batch, **params)
        assert got.dtype == dtype
        torch.testing.assert_close(got, per_group_reference("attenuated_pairwise", batch, **params).to(dtype))


@pytest.mark.parametrize("params", [{}, {"attenuation": "log", "magnitude": "sign", "score": "sum"}])
def test_attenuated_pairwise_in_row_blocks_equals_the_double_loop(monkeypatch, params):
    """CPU blocks of rows (here 2 groups of 6 per block, the last one short) give the same advantages."""
    monkeypatch.setattr(estimators.ops, "PAIR_BLOCK", 2 * 36)
    batch = random_batch(13)
    torch.testing.assert_close(call("attenuated_pairwise", batch, **params),
                               per_group_reference("attenuated_pairwise", batch, **params))


def sorted_valid(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The valid advantages of each group in ascending order, then +inf for the masked entries."""
    return torch.where(mask, advantages, math.inf).sort(dim=-1).values


@pytest.mark.parametrize("scale", ["group", "none"])
def test_shuffled_permutes_group_mean_within_valid_entries(scale):
    batch = random_batch(11, b=40)
    mask = batch[3]
    torch.manual_seed(0)
    shuffled = call("shuffled", batch, scale=scale)
    reference = call("group_mean", batch, scale=scale)
    torch.testing.assert_close(sorted_valid(shuffled, mask), sorted_valid(reference, mask))
    assert torch.all(shuffled[~mask] == 0)
    assert shuffled.sum(dim=-1).abs().max() < 1e-9
    assert not torch.allclose(shuffled, reference)


def test_shuffled_is_reproducible_under_a_seed_and_otherwise_random():
    batch = random_batch(12, b=40)
    torch.manual_seed(3)
    first = call("shuffled", batch)
    second = call("shuffled", batch)
    torch.manual_seed(3)
    torch.testing.assert_close(call("shuffled", batch), first)
    assert not torch.equal(first, second)
    torch.testing.assert_close(call("shuffled", batch, seed=5), call("shuffled", batch, seed=5))
    assert not torch.equal(call("shuffled", batch, seed=5), call("shuffled", batch, seed=6))


def test_shuffled_sends_every_value_to_every_valid_position_uniformly():
    """4000 copies of one group (positions 1 and 3 masked): each of the 4 valid positions receives each of the 4
    values a quarter of the time (within 5 binomial standard deviations)."""
    rewards = torch.tensor([[0.0, 9.0, 1.0, 9.0, 3.0, 7.0]]).double().expand(4000, 6)
    mask = torch.tensor([[True, False, True, False, True, True]]).expand(4000, 6)
    torch.manual_seed(0)
    out = estimators.get("shuffled", scale="none")(rewards, mask=mask)
    values = torch.tensor([-2.75, -1.75, 0.25, 4.25]).double()
    counts = (out[:, mask[0]].unsqueeze(-1) == values).sum(0)
    assert torch.all(counts.sum(-1) == 4000) and torch.all(counts.sum(0) == 4000)
    assert (counts - 1000).abs().max() < 5 * math.sqrt(4000 * 0.25 * 0.75)


def test_attenuation_down_weights_confidently_ordered_pairs():
    """Two completions, the better one already far more likely: its advantage shrinks as beta grows."""
    rewards = torch.tensor([[1.0, 0.0]])
    lp = torch.tensor([[-1.0, -5.0]])
    n = torch.ones(1, 2)
    small = [estimators.get("attenuated_pairwise", beta=b)(rewards, lp, n)[0, 0].item() for b in (0.0, 1.0, 4.0)]
    assert small[0] > small[1] > small[2] > 0
    reversed_lp = torch.tensor([[-5.0, -1.0]])  # the policy prefers the worse completion: weight grows above 0.5
    assert estimators.get("attenuated_pairwise", beta=1.0)(rewards, reversed_lp, n)[0, 0].item() > 0.5


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_mean_equals_trl_formula(scale):
    """TRL 1.16 GRPOTrainer (`sum_then_normalize`): (r - mean_group) / (nanstd + 1e-4), nanstd over the group
    or the whole batch; `none` skips the division. The trainer test checks the same on TRL's own code path."""
    rewards = random_batch(6, b=16, g=8, ragged=False, binary=True)[0].float()
    rewards[3] = 1.0  # a group of equal rewards
    flat = rewards.flatten()
    mean = flat.view(-1, 8).mean(dim=1).repeat_interleave(8)
    std = nanstd(flat.view(-1, 8), dim=1).repeat_interleave(8) if scale == "group" else nanstd(flat).expand_as(flat)
    expected = flat - mean if scale == "none" else (flat - mean) / (std + 1e-4)
    got = estimators.get("group_mean", scale=scale)(rewards)
    torch.testing.assert_close(got.flatten(), expected)
    assert torch.all(got[3] == 0)


@pytest.mark.parametrize("name", ALL)
def test_equal_rewards_give_zeros_and_output_is_clean(name):
    rewards = torch.ones(3, 4, dtype=torch.float32, requires_grad=True)
    lp = torch.tensor([[-1e30, 0.0, 5.0, -3.0]] * 3)
    out = estimators.get(name)(rewards, seq_logprobs=lp, lengths=torch.zeros(3, 4))
    assert out.dtype == torch.float32 and not out.requires_grad
    assert torch.all(out == 0)
    extreme = torch.tensor([[1e30, -1e30, 0.0, 1.0]])
    assert torch.isfinite(estimators.get(name)(extreme, seq_logprobs=lp[:1], lengths=torch.ones(1, 4))).all()


def test_clear_errors():
    with pytest.raises(ValueError, match="unknown estimator 'nope'; available: attenuated_pairwise"):
        estimators.get("nope")
    with pytest.raises(ValueError, match="unknown parameter.*temperature.*allowed: beta, score"):
        estimators.get("attenuated_pairwise", temperature=1.0)
    with pytest.raises(ValueError, match="allowed values: 'mean', 'sum'"):
        estimators.get("attenuated_pairwise", score="max")
    with pytest.raises(ValueError, match="finite number"):
        estimators.get("attenuated_pairwise", beta=float("nan"))
    est = estimators.get("attenuated_pairwise")
    with pytest.raises(ValueError, match="needs seq_logprobs and lengths"):
        est(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"shape \[B, G\]"):
        est(torch.zeros(8))
    with pytest.raises(ValueError, match="floating-point"):
        est(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="seq_logprobs has shape"):
        est(torch.zeros(2, 4), seq_logprobs=torch.zeros(2, 3), lengths=torch.ones(2, 4))
    with pytest.raises(ValueError, match="mask must be a bool"):
        estimators.get("rloo")(torch.zeros(2, 4), mask=torch.ones(2, 4))


def test_register_decorator_and_clash():
    @estimators.register("test_only_constant")
    def constant(rewards, seq_logprobs, lengths, mask, *, value: float = 2.0):
        """A_i = value."""
        return torch.full_like(rewards, value)

    assert "test_only_constant" in estimators.available()
    mask = torch.tensor([[True, False]])
    assert estimators.get("test_only_constant", value=3.0)(torch.zeros(1, 2), mask=mask).tolist() == [[3.0, 0.0]]
    with pytest.raises(ValueError, match="already registered"):
        estimators.register("group_mean")(constant)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_cuda_matches_cpu(name):
    batch = random_batch(7)
    on_cuda = tuple(t.cuda() for t in batch)
    out = call(name, on_cuda)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), call(name, batch))
