"""The policy: the project's tiny Qwen2 model with a character tokenizer and a cached supervised warm start, or any
local Hugging Face model directory (Qwen3's included, e.g. the paper-mini policy of harness.paper_mini), loaded in
float32 whatever dtype its checkpoint was saved in: the optimizer updates float32 master weights and bf16/fp16 only
autocast the forward passes (`trainer.bf16`/`fp16`, TRL's convention; TRL's own loader defaults to float32 too). AdamW
on bf16 weights rounds away every update smaller than half the bf16 spacing at w (2^-9 to 2^-8 of |w|): Adam's
step is about lr, so at lr 1e-6 no weight with |w| >= 2^-11 (4.9e-4) moves. Nothing is fetched from the hub.

The warm start trains on the task's train split (loss on the solution tokens only) so that RL starts from a policy
that solves some test problems; it is cached under `runs/cache/warm-<hash>/` keyed by the model and task configs.
"""

from __future__ import annotations

import fcntl
import functools
import json
import math
import os
import shutil
import string
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from harness.config import ModelConfig, PromptConfig, TaskConfig, stable_hash
from harness.tasks import Record, check_chat_template, load_task, render_prompt, warm_start_target

SPECIAL_TOKENS = ["<pad>", "<eos>", "<unk>"]
TINY_MODEL = "(the tiny model: model.path unset)"  # how errors name the tiny model
WARM_START_MARKER = "warm_start.json"  # written last into a finished warm start; marks the tiny model


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII (BPE without merges, `Fuse` decoder); other characters -> <unk>."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for ch in string.printable:
        if ch not in "\x0b\x0c\r":
            vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", padding_side="left"
    )


def build_tiny_model(config: ModelConfig, tokenizer: PreTrainedTokenizerFast, seed: int) -> Qwen2ForCausalLM:
    """A freshly initialised Qwen2 causal LM of `config`'s size for `tokenizer`'s vocabulary."""
    torch.manual_seed(seed)
    qwen = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=3 * config.hidden_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    return Qwen2ForCausalLM(qwen)


def supervised_batch(records: list[Record], tokenizer: PreTrainedTokenizerFast,
                     prompt_config: PromptConfig | None = None) -> dict[str, torch.Tensor]:
    """Right-padded prompt (`render_prompt` under `prompt_config`, default `task.prompt`'s default) + solution +
    <eos> ids with labels -100 on the prompt and padding."""
    rows, labels = [], []
    for record in records:
        text = render_prompt(record, prompt_config or PromptConfig(), tokenizer)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        target = tokenizer(warm_start_target(record), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(prompt + target)
        labels.append([-100] * len(prompt) + target)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "labels": torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels]),
    }


