"""Tests of the built-in policy (TinyPolicy): the KV-cache sampler against a no-cache reference,
left-padding invariance, seeding, log-probabilities, cost accounting, step stops and checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_policy

from ponder.policy import PolicyLoadError, TinyPolicy
from ponder.policy.tiny import sample_next
from ponder.types import Sampling

PROMPT = "Q: 47+385\n"
LONG = "Q: 123456789+987654321 and a much longer prompt\n"


def reference_sample(policy: TinyPolicy, prompt: str, *, temperature: float, top_p: float = 1.0,
                     max_new_tokens: int, seed: int) -> tuple[list[int], list[float], str]:
    """No cache: re-run the whole sequence through the model at every step, same sampling rule and seed."""
    tok = policy.tokenizer
    gen = torch.Generator().manual_seed(seed)
    ids = [tok.bos_id] + tok.encode(prompt)
    max_new = min(max_new_tokens, policy.config.max_seq_len - len(ids))
    out, lps, finish = [], [], "length"
    with torch.no_grad():
        for _ in range(max_new):
            logits = policy.model(torch.tensor([ids]))[:, -1]  # (1, V)
            nxt = sample_next(logits, temperature, top_p, gen)
            t = int(nxt[0])
            lps.append(float(torch.log_softmax(logits.float(), -1)[0, t]))
            out.append(t)
            ids.append(t)
            if t == tok.eos_id:
                finish = "eos"
                break
    return out, lps, finish


def gen1(policy: TinyPolicy, prompt: str, **kw):
    return policy.generate([prompt], Sampling(n=1, **kw))[0][0]


# -- (1) KV cache equals no cache --------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kv_cache_sampling_equals_full_recompute(tiny_policy, temperature, seed):
    s = gen1(tiny_policy, PROMPT, temperature=temperature, max_new_tokens=30, seed=seed)
    ref_ids, ref_lps, ref_finish = reference_sample(tiny_policy, PROMPT, temperature=temperature,
                                                    max_new_tokens=30, seed=seed)
    assert list(s.token_ids) == ref_ids
    assert s.finish == ref_finish
    assert s.logprobs == pytest.approx(ref_lps, abs=1e-4)
    assert len(set(ref_ids)) > 3  # the model is not degenerate: the comparison means something


def test_kv_cache_equals_reference_up_to_max_seq_len(tiny_policy):
    """A long generation that hits the model's length cap (prompt + completion = max_seq_len)."""
    prompt = "x" * 40
    s = gen1(tiny_policy, prompt, temperature=0.0, max_new_tokens=1000)
    ref_ids, _, ref_finish = reference_sample(tiny_policy, prompt, temperature=0.0, max_new_tokens=1000, seed=0)
    assert list(s.token_ids) == ref_ids and s.finish == ref_finish
    if s.finish == "length":
        assert len(s.token_ids) == 64 - 41


# -- (2) left padding --------------------------------------------------------------------------------


def test_left_padding_invariance_greedy(tiny_policy):
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=12)
    alone = tiny_policy.generate([PROMPT], sampling)[0][0]
    short_first = tiny_policy.generate([PROMPT, LONG], sampling)
    long_first = tiny_policy.generate([LONG, PROMPT], sampling)
    assert short_first[0][0].token_ids == alone.token_ids
    assert long_first[1][0].token_ids == alone.token_ids
    assert short_first[1][0].token_ids == long_first[0][0].token_ids
    assert short_first[0][0].logprobs == pytest.approx(alone.logprobs, abs=1e-4)
    assert short_first[0][0].token_ids != short_first[1][0].token_ids  # prompts matter


# -- (3) seeds ---------------------------------------------------------------------------------------


