"""A vLLM backend behind the `Policy` protocol, for GPU machines (`[policy] backend = "vllm"`).

vLLM samples; a trainable `HFPolicy` copy of the same model, on the same GPU (`device`, `auto` is
cuda), does everything else: `logprobs`, `parameters`, `train`, `save` and `load_weights` are the HF
copy's, so learners train it exactly as they train the "hf" backend, and checkpoints are "hf"
checkpoints (a run saved with one backend loads with the other).

How weights flow. The engine starts from the model directory itself, or, when the HF copy is not a
plain directory (a .gguf file, dequantized by transformers; a saved LoRA adapter), from a merged
copy exported to a temporary directory. Learners call `weights_changed()` after their updates (SFT
and distillation do not, so `generate` also watches the parameters' in-place version counters, which
every optimizer step and `load_state_dict` bump). The next `generate` then pushes the HF copy's
current weights into the engine, by the first mechanism that works:
  1. "direct": the engine's model object, reachable when the engine runs in this process
     (`llm.llm_engine.model_executor.driver_worker[.worker].model_runner`, V0 and in-process V1;
     also via `llm_engine.engine_core.engine_core`), gets `model.load_weights(iter(state.items()))`
     with the GPU tensors as they are. This is why `VLLM_ENABLE_V1_MULTIPROCESSING` defaults to 0
     here (set before vLLM is imported, unless already set): V1 otherwise runs the engine in a
     child process, where this process cannot reach the model.
  2. "rpc": `llm.collective_rpc(fn, args=(state on CPU,))`, which runs `fn(worker, state)` in each
     worker. With a multi-process engine, recent vLLM versions send a function to the workers only
     when `VLLM_ALLOW_INSECURE_SERIALIZATION=1`, and the state dict travels through the engine's
     message queue (slow for big models).
  3. "rebuild": save the merged model to a fresh temporary directory, shut the engine down and
     start a new one on it (tens of seconds to minutes, and vLLM does not always give all its GPU
     memory back); a warning says when it comes to this.
A mechanism that fails is not tried again. After an in-place push the engine's prefix cache, whose
keys and values the old weights computed, is reset.
With LoRA the adapter is merged out of place: for each LoRA layer the pushed weight is
`W + get_delta_weight()`, computed on a copy of the adapted weights only, so the trained adapter and
the frozen base are never modified (no merge / unmerge round trips accumulating bf16 rounding). vLLM's
own LoRA support (`LoRARequest`) is not used: it would need `enable_lora`, a rank cap, and an
adapter written to disk with a new id after every update.

Sampling. Each distinct prompt of a call is one request for all its samples (`n` x its
occurrences), so vLLM encodes it once; prompts are token ids from the HF copy's tokenizer (chat
template applied as in `HFPolicy`). `max_tokens` is `min(max_new_tokens, room)`. With a
`Sampling.seed`, distinct prompt k is seeded `batch_seed(seed, k)` (vLLM V1 seeds sample j of a
request `seed + j`); without one the engine's generator, seeded when the engine starts, is used.
At temperature 0 one greedy sample is drawn per distinct prompt and copied; the copies cost nothing.
Steps: `stop=["\\n"]` with `include_stop_str_in_output=True`; vLLM stops at the token whose text
brings the newline, as `HFPolicy` does. Stop ids are the HF copy's (`stop_token_ids`), so both
backends end samples on the same tokens. Finish: "step" when vLLM stopped on the newline string,
"eos" when it stopped on an end token, "length" otherwise. A sample's text is the HF tokenizer's
decoding of its token ids (end tokens dropped), whole last token included, as in `HFPolicy`.

Log-probs. The protocol wants the sampled tokens' untempered log-probs. vLLM's V1 sampler reports
log-probs of the raw logits (before temperature, penalties and top-p), and vLLM >= 0.10 says so
with `logprobs_mode="raw_logprobs"`, which is requested when the engine accepts it. vLLM's V0
sampler reports them after temperature and top-p, so on V0 they are used only where that changes
nothing (temperature 0 or 1 with top_p 1); elsewhere, and for any sample whose log-probs vLLM did
not return in full, they are recomputed by the HF copy in batched forwards over the exact token
ids. vLLM's kernels (bf16, fused, batch-dependent) differ from the HF copy's, so its log-probs
differ from `logprobs` by more than float rounding; the learners take their ratios' denominators
from `logprobs` anyway, and log the gap (`logp_gap`).

Costs, counted as in `HFPolicy`: tokens_generated per sample; tokens_encoded, the prompt less the
tokens vLLM's prefix cache served (`RequestOutput.num_cached_tokens`, where reported), on the first
sample of each distinct prompt; FLOPs 2 x parameters per token plus attention; policy_calls, on the
first sample of the call, the longest sample's length (one prefill plus one decoding step per
further token; vLLM's scheduler may split the work into more steps).

Deviations and caveats:
- This module was written against the vLLM API (V0 engines of 0.6 - 0.8, V1 up to 0.11) but is
  not run in this repository's CI, which has no GPU; its tests cover the vLLM-free parts with fakes.
- The pad, BOS and unknown tokens are not banned from sampling as in `HFPolicy`.
- The GPU holds two copies of the weights. The engine is started before the HF copy moves to the
  GPU, and takes `gpu_memory_utilization` of it (weights and KV cache); the rest is left to
  training. A rebuild starts an engine next to the HF copy, optimizer and all.
- Seeded calls give the same samples only up to vLLM's batch-dependent float differences.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ponder.policy.base import batch_seed
from ponder.policy.hf import HFConfig, HFPolicy
from ponder.policy.hf_loading import first_line
from ponder.policy.settings import hf_settings
from ponder.policy.tiny import PolicyLoadError
from ponder.policy.vllm_convert import engine_logprobs_untempered, sampling_kwargs, to_samples
from ponder.policy.vllm_weights import (
    PUSH_KINDS,
    _core,
    export_model,
    free_cuda,
    merged_state_dict,
    push_weights,
    shutdown_engine,
    weights_version,
)
from ponder.timing import timed
from ponder.types import Sample, Sampling

INSTALL_HINT = ("backend 'vllm' needs vLLM on a CUDA machine: pip install vllm (not installable on CPU-only "
                "machines); use backend = 'hf' here")


def _import_vllm():
    """The vllm module, or PolicyLoadError saying how to get it."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # keep the engine in this process: see above
    try:
        import vllm
    except (ImportError, OSError, RuntimeError) as e:  # OSError / RuntimeError: a broken CUDA install
        raise PolicyLoadError(f"{INSTALL_HINT} ({first_line(e)})") from None
    return vllm


