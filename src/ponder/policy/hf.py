"""A Hugging Face backend behind the `Policy` protocol.

`HFPolicy` runs any local causal LM that `AutoModelForCausalLM` can load (a model directory, or a
.gguf file, dequantized on load) so that search and learning can use a pretrained model instead of
the built-in tiny one. (`ponder.reward.hf_model.HFRewardModel` scores solutions with a local
sequence-classification model through the same loading helpers.)

This module is optional. Nothing else in ponder imports it unless asked (`ponder.policy.hf` must be
imported by name), and transformers / peft are imported inside the functions that need them, so
ponder works without them; when they are missing the error says `pip install -e '.[hf]'`.
Nothing is ever downloaded: every load is `local_files_only=True`.

How sampling works (our own loop, not `model.generate`, so that costs and log-probs are ours):
each distinct prompt of a call is encoded once (prefill, left-padded with an attention mask and
position ids that start at 0 on each prompt's first real token), then its keys and values are
copied along the batch to every sample that continues it, and all samples decode together, one
forward per step, dropping finished rows from the cache as they accumulate. Costs are counted as in
`ponder.policy.tiny`: a sample's `cost.tokens_encoded` is its share of the prefill (all of it on the
first sample of each distinct prompt), `policy_calls` sits on the first sample of each batch, and
FLOPs are 2 x parameters per token processed plus attention, so the samples of a call add up to
what it spent. `Sample.logprobs` are untempered, and equal (up to float rounding) what `logprobs`
returns for the same completion, which is what the importance ratios of the learners need.

Deviations and caveats:
- `logprobs` takes completions as text and re-tokenizes them. With the tiny character tokenizer the
  round trip is exact; with a BPE tokenizer a decoded completion can re-encode to other ids than
  those sampled (rare, and the log-prob is then that of the re-encoded ids). When a sample ends
  with another end token than `tokenizer.eos_token` (models with several), `eos=True` scores the
  tokenizer's one.
- The pad, BOS and unknown tokens (unless one of them ends generation) and ids past the tokenizer's
  vocabulary (padded embedding rows) are never sampled, as tiny never samples PAD and BOS. The draw is tiny's
  `sample_next` with that ban mask instead of tiny's fixed PAD/BOS ids.
- There is no cross-call prefix cache: `weights_changed` is a no-op kept for protocol compatibility.
- With LoRA (`lora_r` > 0) only the adapter is trained and saved; a saved adapter directory records
  where its base model lives (`ponder_hf.json`), so `HFPolicy.load` rebuilds base + adapter.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ponder.policy.base import record_step
from ponder.policy.hf_loading import (
    DTYPES,
    device_of,
    first_line,
    import_peft,
    import_transformers,
    left_padded,
    load_model,
    load_tokenizer,
    locate,
)
from ponder.policy.tiny import PolicyLoadError, sample_next
from ponder.timing import scoring, timed
from ponder.types import Cost, Sample, Sampling

META_FILE = "ponder_hf.json"


@dataclass(frozen=True)
class HFConfig:
    """Which local Hugging Face model to run and how."""

    path: str
    """A local model directory (config.json + weights + tokenizer files), a .gguf file, or a directory
    holding `gguf_file`; also a LoRA adapter directory saved by `HFPolicy.save`."""
    gguf_file: str = ""
    """Name of a .gguf file inside `path` (leave empty when `path` is the .gguf file itself)."""
    chat_template: bool = False
    """Wrap each prompt in the tokenizer's chat template as a user message, generation prompt added."""
    dtype: str = "float32"
    """Weights dtype: float32 or bfloat16."""
    batch_size: int = 64
    """Most sequences (samples) decoded together in one batch."""
    lora_r: int = 0
    """LoRA rank; 0 trains the whole model, > 0 wraps it with a fresh peft LoRA adapter."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input in training mode (0 keeps training forward passes deterministic)."""
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    """Names of the modules LoRA adapts (peft `target_modules`)."""
    max_seq_len: int = 0
    """Context limit in tokens; 0 takes the model's `max_position_embeddings`."""
    trust_remote_code: bool = False
    """Allow model code shipped inside the model directory to run (off: loading never runs code)."""
    device: str = "auto"
    """torch device; auto is cuda when available, else cpu."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if not self.path:
            raise ValueError("HFConfig.path must name a local model directory or .gguf file")
        if self.gguf_file and not self.gguf_file.endswith(".gguf"):
            raise ValueError(f"HFConfig.gguf_file must name a .gguf file, got {self.gguf_file!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"HFConfig.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.batch_size < 1:
            raise ValueError(f"HFConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.lora_r < 0:
            raise ValueError(f"HFConfig.lora_r must be >= 0 (0 is off), got {self.lora_r}")
        if self.lora_alpha <= 0:
            raise ValueError(f"HFConfig.lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"HFConfig.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_r > 0 and (not self.lora_targets or not all(isinstance(t, str) and t for t in self.lora_targets)):
            raise ValueError(f"HFConfig.lora_targets must be non-empty module names, got {self.lora_targets!r}")
        if self.max_seq_len < 0:
            raise ValueError(f"HFConfig.max_seq_len must be >= 0 (0: the model's), got {self.max_seq_len}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ValueError(f"HFConfig.device must be auto or a torch device, got {self.device!r}") from None


def _select_cache(cache, index: Tensor):
    """Keep (and repeat) batch rows `index` of a transformers cache, in place when it is a Cache object."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(index)
        return cache
    return tuple(tuple(t[index] for t in layer) for layer in cache)  # legacy tuple caches (remote code)