def test_same_seed_reproducible_different_seed_differs(tiny_policy):
    def draw(seed):
        groups = tiny_policy.generate([PROMPT, "Q: 9\n"], Sampling(n=4, temperature=1.0, max_new_tokens=20, seed=seed))
        return [[s.token_ids for s in g] for g in groups]

    a, b, c = draw(7), draw(7), draw(8)
    assert a == b
    assert a != c
    assert len(set(a[0])) > 1  # the n samples of one prompt are not copies of each other


def test_seed_none_uses_policy_generator():
    p1, p2 = make_tiny_policy(0), make_tiny_policy(0)
    s = Sampling(n=2, temperature=1.0, max_new_tokens=15)
    first = [x.token_ids for x in p1.generate([PROMPT], s)[0]]
    assert first == [x.token_ids for x in p2.generate([PROMPT], s)[0]]  # same policy seed, same stream
    second = [x.token_ids for x in p1.generate([PROMPT], s)[0]]
    assert first != second  # the policy's generator advances between calls


# -- (4) sample logprobs match policy.logprobs -------------------------------------------------------


def test_sample_logprobs_match_policy_logprobs(tiny_policy):
    tok = tiny_policy.tokenizer
    prompts = [PROMPT, "Q: 5\n"]
    checked = {"eos": 0, "length": 0}
    for seed in range(10):
        groups = tiny_policy.generate(prompts, Sampling(n=8, temperature=1.0, max_new_tokens=20, seed=seed))
        for prompt, group in zip(prompts, groups):
            for s in group:
                if tok.pad_id in s.token_ids or tok.bos_id in s.token_ids:
                    continue  # text cannot represent these (see test_sampler_never_emits_pad_or_bos)
                eos = s.finish == "eos"
                assert list(s.token_ids) == tok.encode(s.text) + ([tok.eos_id] if eos else [])
                with torch.no_grad():
                    logp, mask = tiny_policy.logprobs([prompt], [s.text], eos=eos)
                k = len(s.token_ids)
                assert mask[0].tolist() == [1.0] * k + [0.0] * (mask.shape[1] - k)
                assert logp[0, :k].tolist() == pytest.approx(list(s.logprobs), abs=1e-4)
                checked[s.finish] += 1
        if min(checked.values()) >= 2:
            break
    assert checked["eos"] >= 2 and checked["length"] >= 2


def test_logprobs_batch_padding_and_mask(tiny_policy):
    """Scoring a pair together equals scoring each alone; padding columns are zero and masked out."""
    prompts, comps = ["Q: 1+1\n", LONG], ["2\nA: 2\n", "ok"]
    with torch.no_grad():
        logp, mask = tiny_policy.logprobs(prompts, comps)
        for b in range(2):
            lone, lone_mask = tiny_policy.logprobs([prompts[b]], [comps[b]])
            k = len(comps[b]) + 1
            assert mask[b].sum() == k == lone_mask.sum()
            assert logp[b, :k].tolist() == pytest.approx(lone[0, :k].tolist(), abs=1e-5)
            assert logp[b, k:].abs().sum() == 0
    assert logp.shape == mask.shape == (2, len(comps[0]) + 1)


def test_logprobs_equal_manual_log_softmax(tiny_policy):
    tok = tiny_policy.tokenizer
    prompt, comp = "Q: 3\n", "A: 9"
    ids = [tok.bos_id] + tok.encode(prompt) + tok.encode(comp) + [tok.eos_id]
    with torch.no_grad():
        logits = tiny_policy.model(torch.tensor([ids]))[0]
        logp, _ = tiny_policy.logprobs([prompt], [comp])
    n_p = 1 + len(prompt)
    manual = [float(torch.log_softmax(logits[n_p - 1 + j], -1)[ids[n_p + j]]) for j in range(len(comp) + 1)]
    assert logp[0].tolist() == pytest.approx(manual, abs=1e-5)


def test_logprobs_too_long_raises(tiny_policy):
    with pytest.raises(ValueError, match="max_seq_len=64"):
        tiny_policy.logprobs(["x" * 40], ["y" * 30])