def _require_cuda() -> None:
    if not torch.cuda.is_available():
        raise PolicyLoadError("backend 'vllm' needs a CUDA GPU, and torch sees none (torch.cuda.is_available() "
                              "is False); use backend = 'hf' here")


# -- pure pieces: sampling settings, output conversion, costs (tested with fakes, no vLLM) ---------


def _engine_accepts(vllm, name: str) -> bool:
    try:
        return name in {f.name for f in dataclasses.fields(vllm.EngineArgs)}
    except TypeError:
        return False


def _start_engine(vllm, source: str, pc, max_len: int, seed: int):
    """A vLLM engine on the model directory `source`, and whether its log-probs are raw."""
    kwargs: dict[str, Any] = {"model": source, "tokenizer": source, "dtype": pc.dtype, "seed": seed,
                              "gpu_memory_utilization": pc.gpu_memory_utilization, "max_model_len": max_len,
                              "max_num_seqs": pc.batch_size, "trust_remote_code": pc.trust_remote_code,
                              "enable_prefix_caching": True}
    mode = _engine_accepts(vllm, "logprobs_mode")
    if mode:
        kwargs["logprobs_mode"] = "raw_logprobs"
    try:
        llm = vllm.LLM(**kwargs)
    except (ValueError, RuntimeError, OSError, TypeError, KeyError, NotImplementedError) as e:
        raise PolicyLoadError(f"{source}: vLLM cannot serve this model ({first_line(e)})") from None
    v1 = hasattr(getattr(llm, "llm_engine", None), "engine_core")  # V1's sampler reports raw log-probs
    return llm, mode or v1


def _needs_export(hf: HFPolicy) -> bool:
    """Whether vLLM cannot start from the model's own directory: a .gguf model (vLLM would keep it
    quantized, and quantized weights take no updates), or a trained LoRA adapter to merge."""
    adapter = hf.lora and (Path(hf.config.path) / "adapter_config.json").is_file()
    return bool(hf.base_gguf_file) or adapter


