"""The held-out sampler trials used before the counter-based one of harness/trial/scoring.py, kept as the reference
of `lph bench eval` and of the test that both samplers draw from one distribution (tests/test_scoring.py)."""

from __future__ import annotations

from typing import Any

import torch

from harness.trial.scoring import tempered_nucleus


class ReferenceSampler:
    """The held-out sampler trials used before the counter-based one (kept as the benchmark's reference, and for the
    test that both draw from one distribution): a logits processor of `generate(do_sample=False)` drawing, for every
    row and step, CPU float64 uniforms over the whole vocabulary from the row's own `torch.Generator` in a Python
    loop and copying them to the device, finished rows included; next token = argmax_v log q(v) + G_v, G = -log(-log
    U), q the tempered nucleus (harness.trial.scoring.tempered_nucleus)."""

    def __init__(self, row_seeds: list[int], temperature: float, top_p: float) -> None:
        self.generators = [torch.Generator().manual_seed(seed) for seed in row_seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        log_q = tempered_nucleus(scores, self.temperature, self.top_p)
        return log_q.double() + self.noise(scores.shape[-1]).to(scores.device)

    def noise(self, vocab: int) -> torch.Tensor:
        """The rows' Gumbel noise of one step [rows, vocab] (float64, CPU)."""
        uniform = torch.stack([torch.rand(vocab, generator=g, dtype=torch.float64) for g in self.generators])
        return -torch.log(-torch.log(uniform.clamp(min=1e-300, max=1.0 - 1e-16)))


def reference_generate(model: Any, tokenizer: Any, prompts: list[str], row_seeds: list[int], max_new_tokens: int,
                       batch_size: int, temperature: float = 1.0, top_p: float = 1.0) -> list[str]:
    """One sample per prompt as trials drew them before: `generate` over left-padded batches of `batch_size` rows
    (a prompt repeated k times is encoded and prefilled k times) with `ReferenceSampler`."""
    from transformers import LogitsProcessorList

    outputs: list[str] = []
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(device)
        sampler = ReferenceSampler(row_seeds[start : start + batch_size], temperature, top_p)
        with torch.no_grad():
            generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, top_k=None,
                                       top_p=None, temperature=None, logits_processor=LogitsProcessorList([sampler]),
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        outputs.extend(tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True))
    return outputs