def test_sampler_never_emits_pad_or_bos(tiny_policy):
    """PAD and BOS are never training targets and decode to nothing, so a sample containing them has
    a text that differs from its token_ids (and its logprobs); the sampler must not draw them."""
    tok = tiny_policy.tokenizer
    groups = tiny_policy.generate([PROMPT, "Q: 5\n"], Sampling(n=16, temperature=1.0, max_new_tokens=30, seed=0))
    bad = [s.token_ids for g in groups for s in g if tok.pad_id in s.token_ids or tok.bos_id in s.token_ids]
    assert bad == []


# -- (5) costs and step stops ------------------------------------------------------------------------


def test_cost_accounting(tiny_policy):
    prompts = [PROMPT, "Q: 5\n", LONG]
    n = 3
    groups = tiny_policy.generate(prompts, Sampling(n=n, temperature=1.0, max_new_tokens=25, seed=4))
    assert [len(g) for g in groups] == [n] * len(prompts)
    samples = [s for g in groups for s in g]
    assert sum(s.cost.tokens_generated for s in samples) == sum(len(s.token_ids) for s in samples)
    for s in samples:
        assert s.cost.tokens_generated == len(s.token_ids) == len(s.logprobs)
        assert s.cost.reward_calls == 0
    for prompt, g in zip(prompts, groups):
        assert g[0].cost.tokens_encoded == len(prompt) + 1  # BOS + prompt, once per prompt
        assert all(s.cost.tokens_encoded == 0 for s in g[1:])
    assert sum(s.cost.tokens_encoded for s in samples) == sum(len(p) + 1 for p in prompts)
    # one prefill call plus one call per decoding step after the first token: the longest sample's length
    assert sum(s.cost.policy_calls for s in samples) == max(len(s.token_ids) for s in samples)
    assert groups[0][0].cost.policy_calls > 0 and all(s.cost.policy_calls == 0 for s in samples[1:])


def test_tokens_encoded_independent_of_n(tiny_policy):
    for n in (1, 2, 5):
        g = tiny_policy.generate([PROMPT], Sampling(n=n, temperature=1.0, max_new_tokens=5, seed=0))[0]
        assert sum(s.cost.tokens_encoded for s in g) == len(PROMPT) + 1


def test_flops_single_prompt(tiny_policy):
    s = gen1(tiny_policy, PROMPT, temperature=0.0, max_new_tokens=10)
    m = tiny_policy.model
    L, k = len(PROMPT) + 1, len(s.token_ids)
    prefill = sum(m.flops_per_token(c) for c in range(1, L + 1))
    decode = sum(m.flops_per_token(L + t) for t in range(k))
    assert s.cost.flops == pytest.approx(prefill + decode, rel=1e-9)


def test_batches_split_by_batch_size_keep_per_prompt_costs():
    policy = make_tiny_policy(0)
    prompts = [PROMPT, "Q: 5\n", LONG]
    sampling = Sampling(n=2, temperature=0.0, max_new_tokens=8)
    whole = policy.generate(prompts, sampling)
    policy.batch_size = 2  # one prompt (2 samples) per batch
    split = policy.generate(prompts, sampling)
    assert [[s.token_ids for s in g] for g in split] == [[s.token_ids for s in g] for g in whole]
    assert [g[0].cost.tokens_encoded for g in split] == [len(p) + 1 for p in prompts]
    assert [g[0].cost.policy_calls for g in split] == [max(len(s.token_ids) for s in g) for g in split]


def test_stop_at_step_stops_at_newline(tiny_policy):
    tok = tiny_policy.tokenizer
    found = 0
    for seed in range(40):
        full = gen1(tiny_policy, PROMPT, temperature=1.0, max_new_tokens=40, seed=seed)
        if "\n" not in full.text or full.finish == "eos" and full.text.index("\n") == len(full.text) - 1:
            continue
        cut = full.token_ids.index(tok.step_token) + 1
        step = gen1(tiny_policy, PROMPT, temperature=1.0, max_new_tokens=40, seed=seed, stop_at_step=True)
        assert step.finish == "step"
        assert step.text.endswith("\n") and step.text.count("\n") == 1
        assert step.token_ids == full.token_ids[:cut]
        assert step.logprobs == pytest.approx(full.logprobs[:cut], abs=1e-5)
        assert step.cost.tokens_generated == cut
        found += 1
    assert found >= 2