class HFPolicy:
    """A local Hugging Face causal LM behind the `Policy` protocol (optionally with a LoRA adapter)."""

    def __init__(self, config: HFConfig, *, seed: int = 0) -> None:
        self.config = config
        self.device = device_of(config.device)
        tf = import_transformers()
        directory, gguf = locate(config.path, config.gguf_file)
        adapter = (directory / "adapter_config.json").is_file() and not gguf
        base_dir, base_gguf = directory, gguf
        if adapter:  # a LoRA checkpoint: the base model lives elsewhere
            base_dir, base_gguf = self._adapter_base(directory)
        tok_dir = directory if adapter and (directory / "tokenizer_config.json").is_file() else base_dir
        self.tokenizer = load_tokenizer(tok_dir, base_gguf if tok_dir == base_dir else "", config.trust_remote_code)
        model = load_model(tf.AutoModelForCausalLM, base_dir, base_gguf, config.dtype, config.trust_remote_code)
        self.base_path, self.base_gguf_file = str(base_dir.resolve()), base_gguf
        self.lora = adapter or config.lora_r > 0
        if adapter:
            try:
                model = import_peft().PeftModel.from_pretrained(model, str(directory), is_trainable=True)
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                raise PolicyLoadError(f"{directory}: cannot load its LoRA adapter ({first_line(e)})") from None
        elif config.lora_r > 0:
            peft = import_peft()
            lora = peft.LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                   target_modules=list(config.lora_targets), task_type="CAUSAL_LM")
            try:
                model = peft.get_peft_model(model, lora)
            except ValueError as e:
                raise ValueError(f"HFConfig.lora_targets {config.lora_targets!r}: {first_line(e)}") from None
        self.model = model.to(self.device)
        self.model.eval()
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

        tok = self.tokenizer
        core = model.get_base_model() if self.lora else model
        text_cfg = core.config.get_text_config()
        self._keep_arg = "logits_to_keep" in inspect.signature(type(core).forward).parameters
        self.max_seq_len = config.max_seq_len or int(getattr(text_cfg, "max_position_embeddings", 0) or 0)
        if self.max_seq_len <= 0:
            raise ValueError(f"{config.path}: the model states no max_position_embeddings; set HFConfig.max_seq_len")
        self._n_layer = int(getattr(text_cfg, "num_hidden_layers", 0) or 0)
        self._d_model = int(getattr(text_cfg, "hidden_size", 0) or 0)
        # every id that ends a sample: the tokenizer's EOS and the generation config's (possibly several)
        stops = {tok.eos_token_id}
        gen_eos = getattr(getattr(core, "generation_config", None), "eos_token_id", None)
        stops.update(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        self.stop_ids = sorted(i for i in stops if i is not None)
        if not self.stop_ids:
            raise PolicyLoadError(f"{config.path}: the tokenizer has no eos_token, so samples could never end")
        self.eos_id = tok.eos_token_id if tok.eos_token_id is not None else self.stop_ids[0]
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_id
        self._banned: Tensor | None = None  # (V,) ids never sampled, built on first use
        self._step_ids: Tensor | None = None  # (V,) ids whose text holds a newline

    @staticmethod
    def _adapter_base(directory: Path) -> tuple[Path, str]:
        meta_file = directory / META_FILE
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text())
                base, gguf = meta["base_path"], meta.get("base_gguf_file", "")
            except (ValueError, KeyError, TypeError) as e:
                raise PolicyLoadError(f"{meta_file}: {first_line(e)}") from None
        else:
            try:
                base = json.loads((directory / "adapter_config.json").read_text())["base_model_name_or_path"]
            except (ValueError, KeyError, TypeError) as e:
                raise PolicyLoadError(f"{directory / 'adapter_config.json'}: no base model ({first_line(e)})") from None
            gguf = ""
        if not base:
            raise PolicyLoadError(f"{directory}: the LoRA adapter does not say where its base model is")
        return locate(base, gguf)

    # -- tokens ------------------------------------------------------------------------------------

    def prompt_ids(self, prompt: str) -> list[int]:
        """The ids the model is conditioned on for `prompt` (chat-templated when configured)."""
        tok = self.tokenizer
        if self.config.chat_template:
            if not getattr(tok, "chat_template", None):
                raise ValueError(f"HFConfig.chat_template is on but {self.config.path} has no chat template")
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        return list(tok(prompt, add_special_tokens=True)["input_ids"])

    def _vocab_masks(self, vocab: int) -> tuple[Tensor, Tensor]:
        if self._banned is None or len(self._banned) != vocab:
            tok = self.tokenizer
            banned = torch.zeros(vocab, dtype=torch.bool)
            banned[min(len(tok), vocab):] = True  # padded embedding rows: no token behind them
            for i in (tok.pad_token_id, tok.bos_token_id, tok.unk_token_id):
                if i is not None and i not in self.stop_ids and i < vocab:
                    banned[i] = True
            n = min(len(tok), vocab)
            texts = tok.batch_decode([[i] for i in range(n)])
            step = torch.zeros(vocab, dtype=torch.bool)
            step[:n] = torch.tensor(["\n" in t for t in texts])
            self._banned, self._step_ids = banned.to(self.device), step.to(self.device)
        return self._banned, self._step_ids

    # -- the Policy protocol -----------------------------------------------------------------------

    def parameters(self):
        """The trained parameters: the LoRA adapter's when there is one, else all of the model's."""
        if self.lora:
            return [p for p in self.model.parameters() if p.requires_grad]
        return self.model.parameters()

    def train(self, mode: bool = True) -> HFPolicy:
        self.model.train(mode)
        return self

    def weights_changed(self) -> None:
        """Nothing to do: this backend keeps no keys/values across calls."""

    def load_weights(self, path: str | Path) -> None:
        """Load, in place, the trained weights that `save` wrote to `path` (the adapter with LoRA, else
        the whole model); used to continue a phase from its last save."""
        from safetensors.torch import load_file

        path = Path(path)
        name = "adapter_model.safetensors" if self.lora else "model.safetensors"
        if not (path / name).is_file():
            raise PolicyLoadError(f"{path}: no {name} to load into this policy")
        state = load_file(str(path / name), device=str(self.device))
        if self.lora:
            import_peft().set_peft_model_state_dict(self.model, state)
            return
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = {k for k in missing if k.endswith("lm_head.weight")}  # tied to the embeddings: not saved
        if set(missing) - tied or unexpected:
            raise PolicyLoadError(f"{path / name}: weights do not fit this model (missing {sorted(set(missing) - tied)[:3]}, "
                                  f"unexpected {sorted(unexpected)[:3]})")

    def num_params(self) -> int:
        """All parameters of the model (base and adapter), as used for FLOP counts."""
        return sum(p.numel() for p in self.model.parameters())

    def room(self, prompt: str) -> int:
        """Tokens that can still be generated after `prompt` before the context is full."""
        return self.max_seq_len - len(self.prompt_ids(prompt))

    @timed("sampling")
    @torch.no_grad()
    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[list[Sample]]:
        gen = self.generator if sampling.seed is None else torch.Generator(device=self.device).manual_seed(sampling.seed)
        n = sampling.n
        distinct: dict[tuple[int, ...], list[int]] = {}  # prompt ids -> where they occur in `prompts`
        for i, p in enumerate(prompts):
            distinct.setdefault(tuple(self.prompt_ids(p)), []).append(i)
        batches: list[list[tuple[list[int], list[int]]]] = []
        rows = 0
        for ids, where in distinct.items():
            if not batches or rows + n * len(where) > self.config.batch_size:
                batches.append([])
                rows = 0
            batches[-1].append((list(ids), where))
            rows += n * len(where)
        out: list[list[Sample]] = [[] for _ in prompts]
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in batches:
                groups = self._generate_batch([(ids, n * len(where)) for ids, where in batch], sampling, gen)
                for (_, where), samples in zip(batch, groups):
                    for k, i in enumerate(where):
                        out[i] = samples[k * n : (k + 1) * n]
        finally:
            self.model.train(was_training)
        return out

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], *, eos: bool = True
                 ) -> tuple[Tensor, Tensor]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        tok = self.tokenizer
        c_ids = [list(tok(c, add_special_tokens=False)["input_ids"]) + ([self.eos_id] if eos else [])
                 for c in completions]
        return self.logprobs_of_ids(prompts, c_ids)

    @scoring
    def logprobs_of_ids(self, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]
                        ) -> tuple[Tensor, Tensor]:
        """`logprobs` of completions given as token ids (an end token included where sampled): what
        learners use to score exactly the tokens that were sampled, since a BPE tokenizer need not
        re-encode a decoded sample to the same ids."""
        if len(prompts) != len(completion_ids):
            raise ValueError(f"{len(prompts)} prompts but {len(completion_ids)} completions")
        p_ids = [self.prompt_ids(p) for p in prompts]
        c_ids = [list(c) for c in completion_ids]
        lens = [len(p) + len(c) for p, c in zip(p_ids, c_ids)]
        if lens and max(lens) > self.max_seq_len:
            raise ValueError(f"a prompt + completion of {max(lens)} tokens exceeds max_seq_len={self.max_seq_len}")
        return self.score_id_pairs(p_ids, c_ids)

    def score_id_pairs(self, p_ids: Sequence[Sequence[int]], c_ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """(logp, mask), both (B, Tc): the log-probs of each completion's token ids after its prompt's ids,
        in one forward pass (prompts left-padded, completions right-padded after them); differentiable."""
        B, Tc = len(p_ids), max((len(c) for c in c_ids), default=0)
        if Tc == 0:
            return torch.zeros(B, 0, device=self.device), torch.zeros(B, 0, device=self.device)
        ids, attn = left_padded(p_ids, self.pad_id, c_ids)  # completions in the last Tc columns
        ids, attn = ids.to(self.device), attn.to(self.device)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        extra = {"logits_to_keep": Tc + 1} if self._keep_arg else {}
        logits = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False, **extra).logits
        logits = logits[:, -(Tc + 1) : -1]  # (B, Tc, V): column -(Tc+1)+j predicts completion token j
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, -Tc:, None]).squeeze(-1)  # (B, Tc)
        mask = torch.arange(Tc, device=self.device)[None, :] < torch.tensor([len(c) for c in c_ids],
                                                                            device=self.device)[:, None]
        return logp * mask, mask.float()

    def save(self, path: str | Path) -> None:
        """Save the adapter (with LoRA) or the whole model, plus the tokenizer and `ponder_hf.json`
        (this policy's settings, and the base model's location for an adapter)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        settings = asdict(replace(self.config, path=str(path.resolve()), gguf_file=""))
        meta = {"format": "ponder-hf/1", "config": settings, "lora": self.lora}
        if self.lora:
            meta |= {"base_path": self.base_path, "base_gguf_file": self.base_gguf_file}
        tmp = path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(path / META_FILE)

    @classmethod
    def load(cls, path: str | Path, *, seed: int = 0, **overrides: Any) -> HFPolicy:
        """A policy from a directory written by `save` (settings restored from `ponder_hf.json`, then
        `overrides`), or from any Hugging Face model directory / .gguf file with default settings."""
        path = Path(path)
        meta_file = path / META_FILE
        settings: dict[str, Any] = {}
        if meta_file.is_file():
            try:
                settings = dict(json.loads(meta_file.read_text())["config"])
            except (ValueError, KeyError, TypeError) as e:
                raise PolicyLoadError(f"{meta_file}: {first_line(e)}") from None
            known = {f.name for f in fields(HFConfig)}
            settings = {k: v for k, v in settings.items() if k in known}
        settings |= overrides
        settings["path"] = str(path)
        return cls(HFConfig(**settings), seed=seed)

    # -- sampling ----------------------------------------------------------------------------------

    def _forward(self, ids: Tensor, attn: Tensor, pos: Tensor, cache=None):
        extra = {"logits_to_keep": 1} if self._keep_arg else {}
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, past_key_values=cache,
                         use_cache=True, **extra)
        return out.logits[:, -1].float(), out.past_key_values  # (B, V)

    def _generate_batch(self, groups: list[tuple[list[int], int]], sampling: Sampling, gen: torch.Generator
                        ) -> list[list[Sample]]:
        """Samples for each (prompt ids, copies) group: the prompt is prefilled once and its cache
        copied to its `copies` rows."""
        dev, tok = self.device, self.tokenizer
        L = max(len(e) for e, _ in groups)
        if L >= self.max_seq_len:
            raise ValueError(f"a prompt of {L} tokens does not fit max_seq_len={self.max_seq_len}")
        ids, attn = left_padded([e for e, _ in groups], self.pad_id)
        ids, attn = ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)  # each prompt's own positions, from 0; 0 on padding
        logits, cache = self._forward(ids, attn, pos)  # prefill: each distinct prompt once
        src = torch.tensor([r for r, (_, k) in enumerate(groups) for _ in range(k)], device=dev)  # row -> prompt
        cache = _select_cache(cache, src)  # a prompt's keys/values copied to each sample continuing it
        logits, attn, next_pos = logits[src], attn[src], pos[src, -1] + 1
        B = len(src)
        lens = torch.tensor([len(e) for e, _ in groups], device=dev)[src]
        limit = (self.max_seq_len - lens).clamp(max=sampling.max_new_tokens)  # (B,) each row's own cap
        max_new = int(limit.max())
        banned, step_ids = self._vocab_masks(logits.shape[-1])
        stop_ids = torch.tensor(self.stop_ids, device=dev)
        rows = torch.arange(B, device=dev)  # batch row -> sample, shrinks as samples finish
        tokens = torch.full((B, max_new), self.pad_id, dtype=torch.long, device=dev)
        lps = torch.zeros(B, max_new, device=dev)
        length = limit.clone()
        finish = ["length"] * B
        calls = 1
        active = torch.ones(B, dtype=torch.bool, device=dev)
        for t in range(max_new):
            nxt = sample_next(logits, sampling.temperature, sampling.top_p, gen, banned)  # (b,)
            lp = torch.log_softmax(logits, dim=-1).gather(-1, nxt[:, None]).squeeze(-1)  # untempered
            active = record_step(t, nxt, lp, torch.isin(nxt, stop_ids), step_ids[nxt] if sampling.stop_at_step
                                 else None, rows=rows, active=active, tokens=tokens, lps=lps, length=length,
                                 limit=limit, finish=finish)
            n_active = int(active.sum())
            if n_active == 0 or t == max_new - 1:
                break
            if n_active <= 0.75 * len(rows):  # compact: copying the cache costs less than dead rows
                keep = active.nonzero().flatten()
                cache = _select_cache(cache, keep)
                rows, nxt, attn, next_pos, active = rows[keep], nxt[keep], attn[keep], next_pos[keep], active[keep]
            attn = torch.cat([attn, attn.new_ones(len(rows), 1)], dim=1)
            logits, cache = self._forward(nxt[:, None], attn, next_pos[:, None], cache)
            next_pos = (next_pos + 1).clamp(max=self.max_seq_len - 1)  # rows past their cap wait for compaction
            calls += 1
        n_params = self.num_params()
        per_layer = 4.0 * self._n_layer * self._d_model
        tokens, lps, length = tokens.tolist(), lps.tolist(), length.tolist()
        stop = set(self.stop_ids)
        out: list[list[Sample]] = []
        r = 0
        for p, (e, copies) in enumerate(groups):
            m = len(e)
            prefill_flops = 2.0 * n_params * m + per_layer * m * (m + 1) / 2
            group = []
            for j in range(copies):
                k = int(length[r])
                ids_r = tokens[r][:k]
                # token t of the completion attends to L + t earlier slots (padding included)
                gen_flops = 2.0 * n_params * k + per_layer * (k * L + k * (k - 1) / 2)
                first = j == 0
                cost = Cost(tokens_generated=k, tokens_encoded=m if first else 0,
                            policy_calls=calls if (first and p == 0) else 0,
                            flops=gen_flops + (prefill_flops if first else 0.0))
                text = tok.decode([x for x in ids_r if x not in stop])
                group.append(Sample(text=text, token_ids=tuple(ids_r), logprobs=tuple(lps[r][:k]), finish=finish[r],
                                    cost=cost))
                r += 1
            out.append(group)
        return out

