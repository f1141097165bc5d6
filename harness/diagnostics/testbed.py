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
        inputs = self.group_inputs(pi, draws, estimator)
        # a batch-dependent estimator (whitening, batch coefficients) sees one estimate's P groups as its batch, as a
        # trainer would
        calls = ([{key: value[s] for key, value in inputs.items()} for s in range(samples)]
                 if estimator.batch_dependent else [{key: value.flatten(0, 1) for key, value in inputs.items()}])
        mix = {"weights": pi.new_ones(1)} if estimator.needs_components else {}
        advantages = torch.cat([estimator(**call, **mix) for call in calls])
        advantages = advantages.view(samples, p, group)  # a token-level estimator's [.., G, 1]: its one token
        weights = torch.zeros(samples, p, k, dtype=pi.dtype).scatter_add_(-1, draws, advantages)
        logit_grad = (weights - advantages.sum(-1, keepdim=True) * pi) / (p * group)
        return self.to_parameter_space(logit_grad)

    def group_inputs(self, pi: torch.Tensor, draws: torch.Tensor, estimator: Estimator) -> dict[str, torch.Tensor]:
        """What `estimator` reads about the drawn candidates `draws` [S, P, G] under the policies `pi` [S, P, K], each
        [S, P, G] ([S, P, G, 1] per token, [S, P] per prompt): rewards, the candidate's log-prob as its sequence's and
        its length; `greedy_rewards`: the reward of the policy's mode, the greedy completion of a one-decision policy;
        `components`: the testbed's one reward (weight 1); token-level: each candidate is one token, its log-prob and
        sum_k pi_k^2 from the exact distribution."""
        samples, p, group = draws.shape
        rewards = torch.gather(self.rewards.expand(samples, p, -1), -1, draws)
        log_pi = torch.gather(torch.log(pi), -1, draws)
        inputs = {"rewards": rewards, "seq_logprobs": log_pi,
                  "lengths": torch.gather(self.lengths.expand(samples, p, -1), -1, draws)}
        if estimator.needs_greedy_rewards:
            inputs["greedy_rewards"] = torch.gather(self.rewards.expand(samples, p, -1), -1,
                                                    pi.argmax(-1, keepdim=True)).squeeze(-1)
        if estimator.needs_components:
            inputs["components"] = rewards.unsqueeze(-1)
        if estimator.token_level:
            sum_pi_squared = pi.pow(2).sum(-1, keepdim=True).expand(samples, p, group)
            inputs |= {"token_logprobs": log_pi.unsqueeze(-1), "sum_pi_squared": sum_pi_squared.unsqueeze(-1),
                       "mask": torch.ones_like(rewards, dtype=torch.bool).unsqueeze(-1)}
        return inputs


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