def test_stop_at_step_batched_every_sample(tiny_policy):
    groups = tiny_policy.generate([PROMPT, "Q: 5\n"], Sampling(n=16, temperature=1.0, max_new_tokens=30, seed=2,
                                                               stop_at_step=True))
    finishes = [s.finish for g in groups for s in g]
    assert "step" in finishes
    for s in (s for g in groups for s in g):
        if s.finish == "step":
            assert s.text.endswith("\n") and s.text.count("\n") == 1
        else:
            assert "\n" not in s.text


def test_greedy_with_newline_in_output_and_stop_at_step_finishes_step(tiny_policy):
    """Without stop_at_step a completion may run past newlines; with it, it ends at the first."""
    s = gen1(tiny_policy, PROMPT, temperature=0.0, max_new_tokens=40)
    full_text = s.text
    st = gen1(tiny_policy, PROMPT, temperature=0.0, max_new_tokens=40, stop_at_step=True)
    if "\n" in full_text:
        assert st.finish == "step" and st.text == full_text[: full_text.index("\n") + 1]
    else:
        assert st.token_ids == s.token_ids and st.finish == s.finish


# -- (6) checkpoints ---------------------------------------------------------------------------------


def test_save_load_round_trip(tiny_policy, tmp_path):
    tiny_policy.save(tmp_path / "m")
    assert sorted(f.name for f in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["model"] == tiny_policy.config.to_dict() and meta["dtype"] == "float32"
    loaded = TinyPolicy.load(tmp_path / "m")
    assert loaded.config == tiny_policy.config and loaded.dtype == "float32"
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=20)
    for prompt in (PROMPT, LONG):
        a = tiny_policy.generate([prompt], sampling)[0][0]
        b = loaded.generate([prompt], sampling)[0][0]
        assert a.token_ids == b.token_ids and a.logprobs == b.logprobs
    for (k, v), (k2, v2) in zip(tiny_policy.model.state_dict().items(), loaded.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_load_missing_files_names_path(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(PolicyLoadError, match="nothing_here"):
        TinyPolicy.load(empty)
    with pytest.raises(PolicyLoadError, match="does_not_exist"):
        TinyPolicy.load(tmp_path / "does_not_exist")


def test_load_bad_config_or_weights(tiny_policy, tmp_path):
    tiny_policy.save(tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    meta = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**meta, "model": {**meta["model"], "d_model": 64}}))
    with pytest.raises(PolicyLoadError, match="model.safetensors"):
        TinyPolicy.load(tmp_path / "m")
    cfg.write_text(json.dumps({**meta, "model": {**meta["model"], "bogus": 1}}))
    with pytest.raises(PolicyLoadError, match="config.json"):
        TinyPolicy.load(tmp_path / "m")
    cfg.write_text("{not json")
    with pytest.raises(PolicyLoadError, match="config.json"):
        TinyPolicy.load(tmp_path / "m")


# -- (7) top_p ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_tiny_top_p_equals_greedy(tiny_policy, seed):
    greedy = tiny_policy.generate([PROMPT, LONG], Sampling(n=1, temperature=0.0, max_new_tokens=15))
    nucleus = tiny_policy.generate([PROMPT, LONG], Sampling(n=1, temperature=1.0, top_p=1e-6, max_new_tokens=15,
                                                             seed=seed))
    assert [g[0].token_ids for g in nucleus] == [g[0].token_ids for g in greedy]