def warm_start(model: torch.nn.Module, records: list[Record], tokenizer: PreTrainedTokenizerFast,
               config: ModelConfig, seed: int, prompt_config: PromptConfig | None = None) -> list[float]:
    """Supervised fine-tuning with AdamW and a cosine learning rate; returns the loss of each step."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.warm_start_lr, weight_decay=0.01)
    losses = []
    model.train()
    for step in range(config.warm_start_steps):
        lr = config.warm_start_lr * 0.5 * (1 + math.cos(math.pi * step / max(config.warm_start_steps, 1)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = torch.randint(len(records), (config.warm_start_batch,), generator=generator)
        loss = model(**supervised_batch([records[i] for i in index], tokenizer, prompt_config)).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def cache_dir() -> Path:
    """Where warm starts are cached: $HARNESS_CACHE_DIR, default runs/cache (shared by every sweep)."""
    return Path(os.environ.get("HARNESS_CACHE_DIR", "runs/cache"))


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "warm_starts"
"""Warm starts shipped with the project (`python -m harness.trial.ship SPEC`): the same bytes on every machine."""


def warm_start_key(model_config: ModelConfig, task_config: TaskConfig) -> str:
    """Identity of a warm start: the hash of the model config and of the warm start's training data itself (prompts
    and targets), so a changed task generator never reuses a stale warm start."""
    data_hash = warm_start_data_hash(task_config.model_dump_json())
    return stable_hash({"model": model_config.model_dump(), "data": data_hash, "version": 2})


def shipped_warm_start(model_config: ModelConfig, task_config: TaskConfig) -> Path | None:
    """The shipped warm start of these configs (SHIPPED_DIR/warm-<key>), or None."""
    path = SHIPPED_DIR / f"warm-{warm_start_key(model_config, task_config)}"
    return path if (path / WARM_START_MARKER).is_file() else None


def warm_start_dir(model_config: ModelConfig, task_config: TaskConfig) -> Path:
    """Cache directory of the warm start for these configs: `warm_start_key` plus torch's CPU kernel path
    (`get_cpu_capability()`): the warm-start recipe is chaotic enough that the same arithmetic rounded differently
    (another CPU, or `ATEN_CPU_CAPABILITY=default`) trains another policy, so each path caches its own."""
    key = stable_hash({"key": warm_start_key(model_config, task_config),
                       "cpu_capability": torch.backends.cpu.get_cpu_capability()})
    return cache_dir() / f"warm-{key}"


@functools.lru_cache(maxsize=64)
def warm_start_data_hash(task_json: str) -> str:
    """sha256 (64 hex digits) of the warm start's (prompt, target) pairs for the task config `task_json`, generated
    once per process and task (a sweep asks for it at every trial start)."""
    task = TaskConfig.model_validate_json(task_json)
    check_chat_template(task.prompt, build_tokenizer(), TINY_MODEL)
    train = load_task(task).train
    return stable_hash([(render_prompt(r, task.prompt), warm_start_target(r)) for r in train], 64)


def warm_start_ready(model_config: ModelConfig, task_config: TaskConfig) -> bool:
    """Whether the warm start of these configs is shipped or already cached (no training needed)."""
    return (shipped_warm_start(model_config, task_config) is not None
            or (warm_start_dir(model_config, task_config) / WARM_START_MARKER).is_file())


def ensure_warm_start(model_config: ModelConfig, task_config: TaskConfig) -> Path:
    """Directory of the warm-started tiny model: the shipped one of these configs, else the cached one, trained and
    saved on first use. Processes of this machine that ask for the same warm start meanwhile wait on its lock file
    instead of training it again."""
    if (shipped := shipped_warm_start(model_config, task_config)) is not None:
        return shipped
    target = warm_start_dir(model_config, task_config)
    if (target / WARM_START_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.with_name(f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / WARM_START_MARKER).is_file():
            train_warm_start(model_config, task_config, target)
    return target


def train_warm_start(model_config: ModelConfig, task_config: TaskConfig, target: Path) -> None:
    """Train the warm start and save it to `target` atomically (staged, then renamed; if another host renamed its
    copy first, that one is kept)."""
    tokenizer = build_tokenizer()
    model = build_tiny_model(model_config, tokenizer, seed=0)
    started = time.perf_counter()
    losses = warm_start(model, load_task(task_config).train, tokenizer, model_config, seed=0,
                        prompt_config=task_config.prompt)
    staging = target.with_name(f"{target.name}.tmp-{time.time_ns()}")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    info = {"seconds": time.perf_counter() - started, "final_loss": losses[-1] if losses else None,
            "parameters": sum(p.numel() for p in model.parameters())}
    (staging / WARM_START_MARKER).write_text(json.dumps(info, indent=2))
    try:
        staging.rename(target)
    except OSError:  # another process finished the same warm start first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """The tokenizer saved in `path`. The project's tiny model reads its tokenizer.json as is: AutoTokenizer would
    pick the tokenizer class of the model type (Qwen2's), which drops the spaces and newlines of the character
    vocabulary."""
    if (path / WARM_START_MARKER).is_file():
        return PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def load_policy(model_config: ModelConfig, task_config: TaskConfig) -> tuple[torch.nn.Module, PreTrainedTokenizerFast, Path]:
    """The policy model (in float32, whatever its checkpoint's dtype: see the module docstring), its tokenizer and its
    directory (a local path, or the cached warm start). `task.prompt.chat` with a tokenizer that has no chat template
    raises `ValueError` naming the model."""
    if model_config.path is not None:
        path = Path(model_config.path)
        if not path.is_dir():
            raise ValueError(f"model.path {path} is not a local model directory (nothing is fetched from the hub)")
        tokenizer = load_tokenizer(path)
        check_chat_template(task_config.prompt, tokenizer, path)
    else:
        check_chat_template(task_config.prompt, build_tokenizer(), TINY_MODEL)
        path = ensure_warm_start(model_config, task_config)
        tokenizer = load_tokenizer(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    return model, tokenizer, path


def training_precision(model: torch.nn.Module, bf16: bool, fp16: bool) -> dict[str, str | None]:
    """The summary's precision fields: `param_dtype`, the dtype(s) of `model`'s parameters (the weights the optimizer
    updates; comma-joined if several), and `autocast_dtype`, what `bf16`/`fp16` (the trainer's flags) autocast the
    forward passes to (None: no autocast)."""
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    return {"param_dtype": ",".join(dtypes), "autocast_dtype": "bfloat16" if bf16 else "float16" if fp16 else None}


def ensure_warm_starts(configs: list[tuple[ModelConfig, TaskConfig]], workers: int = 1) -> list[Path]:
    """`ensure_warm_start` for each distinct tiny-model (model, task) pair, the missing ones trained `workers` at a
    time in spawned processes (each with an equal share of this machine's cores); returns their directories."""
    distinct = {(m.model_dump_json(), t.model_dump_json()): (m, t) for m, t in configs if m.path is None}
    missing = [pair for pair in distinct.values() if not warm_start_ready(*pair)]
    if workers > 1 and len(missing) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        processes = min(workers, len(missing))
        threads = max(1, (os.cpu_count() or 1) // processes)
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_warm_start_with_threads, missing, [threads] * len(missing)))
    return [ensure_warm_start(*pair) for pair in distinct.values()]


def _warm_start_with_threads(pair: tuple[ModelConfig, TaskConfig], threads: int) -> Path:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a spawned process: the driver's quiet settings do not reach it
    torch.set_num_threads(threads)
    return ensure_warm_start(*pair)
