"""The built-in policy: a small transformer with a character tokenizer and a batched KV-cache sampler.

`TinyPolicy.generate` prefills each distinct prompt once, copies its cache to the n samples that
share it (so a prompt's tokens are encoded once however many samples are drawn), then decodes all
rows together, dropping rows from the batch as they finish. Costs are counted per sample: a
sample's `cost.tokens_encoded` is its share of the prefill (all of it on sample 0 of each prompt),
so the costs of a call's samples add up to what the call really spent.

Weights are stored as safetensors and the rest as JSON, so loading a checkpoint never runs code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ponder.policy.tokenizer import BOS, PAD, CharTokenizer
from ponder.policy.transformer import KVCache, ModelConfig, Transformer
from ponder.types import Cost, Sample, Sampling

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class PolicyLoadError(ValueError):
    """A model directory that cannot be loaded, with the path and the reason."""


def sample_next(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> Tensor:
    """Draw one token per row from (B, V) logits. temperature 0 is argmax. PAD and BOS are never drawn."""
    logits = logits.clone()
    logits[:, [PAD, BOS]] = float("-inf")
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest prefix reaching top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class TinyPolicy:
    """The built-in engine behind the `Policy` protocol."""

    def __init__(self, model_config: ModelConfig | None = None, *, tokenizer: CharTokenizer | None = None,
                 seed: int = 0, dtype: str = "float32", batch_size: int = 512) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.tokenizer = tokenizer or CharTokenizer()
        self.config = model_config or ModelConfig()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = Transformer(self.config, self.tokenizer.vocab_size)
        self.dtype = dtype
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    # -- the Policy protocol ---------------------------------------------------------------------

    def parameters(self):
        return self.model.parameters()

    def train(self, mode: bool = True) -> TinyPolicy:
        self.model.train(mode)
        return self

    def autocast(self):
        """bf16 autocast when the policy's dtype asks for it: faster only on CPUs with native bf16 (AVX512-BF16, AMX)."""
        if self.dtype == "bfloat16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[list[Sample]]:
        gen = self.generator if sampling.seed is None else torch.Generator().manual_seed(sampling.seed)
        encoded = [[self.tokenizer.bos_id] + self.tokenizer.encode(p) for p in prompts]
        per_batch = max(1, self.batch_size // sampling.n)
        out: list[list[Sample]] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for i in range(0, len(encoded), per_batch):
                out.extend(self._generate_batch(encoded[i : i + per_batch], sampling, gen))
        finally:
            self.model.train(was_training)
        return out

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], *, eos: bool = True
                 ) -> tuple[Tensor, Tensor]:
        tok = self.tokenizer
        p_ids = [[tok.bos_id] + tok.encode(p) for p in prompts]
        c_ids = [tok.encode(c) + ([tok.eos_id] if eos else []) for c in completions]
        lens = [len(p) + len(c) for p, c in zip(p_ids, c_ids)]
        if max(lens) > self.config.max_seq_len:
            raise ValueError(f"a prompt + completion of {max(lens)} tokens exceeds model.max_seq_len="
                             f"{self.config.max_seq_len}")
        T = max(lens)
        ids = torch.full((len(p_ids), T), tok.pad_id, dtype=torch.long)
        for b, (p, c) in enumerate(zip(p_ids, c_ids)):
            ids[b, : len(p) + len(c)] = torch.tensor(p + c)
        with self.autocast():
            logits = self.model(ids[:, :-1])  # (B, T-1, V)
        logp_all = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        Tc = max(len(c) for c in c_ids)
        start = torch.tensor([len(p) - 1 for p in p_ids])[:, None]  # logit index predicting token 0
        col = torch.arange(Tc)[None, :]
        clen = torch.tensor([len(c) for c in c_ids])[:, None]
        mask = col < clen  # (B, Tc)
        index = (start + col).clamp(max=T - 2)
        logp = logp_all.gather(1, index) * mask
        return logp, mask.float()

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        tmp = path / "model.safetensors.tmp"
        save_file(state, str(tmp))
        tmp.replace(path / "model.safetensors")
        meta = {"format": "ponder-tiny/1", "model": self.config.to_dict(), "tokenizer": self.tokenizer.to_dict(),
                "dtype": self.dtype}
        tmp = path / "config.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(path / "config.json")

    @classmethod
    def load(cls, path: str | Path, *, seed: int = 0, dtype: str | None = None, batch_size: int = 512) -> TinyPolicy:
        path = Path(path)
        cfg_file, weights = path / "config.json", path / "model.safetensors"
        if not cfg_file.is_file() or not weights.is_file():
            raise PolicyLoadError(f"{path}: not a ponder model directory (needs config.json and model.safetensors)")
        try:
            meta = json.loads(cfg_file.read_text())
            config = ModelConfig(**meta["model"])
            tokenizer = CharTokenizer.from_dict(meta["tokenizer"])
        except (ValueError, KeyError, TypeError) as e:
            raise PolicyLoadError(f"{cfg_file}: {e}") from None
        policy = cls(config, tokenizer=tokenizer, seed=seed, dtype=dtype or meta.get("dtype", "bfloat16"),
                     batch_size=batch_size)
        try:
            policy.model.load_state_dict(load_file(str(weights)))
        except RuntimeError as e:
            raise PolicyLoadError(f"{weights}: weights do not fit config.json ({str(e).splitlines()[0]})") from None
        return policy

    def load_weights(self, path: str | Path) -> None:
        """Load weights saved by `save` into this policy in place (same shape required)."""
        weights = Path(path) / "model.safetensors"
        if not weights.is_file():
            raise PolicyLoadError(f"{path}: no model.safetensors")
        try:
            self.model.load_state_dict(load_file(str(weights)))
        except RuntimeError as e:
            raise PolicyLoadError(f"{weights}: weights do not fit this model ({str(e).splitlines()[0]})") from None

    def num_params(self) -> int:
        return self.model.num_params()

    # -- sampling ----------------------------------------------------------------------------------

    def _generate_batch(self, encoded: list[list[int]], sampling: Sampling, gen: torch.Generator
                        ) -> list[list[Sample]]:
        cfg, tok, n = self.config, self.tokenizer, sampling.n
        P, L = len(encoded), max(len(e) for e in encoded)
        if L >= cfg.max_seq_len:
            raise ValueError(f"a prompt of {L} tokens does not fit model.max_seq_len={cfg.max_seq_len}")
        # each sample's own limit: its positions start at 0, so only its own prompt length counts
        limit = (cfg.max_seq_len - torch.tensor([len(e) for e in encoded])).repeat_interleave(n)
        limit = limit.clamp(max=sampling.max_new_tokens)  # (B,)
        max_new = int(limit.max())
        cache_dtype = DTYPES[self.dtype]
        cache = KVCache(cfg, P, L + max_new, cache_dtype)
        ids = torch.full((P, L), tok.pad_id, dtype=torch.long)
        for r, e in enumerate(encoded):
            ids[r, L - len(e) :] = torch.tensor(e)
            cache.valid[r, L - len(e) : L] = True
        pos = (cache.valid[:, :L].long().cumsum(-1) - 1).clamp(min=0)  # (P, L): 0 at the first real token
        with self.autocast():
            logits = self.model(ids, pos, cache)[:, -1]  # (P, V)
        cache = cache.repeat_interleave(n)
        logits = logits.repeat_interleave(n, dim=0)  # (B, V)
        next_pos = pos[:, -1].repeat_interleave(n) + 1  # (B,)
        B = P * n
        rows = torch.arange(B)  # batch row -> sample index, shrinks as samples finish
        tokens = torch.full((B, max_new), tok.pad_id, dtype=torch.long)
        lps = torch.zeros(B, max_new)
        length = limit.clone()
        finish = ["length"] * B
        calls = 1
        active = torch.ones(B, dtype=torch.bool)  # per batch row: still generating
        for t in range(max_new):
            nxt = sample_next(logits, sampling.temperature, sampling.top_p, gen)  # (b,)
            r_act = rows[active]
            tokens[r_act, t] = nxt[active]
            lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, nxt[:, None]).squeeze(-1)
            lps[r_act, t] = lp[active]
            is_eos = nxt == tok.eos_id
            done = (is_eos | (nxt == tok.step_token) if sampling.stop_at_step else is_eos) & active
            if bool(done.any()):
                for r, e in zip(rows[done].tolist(), is_eos[done].tolist()):
                    finish[r] = "eos" if e else "step"
                length[rows[done]] = t + 1
                active = active & ~done
            active = active & (limit[rows] > t + 1)  # rows at their own length cap stop here
            n_active = int(active.sum())
            if n_active == 0 or t == max_new - 1:
                break
            if n_active <= 0.75 * len(rows):  # compact: copying the cache costs less than dead rows
                rows, nxt, cache, next_pos, active = (rows[active], nxt[active], cache.select(active),
                                                      next_pos[active], active[active])
            cache.valid[:, cache.length] = True
            with self.autocast():
                logits = self.model(nxt[:, None], next_pos[:, None], cache)[:, -1]
            next_pos = next_pos + 1
            calls += 1
        n_params = self.model.num_params()
        per_layer = 4.0 * cfg.n_layer * cfg.d_model
        out: list[list[Sample]] = []
        for p in range(P):
            group = []
            prompt_len = len(encoded[p])
            prefill_flops = 2.0 * n_params * prompt_len + per_layer * prompt_len * (prompt_len + 1) / 2
            for j in range(n):
                r = p * n + j
                k = int(length[r])
                ids = tokens[r, :k].tolist()
                # token t of the completion attends to L + t earlier slots (padding included)
                gen_flops = 2.0 * n_params * k + per_layer * (k * L + k * (k - 1) / 2)
                first = j == 0
                cost = Cost(tokens_generated=k, tokens_encoded=prompt_len if first else 0,
                            policy_calls=calls if (first and p == 0) else 0,
                            flops=gen_flops + (prefill_flops if first else 0.0))
                group.append(Sample(text=tok.decode([x for x in ids if x != tok.eos_id]), token_ids=tuple(ids),
                                    logprobs=tuple(lps[r, :k].tolist()), finish=finish[r], cost=cost))
            out.append(group)
        return out
