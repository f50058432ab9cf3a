"""Tests of the prefix KV cache: the `PrefixCache` index on its own (longest prefix, entries serving
their prefixes, LRU eviction, byte accounting), and `TinyPolicy` with it on against it off on a
step-level tree workload (same tokens, fewer tokens encoded), plus invalidation when weights change."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_policy

from ponder.policy import TinyPolicy
from ponder.policy.prefix_cache import PrefixCache
from ponder.policy.transformer import KVCache
from ponder.types import Sampling

# -- PrefixCache on its own --------------------------------------------------------------------------


def kv(ids, layers=2, heads=1, dh=2):
    """Keys/values whose slot i holds float(ids[i]) (and its negative for values): slices are checkable."""
    k = torch.tensor(ids, dtype=torch.float32)[None, None, :, None].expand(layers, heads, len(ids), dh).clone()
    return k, -k


ENTRY_BYTES = 2 * 2 * 1 * 4 * 2 * 4  # k and v, 2 layers, 1 head, 4 tokens, dh 2, float32


def test_longest_prefix_and_entry_serves_its_prefixes():
    pc = PrefixCache(10_000)
    assert pc.insert((1, 2, 3, 4), *kv([1, 2, 3, 4]))
    assert pc.insert((1, 5, 6), *kv([1, 5, 6]))
    n, k, v = pc.lookup([1, 2, 3, 9, 9])
    assert n == 3 and k.shape == (2, 1, 3, 2)
    assert k[0, 0, :, 0].tolist() == [1, 2, 3] and v[1, 0, :, 1].tolist() == [-1, -2, -3]
    assert pc.lookup((1, 5, 6, 7))[0] == 3
    assert pc.lookup((1, 2))[0] == 2  # a prefix of an entry
    assert pc.lookup((1, 2, 3, 4))[0] == 4  # the whole entry
    n, k, v = pc.lookup((1,))
    assert n == 1 and k[0, 0, :, 0].tolist() == [1]
    assert pc.lookup((7, 1)) == (0, None, None)
    assert pc.lookup(()) == (0, None, None)
    assert (pc.hits, pc.misses, pc.tokens_reused) == (5, 2, 3 + 3 + 2 + 4 + 1)


def test_insert_covered_or_extending_does_not_duplicate():
    pc = PrefixCache(10_000)
    pc.insert((1, 2, 3, 4), *kv([1, 2, 3, 4]))
    assert pc.bytes == ENTRY_BYTES and len(pc) == 1
    assert not pc.insert((1, 2, 3), *kv([1, 2, 3]))  # covered by the longer entry
    assert not pc.insert((1, 2, 3, 4), *kv([1, 2, 3, 4]))  # already there
    assert pc.bytes == ENTRY_BYTES and len(pc) == 1
    assert pc.insert((1, 2, 3, 4, 5, 6), *kv([1, 2, 3, 4, 5, 6]))  # replaces the entry it extends
    assert len(pc) == 1 and pc.bytes == ENTRY_BYTES // 4 * 6
    assert pc.insert((1, 2, 7), *kv([1, 2, 7]))  # a branch: both kept
    assert len(pc) == 2 and pc.bytes == ENTRY_BYTES // 4 * 9
    n, k, _ = pc.lookup((1, 2, 3, 4, 5))
    assert n == 5 and k[0, 0, :, 0].tolist() == [1, 2, 3, 4, 5]
    n, k, _ = pc.lookup((1, 2, 7, 8))
    assert n == 3 and k[0, 0, :, 0].tolist() == [1, 2, 7]
    assert pc.covers((1, 2, 3)) and not pc.covers((1, 2, 8)) and not pc.covers(())


def test_lru_eviction_keeps_bytes_under_cap():
    pc = PrefixCache(3 * ENTRY_BYTES)
    a, b, c, d = (1, 2, 3, 4), (1, 2, 5, 6), (7, 8, 9, 10), (1, 11, 12, 13)
    for ids in (a, b, c):
        assert pc.insert(ids, *kv(list(ids)))
    assert pc.bytes == 3 * ENTRY_BYTES
    assert pc.lookup(a)[0] == 4  # a is now the most recently used, b the least
    assert pc.insert(d, *kv(list(d)))
    assert pc.bytes == 3 * ENTRY_BYTES and len(pc) == 3 and pc.evictions == 1
    assert pc.lookup(b)[0] == 2  # b is gone; only the part it shared with a is left
    assert pc.lookup(c)[0] == 4 and pc.lookup(d)[0] == 4
    assert not pc.insert(tuple(range(20, 40)), *kv(list(range(20, 40))))  # larger than the whole cap
    assert pc.bytes <= pc.max_bytes and len(pc) == 3
    pc.clear()
    assert pc.bytes == 0 and len(pc) == 0 and pc.lookup(a)[0] == 0


def test_eviction_under_random_workload_byte_accounting():
    g = torch.Generator().manual_seed(0)
    pc = PrefixCache(40 * 16)  # 40 tokens of 16 bytes (k and v, 1 layer, 1 head, dh 2, float32)
    stored: dict[tuple, None] = {}
    for _ in range(300):
        ids = tuple(torch.randint(0, 3, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist())
        pc.insert(ids, *kv(list(ids), layers=1, dh=2))
        stored[ids] = None
        assert pc.bytes <= pc.max_bytes
        n, k, _ = pc.lookup(ids)
        assert n == len(ids) and k[0, 0, :, 0].tolist() == list(ids)
    assert pc.evictions > 0
    assert pc.bytes == sum(e.nbytes for e in pc._entries.values())
    for ids in stored:  # whatever is still found is found with the right values
        n, k, _ = pc.lookup(ids)
        assert k is None or k[0, 0, :, 0].tolist() == list(ids[:n])


def test_bad_shapes_raise():
    pc = PrefixCache(1000)
    with pytest.raises(ValueError, match="n_layer"):
        pc.insert((1, 2, 3), *kv([1, 2]))


# -- TinyPolicy with the cache against without ----------------------------------------------------------

# short prompts (mixed lengths, with newlines) after which the 1-layer random policy often ends a step
ROOTS = ["471:", "036:", "A01\n+9 1=6", "93\n71", " -6 -211\n", "\n1 94\n16", "+6=40Q4:", "01147 ", "*4A", "+748A"]


def tree(policy: TinyPolicy, temperature: float, *, levels: int = 4, n: int = 2, max_new: int = 8, width: int = 6,
         check=None) -> list[tuple[list[str], list]]:
    """Step-level tree expansion: each level continues the previous level's nodes (prompt + completion,
    `stop_at_step`). Each batch also holds a fresh root and the previous level's first prompt again, so
    rows have different cached and remainder lengths. Returns (prompts, groups) per level."""
    frontier, record = ROOTS[:4], []
    for level in range(levels):
        prompts = frontier + [ROOTS[4 + level]] + ([record[-1][0][0]] if record else [])
        groups = policy.generate(prompts, Sampling(n=n, temperature=temperature, max_new_tokens=max_new,
                                                   stop_at_step=True, seed=10 + level))
        record.append((prompts, groups))
        if check is not None:
            check(policy)
        children = [p + s.text for p, g in zip(frontier, groups) for s in g if s.finish != "eos"]
        frontier = list(dict.fromkeys(children))[:width]
    return record


def cached_policy(mb: float = 1.0) -> TinyPolicy:
    policy = make_tiny_policy(0)
    policy.set_prefix_cache(mb)
    return policy


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cache_on_equals_cache_off_on_tree_workload(temperature):
    off, on = make_tiny_policy(0), cached_policy()
    a, b = tree(off, temperature), tree(on, temperature)
    finishes, continued = set(), 0
    for level, ((prompts, ga), (prompts_b, gb)) in enumerate(zip(a, b)):
        assert prompts == prompts_b
        n_frontier = len(prompts) - (2 if level else 1)
        for i, (prompt, x, y) in enumerate(zip(prompts, ga, gb)):
            assert [s.token_ids for s in x] == [s.token_ids for s in y]
            assert [s.finish for s in x] == [s.finish for s in y]
            for sx, sy in zip(x, y):
                assert sy.logprobs == pytest.approx(sx.logprobs, abs=1e-4)
                assert sx.cost.tokens_generated == sy.cost.tokens_generated
                finishes.add(sx.finish)
            assert x[0].cost.tokens_encoded == len(prompt) + 1
            if level and (i < n_frontier or i == len(prompts) - 1):  # continues what the last call generated
                assert y[0].cost.tokens_encoded == 1
                continued += 1
            else:
                assert 1 <= y[0].cost.tokens_encoded <= len(prompt) + 1
            assert all(s.cost.tokens_encoded == 0 for s in y[1:])
    assert {"step", "length"} <= finishes  # the workload really has step ends
    assert continued >= 10
    enc = [sum(s.cost.tokens_encoded for _, groups in r for g in groups for s in g) for r in (a, b)]
    flops = [sum(s.cost.flops for _, groups in r for g in groups for s in g) for r in (a, b)]
    assert enc[1] < enc[0] / 2 and flops[1] < flops[0]
    pc = on.prefix_cache
    assert pc.hits > 0 and pc.tokens_reused > 0 and 0 < pc.bytes <= pc.max_bytes


def reference_kv(policy: TinyPolicy, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of `ids` from one plain forward pass of the sequence alone."""
    cache = KVCache(policy.config, 1, len(ids), torch.float32)
    cache.valid[:] = True
    with torch.no_grad():
        policy.model(torch.tensor([ids]), None, cache)
    return cache.k[:, 0], cache.v[:, 0]