def test_sample_next_top_p_keeps_smallest_prefix():
    inf = float("inf")
    # ids 0 and 1 (PAD, BOS) get no mass; the real distribution is 0.5, 0.3, 0.15, 0.05 on ids 2..5
    logits = torch.cat([torch.tensor([[-inf, -inf]]), torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))], dim=1)
    gen = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, 1.0, 0.7, gen)) for _ in range(300)}
    assert draws == {2, 3}  # 0.5 < 0.7 so the top two are kept, never the tail
    draws = {int(sample_next(logits, 1.0, 0.45, gen)) for _ in range(100)}
    assert draws == {2}  # the top token alone already reaches 0.45
    draws = {int(sample_next(logits, 1.0, 1.0, gen)) for _ in range(400)}
    assert draws == {2, 3, 4, 5}
    assert sample_next(torch.tensor([[0.0, -1.0, 1.0, 3.0, 2.0]]), 0.0, 1.0, None).tolist() == [3]


def test_greedy_n_copies_equal_single(tiny_policy):
    """n greedy samples per prompt (shared prefill, batch compaction) are all the single greedy sample."""
    single = [tiny_policy.generate([p], Sampling(n=1, temperature=0.0, max_new_tokens=14))[0][0] for p in (PROMPT, LONG)]
    groups = tiny_policy.generate([PROMPT, LONG], Sampling(n=3, temperature=0.0, max_new_tokens=14))
    for one, g in zip(single, groups):
        assert [s.token_ids for s in g] == [one.token_ids] * 3
        assert [s.text for s in g] == [one.text] * 3


def test_long_batch_partner_does_not_shorten_completion(tiny_policy):
    """The length cap max_seq_len applies to each prompt's own length: a short prompt batched with a
    long one must get the same completion as alone (positions restart at 0 on each row), not one cut
    to max_seq_len - len(longest prompt)."""
    assert len(LONG) + 1 + 25 > tiny_policy.config.max_seq_len >= len(PROMPT) + 1 + 25
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=25)
    alone = tiny_policy.generate([PROMPT], sampling)[0][0]
    batched = tiny_policy.generate([PROMPT, LONG], sampling)
    assert batched[0][0].token_ids == alone.token_ids
    assert batched[0][0].finish == alone.finish
    assert len(batched[1][0].token_ids) <= tiny_policy.config.max_seq_len - (len(LONG) + 1)


def test_prompts_with_different_room_share_a_batch(tiny_policy):
    """A sample that reaches its own context limit waits in the batch without running past the model's
    positions, while the others keep generating."""
    out = tiny_policy.generate(["x" * 60] + ["y" * 10] * 4, Sampling(n=1, temperature=1.0, max_new_tokens=20, seed=0))
    assert len(out[0][0].token_ids) <= tiny_policy.room("x" * 60) + 1
    assert all(len(g[0].token_ids) <= 20 for g in out)


def test_each_batch_of_a_seeded_call_samples_on_its_own_seed():
    """A worker given batch k of a call alone (seeded `batch_seed(seed, k)`) samples exactly what the
    whole call samples for it: what distributed generation relies on."""
    from ponder.policy.base import batch_seed

    policy = make_tiny_policy()
    policy.batch_size = 6  # 3 prompts of 2 samples per batch
    prompts = [f"Q: {a}+{a + 1}\n" for a in range(8)]
    s = Sampling(n=2, temperature=1.0, max_new_tokens=10, seed=123)
    assert policy.prompts_per_batch(s) == 3
    whole = policy.generate(prompts, s)
    for k, start in enumerate(range(0, 8, 3)):
        alone = policy.generate(prompts[start : start + 3], Sampling(n=2, temperature=1.0, max_new_tokens=10,
                                                                      seed=batch_seed(123, k)))
        assert [[x.token_ids for x in g] for g in alone] == [[x.token_ids for x in g] for g in whole[start:start + 3]]
    assert batch_seed(123, 0) == 123 and len({batch_seed(123, k) for k in range(50)}) == 50