def _move(hf: HFPolicy, device: str) -> None:
    """Move the HF copy (built on the CPU, so that the engine could claim its share of the GPU first)."""
    dev = torch.device(device)
    hf.model.to(dev)
    hf.device = dev
    hf.config = replace(hf.config, device=device)
    hf.generator = torch.Generator(device=dev).manual_seed(int(hf.generator.initial_seed()))
    hf._banned = hf._step_ids = None


class VLLMPolicy:
    """vLLM sampling with a trainable HF copy behind the `Policy` protocol; build it with
    `from_config` or `load`."""

    def __init__(self, hf: HFPolicy, llm, *, vllm, config, seed: int = 0, raw_logprobs: bool = True,
                 export_dir: tempfile.TemporaryDirectory | None = None) -> None:
        self.hf, self.llm, self.config, self.seed = hf, llm, config, seed
        self._vllm = vllm
        self._raw = raw_logprobs
        self._export_dir = export_dir
        self._allowed: tuple[str, ...] = PUSH_KINDS
        self._stale = False
        self._version = weights_version(hf.model)
        self.last_push: str | None = None
        core = _core(hf.model)
        text_cfg = core.config.get_text_config()
        self._per_layer = 4.0 * int(getattr(text_cfg, "num_hidden_layers", 0) or 0) * int(
            getattr(text_cfg, "hidden_size", 0) or 0)

    @classmethod
    def from_config(cls, pc, *, path: str, seed: int = 0) -> VLLMPolicy:
        """A policy on the pretrained model at `path` (resolved), with the `[policy]` settings `pc`."""
        vllm = _import_vllm()
        _require_cuda()
        hf = HFPolicy(HFConfig(**(hf_settings(pc) | {"path": str(path), "device": "cpu"})), seed=seed)
        return cls._start(vllm, hf, pc, seed)

    @classmethod
    def load(cls, path: str | Path, pc, *, seed: int = 0) -> VLLMPolicy:
        """A policy from a checkpoint written by `save` (an `HFPolicy` checkpoint)."""
        vllm = _import_vllm()
        _require_cuda()
        hf = HFPolicy.load(path, seed=seed, batch_size=pc.batch_size, device="cpu")
        return cls._start(vllm, hf, pc, seed)

    @classmethod
    def _start(cls, vllm, hf: HFPolicy, pc, seed: int) -> VLLMPolicy:
        export_dir = None
        source = hf.base_path
        if _needs_export(hf):
            export_dir = tempfile.TemporaryDirectory(prefix="ponder-vllm-")
            source = str(export_model(hf, export_dir.name))
        llm, raw = _start_engine(vllm, source, pc, hf.max_seq_len, seed)
        _move(hf, pc.device if pc.device != "auto" else "cuda")
        return cls(hf, llm, vllm=vllm, config=pc, seed=seed, raw_logprobs=raw, export_dir=export_dir)

    # -- delegated to the HF copy ---------------------------------------------------------------------

    @property
    def tokenizer(self):
        return self.hf.tokenizer

    @property
    def model(self):
        return self.hf.model

    def parameters(self):
        return self.hf.parameters()

    def train(self, mode: bool = True) -> VLLMPolicy:
        self.hf.train(mode)
        return self

    def save(self, path: str | Path) -> None:
        self.hf.save(path)

    def load_weights(self, path: str | Path) -> None:
        self.hf.load_weights(path)
        self._stale = True

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], *, eos: bool = True
                 ) -> tuple[Tensor, Tensor]:
        return self.hf.logprobs(prompts, completions, eos=eos)

    def room(self, prompt: str) -> int:
        return self.hf.room(prompt)

    def num_params(self) -> int:
        return self.hf.num_params()

    def weights_changed(self) -> None:
        """The HF copy's weights changed: the next `generate` pushes them into the engine first."""
        self._stale = True

    def close(self) -> None:
        """Shut the engine down and remove the exported weights (the policy cannot sample afterwards)."""
        if self.llm is not None:
            llm, self.llm = self.llm, None
            shutdown_engine(llm)
            del llm
            free_cuda()
        if self._export_dir is not None:
            self._export_dir.cleanup()
            self._export_dir = None

    # -- sampling -------------------------------------------------------------------------------------

    def _sync(self) -> None:
        """Push the HF copy's weights into the engine if they changed since the last push."""
        if not self._stale and weights_version(self.hf.model) == self._version:
            return
        state = merged_state_dict(self.hf.model)
        self.llm, self.last_push = push_weights(self.llm, state, rebuild=self._rebuild, allowed=self._allowed)
        del state
        self._allowed = PUSH_KINDS[PUSH_KINDS.index(self.last_push):]
        self._stale = False
        self._version = weights_version(self.hf.model)

    def _rebuild(self):
        export_dir = tempfile.TemporaryDirectory(prefix="ponder-vllm-")
        source = str(export_model(self.hf, export_dir.name))
        old_llm, self.llm = self.llm, None
        shutdown_engine(old_llm)
        del old_llm
        free_cuda()
        llm, self._raw = _start_engine(self._vllm, source, self.config, self.hf.max_seq_len, self.seed)
        old, self._export_dir = self._export_dir, export_dir
        if old is not None:
            old.cleanup()
        return llm

    @timed("sampling")
    @torch.no_grad()
    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[list[Sample]]:
        self._sync()
        hf, n = self.hf, sampling.n
        distinct: dict[tuple[int, ...], list[int]] = {}  # prompt ids -> where they occur in `prompts`
        for i, p in enumerate(prompts):
            distinct.setdefault(tuple(hf.prompt_ids(p)), []).append(i)
        groups = list(distinct.items())
        if not groups:
            return []
        longest = max(len(ids) for ids, _ in groups)
        if longest >= hf.max_seq_len:
            raise ValueError(f"a prompt of {longest} tokens does not fit max_seq_len={hf.max_seq_len}")
        greedy = sampling.temperature == 0
        requests, params = [], []
        for k, (ids, where) in enumerate(groups):
            seed = None if greedy or sampling.seed is None else batch_seed(sampling.seed, k)
            kw = sampling_kwargs(sampling, n=1 if greedy else n * len(where), seed=seed, stop_ids=hf.stop_ids,
                                 max_tokens=min(sampling.max_new_tokens, hf.max_seq_len - len(ids)))
            params.append(self._vllm.SamplingParams(**kw))
            requests.append({"prompt_token_ids": list(ids)})
        results = self.llm.generate(requests, params, use_tqdm=False)
        calls = max(1, max(len(c.token_ids) for r in results for c in r.outputs))
        ok = engine_logprobs_untempered(raw=self._raw, temperature=sampling.temperature, top_p=sampling.top_p)
        n_params = self.num_params()
        per_group = []
        for k, ((ids, where), result) in enumerate(zip(groups, results, strict=True)):
            completions = sorted(result.outputs, key=lambda c: getattr(c, "index", 0))
            per_group.append(to_samples(
                completions, copies=n * len(where), prompt_len=len(ids),
                cached=int(getattr(result, "num_cached_tokens", 0) or 0), stop_ids=hf.stop_ids, eos_id=hf.eos_id,
                decode=hf.tokenizer.decode, n_params=n_params, per_layer=self._per_layer,
                policy_calls=calls if k == 0 else 0, logprobs_ok=ok))
        self._fill_logprobs(groups, per_group)
        out: list[list[Sample]] = [[] for _ in prompts]
        for (_, where), samples in zip(groups, per_group):
            for j, i in enumerate(where):
                out[i] = samples[j * n : (j + 1) * n]
        return out

    def _fill_logprobs(self, groups, per_group: list[list[Sample]]) -> None:
        """Recompute, with the HF copy, the log-probs of every sample that has none (in place)."""
        todo = [(g, j) for g, samples in enumerate(per_group) for j, s in enumerate(samples)
                if len(s.logprobs) != len(s.token_ids)]
        if not todo:
            return
        scores = self.score_ids([(list(groups[g][0]), list(per_group[g][j].token_ids)) for g, j in todo])
        for (g, j), lps in zip(todo, scores):
            per_group[g][j] = replace(per_group[g][j], logprobs=lps)

    @torch.no_grad()
    def score_ids(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, ...]]:
        """Untempered log-probs of each completion's token ids given its prompt's, by the HF copy:
        `HFPolicy.logprobs` on exact ids (no re-tokenization), in batches of `batch_size`."""
        hf = self.hf
        was_training = hf.model.training
        hf.model.eval()
        out: list[tuple[float, ...]] = []
        try:
            for start in range(0, len(pairs), hf.config.batch_size):
                chunk = pairs[start : start + hf.config.batch_size]
                logp, _ = hf.score_id_pairs([p for p, _ in chunk], [c for _, c in chunk])
                out += [tuple(logp[b, : len(c)].tolist()) for b, (_, c) in enumerate(chunk)]
        finally:
            hf.model.train(was_training)
        return out
