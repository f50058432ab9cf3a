"""Loading Hugging Face models and tokenizers for ponder's HF backends, offline.

A model is a local directory or a .gguf file (dequantized by transformers); every load is
`local_files_only=True`, so nothing is downloaded. transformers and peft are imported only when a
load asks for them, with an error that says how to install them. Used by `ponder.policy.hf`,
`ponder.policy.vllm` and `ponder.reward.hf_model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ponder.policy.tiny import PolicyLoadError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
INSTALL_HINT = "pip install -e '.[hf]'"


def import_transformers():
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - transformers is installed wherever the tests run
        raise ImportError(f"the Hugging Face backend needs transformers: {INSTALL_HINT} ({e})") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # no "Loading weights" bars in ponder's output
    return transformers


def import_peft():
    try:
        import peft
    except ImportError as e:  # pragma: no cover
        raise ImportError(f"LoRA needs peft: {INSTALL_HINT} ({e})") from None
    return peft


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def locate(path: str, gguf_file: str) -> tuple[Path, str]:
    """(directory, gguf file name or "") for a model path, or PolicyLoadError saying what was expected."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix != ".gguf" or gguf_file:
            raise PolicyLoadError(f"{p}: expected a Hugging Face model directory or a .gguf file")
        return p.parent, p.name
    if not p.is_dir():
        raise PolicyLoadError(f"{p}: no such model directory or .gguf file (expected a local Hugging Face model "
                              "directory with config.json, or a .gguf file; nothing is downloaded)")
    if gguf_file:
        if not (p / gguf_file).is_file():
            raise PolicyLoadError(f"{p / gguf_file}: no such .gguf file")
        return p, gguf_file
    if not (p / "config.json").is_file() and not (p / "adapter_config.json").is_file():
        raise PolicyLoadError(f"{p}: not a Hugging Face model directory (expected config.json and weights, "
                              "or a .gguf file)")
    return p, ""


def load_tokenizer(directory: Path, gguf_file: str, trust_remote_code: bool):
    tf = import_transformers()
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        return tf.AutoTokenizer.from_pretrained(str(directory), **kwargs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError) as e:
        raise PolicyLoadError(f"{directory / gguf_file if gguf_file else directory}: cannot load its tokenizer "
                              f"({first_line(e)})") from None


def load_model(auto_class, directory: Path, gguf_file: str, dtype: str, trust_remote_code: bool, **extra):
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code,
                              "dtype": DTYPES[dtype], **extra}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        return auto_class.from_pretrained(str(directory), **kwargs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError, RuntimeError) as e:
        where = directory / gguf_file if gguf_file else directory
        raise PolicyLoadError(f"{where}: cannot load a {auto_class.__name__.removeprefix('AutoModelFor')} model "
                              f"({first_line(e)})") from None


def left_padded(rows: Sequence[Sequence[int]], pad_id: int, completions: Sequence[Sequence[int]] = ()
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), both (B, Lp + Tc): each row of token ids right-aligned after `pad_id`s in the
    first Lp = longest-row columns, so column Lp - 1 is every row's last real token (what batched
    generation and last-token pooling want); with `completions`, row b's completion follows it from
    column Lp on, right-padded to the longest completion Tc (what scoring completions wants)."""
    Lp = max(len(r) for r in rows)
    Tc = max((len(c) for c in completions), default=0)
    ids = torch.full((len(rows), Lp + Tc), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), Lp + Tc), dtype=torch.long)
    for b, r in enumerate(rows):
        seq = list(r) + (list(completions[b]) if completions else [])
        ids[b, Lp - len(r) : Lp - len(r) + len(seq)] = torch.tensor(seq, dtype=torch.long)
        attn[b, Lp - len(r) : Lp - len(r) + len(seq)] = 1
    return ids, attn
