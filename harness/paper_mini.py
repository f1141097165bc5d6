"""The policy of `sweeps/paper-mini.yaml`: a randomly initialised Qwen3-architecture model of a few small layers, saved
in bf16 with a locally built tokenizer that carries a Qwen3-style chat template and its special tokens.

`python -m harness.paper_mini [DIR]` (default runs/paper-mini/policy) writes a Hugging Face model directory that
loads with `AutoModelForCausalLM` / `AutoTokenizer` like a real Qwen3 checkpoint, so the paper's path (chat prompts,
`enable_thinking`, `<|im_end|>` as end of turn, bf16 weights) runs end to end on a CPU in seconds. Nothing is
downloaded: the byte-level BPE tokenizer is trained here on the shipped benchmark fixtures (tests/fixtures/benchmarks)
and the weights are seeded. The same directory comes out on every run (an existing one is kept).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "benchmarks"
DEFAULT_DIR = Path("runs/paper-mini/policy")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]  # added tokens of Qwen3 (not special: they stay in decoded text)
SIZE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16}
VOCAB_SIZE = 640

CHAT_TEMPLATE = (
    # Qwen3's template reduced to what a text-only policy uses: system and user/assistant turns between
    # <|im_start|>role\n ... <|im_end|>\n, the generation prompt "<|im_start|>assistant\n", and with
    # enable_thinking=false the empty thinking block Qwen3 inserts ("<think>\n\n</think>\n\n").
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


def training_texts() -> list[str]:
    """What the tokenizer's merges are learned from: every string of the shipped benchmark fixtures, the default
    chat instruction and the digits."""
    from harness.config import DEFAULT_CHAT_INSTRUCTION
    from harness.tasks.jsonl import load_benchmark

    texts = [DEFAULT_CHAT_INSTRUCTION, "0123456789 +-*/=()", "#### \\boxed{}"]
    for path in sorted(FIXTURES.glob("*")):
        if path.suffix in (".jsonl", ".json", ".parquet", ".csv"):
            texts += [text for record in load_benchmark(path) for text in (record["question"], record["answer"])]
    return texts


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (every byte encodable, as Qwen's) with Qwen3's special tokens and chat template;
    eos = <|im_end|> (the end of an assistant turn), pad = <|endoftext|>."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(training_texts(), trainer=trainer)
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in THINK_TOKENS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        padding_side="left")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Qwen3ForCausalLM:
    """A freshly initialised Qwen3 causal LM of `SIZE` for `tokenizer`'s vocabulary, in bf16."""
    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=len(tokenizer), max_position_embeddings=1024, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                         dtype="bfloat16", **SIZE)
    return Qwen3ForCausalLM(config).to(torch.bfloat16)


def build(target: Path = DEFAULT_DIR, seed: int = 0) -> Path:
    """Write the paper-mini policy to `target` (staged, then renamed) unless it is there already; returns it."""
    target = Path(target)
    if (target / "paper_mini.json").is_file():
        return target
    staging = target.with_name(f"{target.name}.tmp-{time.time_ns()}")
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    info = {"what": "harness.paper_mini: random-init Qwen3 architecture, local byte-level BPE tokenizer", "seed": seed,
            "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer), **SIZE}
    (staging / "paper_mini.json").write_text(json.dumps(info, indent=2))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def main(argv: list[str] | None = None) -> None:
    """CLI: build the paper-mini policy directory."""
    parser = argparse.ArgumentParser(prog="python -m harness.paper_mini", description=__doc__)
    parser.add_argument("target", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build(args.target, args.seed))


if __name__ == "__main__":
    main()
