"""The Hugging Face conversion of the built-in transformer computes the same function: same logits,
and Hugging Face greedy `generate` on left-padded prompts picks the same tokens as `TinyPolicy`."""

from __future__ import annotations

import pytest
import torch

from ponder.policy import ModelConfig, TinyPolicy
from ponder.types import Sampling

pytest.importorskip("transformers")

from ponder.policy.hf_convert import to_hf_llama

PROMPTS = ["Q: 379+968\n", "Q: 18+605\n", "Q: 7+5\n", "Q: 124+814\nA: "]


def make_policy(n_layer: int = 2, seed: int = 0, std: float = 0.5) -> TinyPolicy:
    """A float32 random policy with large weights, so its outputs are peaked and prompt-dependent."""
    cfg = ModelConfig(n_layer=n_layer, n_head=2, d_model=32, max_seq_len=64, rope_base=500.0)
    policy = TinyPolicy(cfg, seed=seed, dtype="float32")
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for p in policy.model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (std if p.dim() == 2 else 1.0) + (p.dim() == 1))
    return policy


def encode(policy: TinyPolicy, prompts: list[str], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (BOS first) padded on the left or right, and the attention mask."""
    tok = policy.tokenizer
    rows = [[tok.bos_id] + tok.encode(p) for p in prompts]
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), tok.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        span = slice(T - len(r), T) if left else slice(0, len(r))
        ids[b, span], mask[b, span] = torch.tensor(r), 1
    return ids, mask


def test_config_matches():
    policy = make_policy()
    hf = to_hf_llama(policy.model)
    c, m = hf.config, policy.config
    assert (c.hidden_size, c.num_attention_heads, c.num_hidden_layers) == (m.d_model, m.n_head, m.n_layer)
    assert c.intermediate_size == policy.model.blocks[0].down.in_features
    assert c.vocab_size == policy.tokenizer.vocab_size and c.max_position_embeddings == m.max_seq_len
    assert c.rope_parameters["rope_theta"] == m.rope_base and c.rms_norm_eps == policy.model.norm.eps
    assert c.tie_word_embeddings and hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in hf.parameters()) == policy.num_params()


@pytest.mark.parametrize("n_layer", [1, 2])
def test_same_logits(n_layer):
    policy = make_policy(n_layer)
    hf = to_hf_llama(policy.model)
    ids, mask = encode(policy, PROMPTS, left=False)  # right padding: causal attention never sees it
    with torch.no_grad():
        ours = policy.model(ids)
        theirs = hf(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    assert ours.abs().max() > 1.0  # the check is not vacuous
    torch.testing.assert_close(theirs[real], ours[real], atol=1e-5, rtol=1e-5)


def test_same_greedy_tokens():
    policy = make_policy(2)
    hf = to_hf_llama(policy.model)
    tok, new = policy.tokenizer, 20
    ours = [g[0].token_ids for g in policy.generate(PROMPTS, Sampling(temperature=0, max_new_tokens=new))]
    ids, mask = encode(policy, PROMPTS, left=True)
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new,
                          suppress_tokens=[tok.pad_id, tok.bos_id], eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    theirs = []
    for row in out[:, ids.shape[1]:].tolist():
        theirs.append(tuple(row[: row.index(tok.eos_id) + 1] if tok.eos_id in row else row))
    assert theirs == ours
    assert len({t for t in ours}) > 1  # prompts lead to different completions
