"""The built-in policy: a small transformer with a character tokenizer and a batched KV-cache sampler.

`TinyPolicy.generate` prefills each distinct prompt once, copies its cache to the n samples that
share it (so a prompt's tokens are encoded once however many samples are drawn), then decodes all
rows together, dropping rows from the batch as they finish. Costs are counted per sample: a
sample's `cost.tokens_encoded` is its share of the prefill (all of it on sample 0 of each prompt),
so the costs of a call's samples add up to what the call really spent.

With a prefix cache (`prefix_cache_mb` > 0, see `ponder.policy.prefix_cache`), each prompt starts
from the keys and values of its longest cached prefix and only the rest of it is encoded (always at
least its last token, whose logits give the first sampled token); after sampling, each sample's
prompt + completion is cached, so step-level search that continues earlier completions re-encodes
almost nothing. The cache is cleared whenever the weights may have changed.

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

from ponder.policy.base import batch_seed, record_step
from ponder.policy.prefix_cache import PrefixCache
from ponder.policy.tokenizer import BOS, PAD, CharTokenizer
from ponder.policy.transformer import KVCache, ModelConfig, Transformer
from ponder.timing import scoring, timed
from ponder.types import Cost, Sample, Sampling

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class PolicyLoadError(ValueError):
    """A model directory that cannot be loaded, with the path and the reason."""


_NEVER = torch.tensor([PAD, BOS])


def sample_next(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None,
                banned: Tensor | None = None) -> Tensor:
    """Draw one token per row from (B, V) logits. temperature 0 is argmax. Never draws the ids of the
    (V,) bool mask `banned`, or by default the built-in tokenizer's PAD and BOS."""
    # a new tensor either way: the caller's logits stay as they are
    if banned is None:
        logits = logits.index_fill(-1, _NEVER, float("-inf"))
    else:
        logits = logits.masked_fill(banned, float("-inf"))
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
                 seed: int = 0, dtype: str = "float32", batch_size: int = 512, prefix_cache_mb: float = 0) -> None:
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
        self.prefix_cache: PrefixCache | None = None
        self._cache_key: tuple | None = None  # what the cached keys/values were computed with
        self.set_prefix_cache(prefix_cache_mb)

    # -- prefix cache ------------------------------------------------------------------------------

    def set_prefix_cache(self, mb: float) -> PrefixCache | None:
        """Turn the prefix cache on with a cap of `mb` MiB (a fresh, empty one), or off with 0."""
        if mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0, got {mb}")
        self.prefix_cache = PrefixCache(int(mb * 2**20)) if mb > 0 else None
        self._cache_key = None
        return self.prefix_cache

    def weights_changed(self) -> None:
        """Tell the policy its weights were modified (call after an optimizer step or any in-place
        edit): cached keys and values are stale, so the prefix cache is emptied. `load_weights` and
        `train(True)` do this themselves; in-place updates are also noticed by parameter version
        counters, but learners should not rely on that."""
        if self.prefix_cache is not None:
            self.prefix_cache.clear()
        self._cache_key = None

    def _weights_key(self) -> tuple:
        # parameter identities and in-place version counters (bumped by optimizer steps and copy_),
        # plus the cache dtype: if any differ, cached keys/values were made by other weights
        return (self.dtype, *((id(p), p._version) for p in self.model.parameters()))

    def _check_prefix_cache(self) -> None:
        key = self._weights_key()
        if key != self._cache_key:
            self.weights_changed()
            self._cache_key = key

    # -- the Policy protocol ---------------------------------------------------------------------

    def parameters(self):
        return self.model.parameters()

    def train(self, mode: bool = True) -> TinyPolicy:
        """Set training mode; `train(True)` also empties the prefix cache, as weights will change."""
        if mode:
            self.weights_changed()
        self.model.train(mode)
        return self

    def autocast(self):
        """bf16 autocast when the policy's dtype asks for it: faster only on CPUs with native bf16 (AVX512-BF16, AMX)."""
        if self.dtype == "bfloat16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    @timed("sampling")
    @torch.no_grad()
    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[list[Sample]]:
        encoded = [[self.tokenizer.bos_id] + self.tokenizer.encode(p) for p in prompts]
        per_batch = self.prompts_per_batch(sampling)
        out: list[list[Sample]] = []
        was_training = self.model.training
        self.model.eval()
        if self.prefix_cache is not None:
            self._check_prefix_cache()
        try:
            for c, i in enumerate(range(0, len(encoded), per_batch)):
                # a seeded call draws each batch from its own seed, so the samples of a batch do not depend
                # on the batches before it: workers that each take some batches sample the same tokens
                gen = self.generator if sampling.seed is None else \
                    torch.Generator().manual_seed(batch_seed(sampling.seed, c))
                out.extend(self._generate_batch(encoded[i : i + per_batch], sampling, gen))
        finally:
            self.model.train(was_training)
        return out

    def prompts_per_batch(self, sampling: Sampling) -> int:
        """Prompts whose `sampling.n` samples decode together in one batch."""
        return max(1, self.batch_size // sampling.n)

    def room(self, prompt: str) -> int:
        """Tokens that can still be generated after `prompt` before the model's context is full."""
        return self.config.max_seq_len - 1 - len(self.tokenizer.encode(prompt))

    @scoring
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
    def load(cls, path: str | Path, *, seed: int = 0, dtype: str | None = None, batch_size: int = 512,
             prefix_cache_mb: float = 0) -> TinyPolicy:
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
                     batch_size=batch_size, prefix_cache_mb=prefix_cache_mb)
        try:
            policy.model.load_state_dict(load_file(str(weights)))
        except RuntimeError as e:
            raise PolicyLoadError(f"{weights}: weights do not fit config.json ({str(e).splitlines()[0]})") from None
        return policy

    def load_weights(self, path: str | Path) -> None:
        """Load weights saved by `save` into this policy in place (same shape required); empties the
        prefix cache."""
        weights = Path(path) / "model.safetensors"
        if not weights.is_file():
            raise PolicyLoadError(f"{path}: no model.safetensors")
        self.weights_changed()
        try:
            self.model.load_state_dict(load_file(str(weights)))
        except RuntimeError as e:
            raise PolicyLoadError(f"{weights}: weights do not fit this model ({str(e).splitlines()[0]})") from None

    def num_params(self) -> int:
        return self.model.num_params()

    # -- sampling ----------------------------------------------------------------------------------

    def _generate_batch(self, encoded: list[list[int]], sampling: Sampling, gen: torch.Generator
                        ) -> list[list[Sample]]:
        cfg, tok, n, pc = self.config, self.tokenizer, sampling.n, self.prefix_cache
        P, L = len(encoded), max(len(e) for e in encoded)
        if L >= cfg.max_seq_len:
            raise ValueError(f"a prompt of {L} tokens does not fit model.max_seq_len={cfg.max_seq_len}")
        # each sample's own limit: its positions start at 0, so only its own prompt length counts
        limit = (cfg.max_seq_len - torch.tensor([len(e) for e in encoded])).repeat_interleave(n)
        limit = limit.clamp(max=sampling.max_new_tokens)  # (B,)
        max_new = int(limit.max())
        cache_dtype = DTYPES[self.dtype]
        # each prompt's longest cached prefix, never all of it: the last token must run to give logits
        hits = [pc.lookup(e[:-1]) for e in encoded] if pc is not None else [(0, None, None)] * P
        c_len = [h[0] for h in hits]
        r_len = [len(e) - c for e, c in zip(encoded, c_len)]  # tokens to encode
        # slots [0, C) hold each row's cached prefix right-aligned, [C, C+R) the rest of its prompt
        # right-aligned, then one slot per decoding step; without a prefix cache C = 0 and R = L
        C, R = max(c_len), max(r_len)
        ctx = C + R
        cache = KVCache(cfg, P, ctx + max_new, cache_dtype)
        ids = torch.full((P, R), tok.pad_id, dtype=torch.long)
        pos = torch.zeros((P, R), dtype=torch.long)  # each token's true position; 0 on padding
        for r, (e, (c, k, v)) in enumerate(zip(encoded, hits)):
            if c:
                cache.k[:, r, :, C - c : C] = k
                cache.v[:, r, :, C - c : C] = v
                cache.valid[r, C - c : C] = True
            m = r_len[r]
            ids[r, R - m :] = torch.tensor(e[c:])
            pos[r, R - m :] = torch.arange(c, len(e))
            cache.valid[r, ctx - m : ctx] = True
        cache.length = C
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
        bytes_per_token = 2 * cfg.n_layer * cfg.d_model * cache.k.element_size()

        def to_prefix_cache(cache: KVCache, rows: Tensor, which: Tensor) -> None:
            """Store prompt + completion (but its last token, never run) of the finished batch rows `which`."""
            for br in which.nonzero().flatten().tolist():
                r = int(rows[br])
                p, g = r // n, int(length[r]) - 1
                seq = encoded[p] + tokens[r, :g].tolist()
                if len(seq) * bytes_per_token > pc.max_bytes or pc.covers(seq):
                    continue
                spans = ((C - c_len[p], C), (ctx - r_len[p], ctx + g))  # cached prefix; encoded + generated
                k = torch.cat([cache.k[:, br, :, a:b] for a, b in spans], dim=2)
                v = torch.cat([cache.v[:, br, :, a:b] for a, b in spans], dim=2)
                pc.insert(seq, k, v)

        active = torch.ones(B, dtype=torch.bool)  # per batch row: still generating
        for t in range(max_new):
            nxt = sample_next(logits, sampling.temperature, sampling.top_p, gen)  # (b,)
            lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, nxt[:, None]).squeeze(-1)
            active = record_step(t, nxt, lp, nxt == tok.eos_id, (nxt == tok.step_token) if sampling.stop_at_step
                                 else None, rows=rows, active=active, tokens=tokens, lps=lps, length=length,
                                 limit=limit, finish=finish)
            n_active = int(active.sum())
            if n_active == 0 or t == max_new - 1:
                break
            if n_active <= 0.75 * len(rows):  # compact: copying the cache costs less than dead rows
                if pc is not None:
                    to_prefix_cache(cache, rows, ~active)  # the rows about to be dropped
                rows, nxt, cache, next_pos, active = (rows[active], nxt[active], cache.select(active),
                                                      next_pos[active], active[active])
            cache.valid[:, cache.length] = True
            with self.autocast():
                logits = self.model(nxt[:, None], next_pos[:, None], cache)[:, -1]
            next_pos = (next_pos + 1).clamp(max=cfg.max_seq_len - 1)  # rows past their cap wait for compaction
            calls += 1
        if pc is not None:
            to_prefix_cache(cache, rows, torch.ones(len(rows), dtype=torch.bool))
        n_params = self.model.num_params()
        per_layer = 4.0 * cfg.n_layer * cfg.d_model
        out: list[list[Sample]] = []
        for p in range(P):
            group = []
            c, m = c_len[p], r_len[p]
            # the m encoded tokens are at positions c .. c+m-1: token j attends to c + j + 1 tokens
            prefill_flops = 2.0 * n_params * m + per_layer * (m * c + m * (m + 1) / 2)
            for j in range(n):
                r = p * n + j
                k = int(length[r])
                ids = tokens[r, :k].tolist()
                # token t of the completion attends to ctx + t earlier slots (padding included)
                gen_flops = 2.0 * n_params * k + per_layer * (k * ctx + k * (k - 1) / 2)
                first = j == 0
                cost = Cost(tokens_generated=k, tokens_encoded=m if first else 0,
                            policy_calls=calls if (first and p == 0) else 0,
                            flops=gen_flops + (prefill_flops if first else 0.0))
                group.append(Sample(text=tok.decode([x for x in ids if x != tok.eos_id]), token_ids=tuple(ids),
                                    logprobs=tuple(lps[r, :k].tolist()), finish=finish[r], cost=cost))
            out.append(group)
        return out