def test_stored_keys_values_equal_a_fresh_forward_pass():
    """Every sample's prompt + completion (less its last token) is stored, with the right keys and values,
    including rows dropped from the batch mid-generation."""
    policy = cached_policy()
    tok = policy.tokenizer
    for prompts in (ROOTS[:6], [ROOTS[0] + "v0", ROOTS[2] + "oW\n", ROOTS[7]]):
        groups = policy.generate(prompts, Sampling(n=3, temperature=1.0, max_new_tokens=10, stop_at_step=True,
                                                   seed=5))
        for prompt, g in zip(prompts, groups):
            for s in g:
                seq = [tok.bos_id] + tok.encode(prompt) + list(s.token_ids[:-1])
                assert policy.prefix_cache.covers(seq)
                n, k, v = policy.prefix_cache.lookup(seq)
                rk, rv = reference_kv(policy, seq)
                assert n == len(seq)
                torch.testing.assert_close(k, rk, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(v, rv, atol=1e-5, rtol=1e-5)


def test_flops_of_a_continued_prompt(tiny_policy):
    tiny_policy.set_prefix_cache(1)
    prompt = "Q: 47+385\n"
    first = tiny_policy.generate([prompt], Sampling(temperature=0.0, max_new_tokens=6))[0][0]
    cont = prompt + first.text
    s = tiny_policy.generate([cont], Sampling(temperature=0.0, max_new_tokens=6))[0][0]
    m, L, k = tiny_policy.model, len(cont) + 1, len(s.token_ids)
    assert s.cost.tokens_encoded == 1
    prefill = m.flops_per_token(L)  # only the last prompt token runs, attending to the whole prompt
    decode = sum(m.flops_per_token(L + t) for t in range(k))
    assert s.cost.flops == pytest.approx(prefill + decode, rel=1e-9)


def test_byte_cap_respected_and_results_unchanged():
    off = make_tiny_policy(0)
    on = cached_policy(mb=8000 / 2**20)  # ~30 tokens of 256 bytes: constant eviction
    bytes_seen = []
    a = tree(off, 1.0)
    b = tree(on, 1.0, check=lambda p: bytes_seen.append(p.prefix_cache.bytes))
    assert max(bytes_seen) <= on.prefix_cache.max_bytes
    assert on.prefix_cache.evictions > 0
    for (_, ga), (_, gb) in zip(a, b):
        for x, y in zip(ga, gb):
            assert [s.token_ids for s in x] == [s.token_ids for s in y]


def test_off_by_default_and_set_prefix_cache():
    policy = make_tiny_policy(0)
    assert policy.prefix_cache is None
    pc = policy.set_prefix_cache(2)
    assert pc is policy.prefix_cache and pc.max_bytes == 2 * 2**20
    assert policy.set_prefix_cache(0) is None and policy.prefix_cache is None
    with pytest.raises(ValueError):
        policy.set_prefix_cache(-1)
    assert TinyPolicy(make_tiny_policy(0).config, prefix_cache_mb=0.5).prefix_cache.max_bytes == 2**19


# -- invalidation when weights change --------------------------------------------------------------------


def fill(policy: TinyPolicy) -> None:
    policy.generate(ROOTS[:3], Sampling(n=2, temperature=1.0, max_new_tokens=6, seed=0))
    assert policy.prefix_cache.bytes > 0


def test_cleared_by_weights_changed_train_and_load_weights(tmp_path):
    policy = cached_policy()
    fill(policy)
    policy.weights_changed()
    assert policy.prefix_cache.bytes == 0 and len(policy.prefix_cache) == 0
    fill(policy)
    policy.train(False)
    assert policy.prefix_cache.bytes > 0
    policy.train(True)
    assert policy.prefix_cache.bytes == 0
    policy.train(False)
    fill(policy)
    make_tiny_policy(1).save(tmp_path / "m")
    policy.load_weights(tmp_path / "m")
    assert policy.prefix_cache.bytes == 0


def test_stale_entries_never_used_after_weights_change():
    """After an optimizer step the cached policy samples exactly what a fresh policy with the new weights does."""
    policy = cached_policy()
    prompt = ROOTS[0]
    sampling = Sampling(n=2, temperature=1.0, max_new_tokens=8, seed=3)
    first = policy.generate([prompt], sampling)[0]
    cont = [prompt + s.text for s in first]
    logp, mask = policy.logprobs([prompt], [first[0].text])
    opt = torch.optim.SGD(policy.parameters(), lr=0.5)
    (-(logp * mask).sum()).backward()
    opt.step()  # no weights_changed(): the parameter version counters still notice
    fresh = make_tiny_policy(0)
    fresh.model.load_state_dict(policy.model.state_dict())
    got, want = policy.generate(cont, sampling), fresh.generate(cont, sampling)
    assert [[s.token_ids for s in g] for g in got] == [[s.token_ids for s in g] for g in want]
    for g, w in zip(got, want):
        assert g[0].logprobs == pytest.approx(w[0].logprobs, abs=1e-4)
    assert [g[0].cost.tokens_encoded for g in got] == [len(c) + 1 for c in cont]  # nothing reused
