"""An exact-gradient testbed for advantage estimators.

Each of P prompts has K candidate completions with known rewards r_pk and token lengths L_pk. The policy is a softmax
over the candidates, pi_p = softmax(theta_p), with logits either free per prompt (`tabular`) or theta_pk = phi_pk . w
for fixed features phi (`linear`). The objective J = (1/P) sum_p sum_k pi_pk r_pk has the exact gradient
dJ/dtheta_pk = (1/P) pi_pk (r_pk - sum_j pi_pj r_pj), and dJ/dw = sum_pk dJ/dtheta_pk phi_pk.

An estimator's policy-gradient estimate from one group of G draws per prompt is
g = (1/(P G)) sum_p sum_i A_pi grad log pi(k_pi), with grad_theta_p log pi_pk = e_k - pi_p, so its logit-space
form is g_theta[p, k] = (W_pk - (sum_i A_pi) pi_pk) / (P G), W_pk = sum_i A_pi [k_pi = k].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from estimators import Estimator


@dataclass
class Testbed:
    """Rewards [P, K], lengths [P, K] and, for the linear policy, features [P, K, D]."""

    rewards: torch.Tensor
    lengths: torch.Tensor
    features: torch.Tensor | None = None

    @property
    def prompts(self) -> int:
        return self.rewards.shape[0]

    def logits(self, params: torch.Tensor) -> torch.Tensor:
        """theta [..., P, K] from parameters [..., P, K] (tabular) or [..., D] (linear: phi . w); leading dims batch."""
        return params if self.features is None else torch.einsum("pkd,...d->...pk", self.features, params)

    def expected_reward(self, params: torch.Tensor) -> torch.Tensor:
        """J = mean_p sum_k pi_pk r_pk (one value per leading batch index)."""
        return (torch.softmax(self.logits(params), dim=-1) * self.rewards).sum(-1).mean(-1)

    def to_parameter_space(self, logit_grad: torch.Tensor) -> torch.Tensor:
        """Chain rule from logit gradients [..., P, K] to parameter gradients (identity for tabular)."""
        if self.features is None:
            return logit_grad
        return torch.einsum("...pk,pkd->...d", logit_grad, self.features)

    def true_gradient(self, params: torch.Tensor) -> torch.Tensor:
        """Exact dJ/dparams."""
        pi = torch.softmax(self.logits(params), dim=-1)
        baseline = (pi * self.rewards).sum(-1, keepdim=True)
        return self.to_parameter_space(pi * (self.rewards - baseline) / self.prompts)

    def estimate(self, params: torch.Tensor, estimator: Estimator, group: int, samples: int,
                 generator: torch.Generator) -> torch.Tensor:
        """`samples` independent gradient estimates [samples, *params.shape] from groups of `group` draws; for
        parameters with a leading batch dim of size `samples`, one estimate at each of them."""
        pi = torch.softmax(self.logits(params), dim=-1)
        p, k = pi.shape[-2:]
        pi = pi.expand(samples, p, k)
        draws = torch.multinomial(pi.reshape(-1, k), group, replacement=True, generator=generator)
        draws = draws.view(samples, p, group)
        rewards = torch.gather(self.rewards.expand(samples, p, k), -1, draws).view(-1, group)
        log_pi = torch.gather(torch.log(pi), -1, draws).view(-1, group)
        lengths = torch.gather(self.lengths.expand(samples, p, k), -1, draws).view(-1, group)
        inputs = [t.view(samples, p, group) for t in (rewards, log_pi, lengths)]
        # a candidate's log-prob is its sequence's; a batch-dependent estimator (whitening, batch coefficients) sees
        # one estimate's P groups as its batch, as a trainer would
        batches = zip(*inputs) if estimator.batch_dependent else [tuple(t.reshape(-1, group) for t in inputs)]
        advantages = torch.cat([estimator(r, seq_logprobs=s, lengths=n) for r, s, n in batches])
        advantages = advantages.view(samples, p, group)
        weights = torch.zeros(samples, p, k, dtype=pi.dtype).scatter_add_(-1, draws, advantages)
        logit_grad = (weights - advantages.sum(-1, keepdim=True) * pi) / (p * group)
        return self.to_parameter_space(logit_grad)


def make_testbed(prompts: int, candidates: int, rewards: str, policy: str, features: int,
                 generator: torch.Generator) -> Testbed:
    """Random testbed: `binary` rewards (about a third correct, at least one per prompt) or `graded` ones in [0, 1]."""
    if rewards == "binary":
        values = (torch.rand(prompts, candidates, generator=generator) < 1 / 3).double()
        values[torch.arange(prompts), torch.randint(candidates, (prompts,), generator=generator)] = 1.0
    else:
        values = torch.rand(prompts, candidates, generator=generator, dtype=torch.float64)
    lengths = torch.randint(5, 40, (prompts, candidates), generator=generator).double()
    phi = torch.randn(prompts, candidates, features, generator=generator, dtype=torch.float64) if policy == "linear" else None
    return Testbed(values, lengths, phi)


def starting_point(testbed: Testbed, start: str, strength: float = 4.0) -> torch.Tensor:
    """Parameters of a start: `uniform` (zero logits), `confident_wrong` (logit `strength` on a worst candidate) or
    `nearly_solved` (on a best one); for the linear policy, the least-squares w giving those logits."""
    target = torch.zeros_like(testbed.rewards)
    if start != "uniform":
        pick = testbed.rewards.argmin(-1) if start == "confident_wrong" else testbed.rewards.argmax(-1)
        target[torch.arange(testbed.prompts), pick] = strength
    if testbed.features is None:
        return target
    flat = testbed.features.reshape(-1, testbed.features.shape[-1])
    return torch.linalg.lstsq(flat, target.reshape(-1, 1)).solution.squeeze(-1)
