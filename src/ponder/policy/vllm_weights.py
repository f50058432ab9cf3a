"""Moving trained weights into a running vLLM engine, and the engine's end.

The merged (LoRA folded in, out of place) state dict of the trainable HF copy, its export to a model
directory, the engine's model object where it lives in this process, and the three ways of pushing
weights in ("direct", "rpc", "rebuild": see `ponder.policy.vllm`). Imports vLLM only where it must.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ponder.policy.hf import HFPolicy
from ponder.policy.hf_loading import first_line

PUSH_KINDS = ("direct", "rpc", "rebuild")
_RUNNER_PATHS = (  # where engines of different versions keep the model runner, when it lives in this process
    ("llm_engine", "model_executor", "driver_worker", "worker", "model_runner"),
    ("llm_engine", "model_executor", "driver_worker", "model_runner"),
    ("llm_engine", "engine_core", "engine_core", "model_executor", "driver_worker", "worker", "model_runner"),
)

def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


@torch.no_grad()
def merged_state_dict(model) -> dict[str, Tensor]:
    """The weights to serve, under the base model's own names: the model's state dict, or for a peft
    LoRA model the base weights with each LoRA layer's delta added out of place (the model is left
    as it is; only the adapted weights are copied)."""
    if not _is_peft(model):
        return dict(model.state_dict())
    base = model.get_base_model()
    deltas: dict[str, Tensor] = {}
    for name, module in base.named_modules():
        if not (hasattr(module, "base_layer") and hasattr(module, "get_delta_weight")) or getattr(module, "merged", False):
            continue
        tables = [getattr(module, "lora_A", {}), getattr(module, "lora_embedding_A", {})]
        active = [a for a in getattr(module, "active_adapters", []) if any(a in t for t in tables)]
        if active:
            deltas[f"{name}.base_layer.weight"] = sum(module.get_delta_weight(a) for a in active)
    out: dict[str, Tensor] = {}
    for key, value in base.state_dict().items():
        if ".lora_" in key:
            continue
        if key in deltas:
            value = value + deltas[key].to(value.dtype)
        out[key.replace(".base_layer.", ".")] = value
    return out


def _core(model):
    return model.get_base_model() if _is_peft(model) else model


def export_model(hf: HFPolicy, directory: str | Path) -> Path:
    """Write the HF copy, LoRA merged, as a plain Hugging Face directory that vLLM can load: config,
    generation config, tokenizer and one model.safetensors (an output head tied to the embeddings
    is left out, as `save_pretrained` does)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    core = _core(hf.model)
    core.config.save_pretrained(str(directory))
    gen = getattr(core, "generation_config", None)
    if gen is not None:
        try:
            gen.save_pretrained(str(directory))
        except (ValueError, OSError):  # an invalid generation config is not worth failing over
            pass
    hf.tokenizer.save_pretrained(str(directory))
    tied = bool(getattr(core.config, "tie_word_embeddings", False)
                or getattr(core.config.get_text_config(), "tie_word_embeddings", False))
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in merged_state_dict(hf.model).items()
             if not (tied and k.endswith("lm_head.weight"))}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


def _attr_path(obj, names: Sequence[str]):
    for name in names:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def _runner_model(runner):
    getter = getattr(runner, "get_model", None)  # unwraps CUDA-graph wrappers where there are any
    model = getter() if callable(getter) else getattr(runner, "model", None)
    return model if callable(getattr(model, "load_weights", None)) else None


def engine_model(llm):
    """The engine's model object when this process can reach it (an in-process engine), else None."""
    for names in _RUNNER_PATHS:
        runner = _attr_path(llm, names)
        model = _runner_model(runner) if runner is not None else None
        if model is not None:
            return model
    return None


def push_kinds(llm) -> tuple[str, ...]:
    """The weight-push mechanisms that `llm` offers, best first; "rebuild" always works."""
    kinds = []
    if engine_model(llm) is not None:
        kinds.append("direct")
    if callable(getattr(llm, "collective_rpc", None)):
        kinds.append("rpc")
    return (*kinds, "rebuild")


def _load_on_worker(worker, state: dict[str, Tensor]):
    """Run by `collective_rpc` in each worker: load `state` into its model."""
    runner = getattr(worker, "model_runner", None) or getattr(getattr(worker, "worker", None), "model_runner", None)
    model = _runner_model(runner)
    if model is None:
        raise RuntimeError("no model_runner.model with load_weights in this vLLM worker")
    device = next(iter(model.parameters())).device
    model.load_weights(((k, v.to(device)) for k, v in state.items()))


def push_weights(llm, state: dict[str, Tensor], *, rebuild: Callable[[], object],
                 allowed: Iterable[str] = PUSH_KINDS) -> tuple[object, str]:
    """Load `state` into the engine by the first allowed mechanism that works: (engine, the one used).
    "rebuild" returns a new engine; the in-place ones reset the engine's prefix cache."""
    allowed = set(allowed)
    failures = []
    for kind in push_kinds(llm):
        if kind not in allowed:
            continue
        if kind == "rebuild":
            if failures or allowed != {"rebuild"}:  # the first time it comes to this
                why = "; ".join(failures) or "this engine offers no way"
                warnings.warn(f"vLLM: no in-place weight update ({why}); rebuilding the engine from a saved copy "
                              "of the weights after each update (slow)", stacklevel=3)
            del llm  # this frame's reference: the rebuild shuts the old engine down and frees its memory
            return rebuild(), kind
        try:
            if kind == "direct":
                engine_model(llm).load_weights(iter(state.items()))
            else:
                llm.collective_rpc(_load_on_worker, args=({k: v.detach().cpu() for k, v in state.items()},))
        except Exception as e:  # noqa: BLE001 -- any failure of a version-dependent internal: try the next mechanism
            failures.append(f"{kind}: {type(e).__name__}: {first_line(e)}")
            continue
        reset = getattr(llm, "reset_prefix_cache", None)
        if callable(reset):
            reset()
        return llm, kind
    raise RuntimeError(f"vLLM: no way left to update the engine's weights ({'; '.join(failures) or 'none allowed'})")


def weights_version(model) -> int:
    """Sum of the parameters' in-place version counters: it grows whenever an optimizer step,
    `load_state_dict` or any in-place write touches a parameter."""
    return sum(p._version for p in model.parameters())


def shutdown_engine(llm) -> None:
    """Best-effort shutdown of an engine, so that another can start in this process; its GPU memory is
    released once the caller drops its last reference to it (then `free_cuda`)."""
    core = _attr_path(llm, ("llm_engine", "engine_core"))
    for obj in (core, getattr(llm, "llm_engine", None)):
        stop = getattr(obj, "shutdown", None)
        if callable(stop):
            with contextlib.suppress(Exception):  # already down
                stop()
    with contextlib.suppress(Exception):  # names moved between versions: nothing more to release
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        destroy_model_parallel()  # else a new engine in this process finds the old parallel groups
        destroy_distributed_environment()


def free_cuda() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- the policy ------------------------------------------------------------------------------------


