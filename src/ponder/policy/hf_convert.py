"""Convert the built-in transformer to an equivalent Hugging Face `LlamaForCausalLM`.

The built-in decoder is a Llama in all but names: pre-norm blocks with RMSNorm (weight times the
normalized input, computed in float32), rotary embeddings, a SwiGLU MLP, no biases, multi-head
attention (no grouped KV heads) and an output head tied to the token embeddings. The conversion is a
plain copy of the weights, with these correspondences:

- RoPE: the built-in `apply_rope` rotates the pair (i, i + Dh/2), the "rotate_half" layout Hugging Face
  uses, with the same frequencies (base ** (-2i / Dh)); so q and k need no permutation (a checkpoint
  from Meta's interleaved layout would).
- attention: the fused `qkv` rows are [q; k; v], each head-major (head h owns rows h*Dh .. h*Dh+Dh-1),
  which is how `q_proj`, `k_proj`, `v_proj` are split into heads; `proj` is `o_proj`.
- MLP: the fused `gate_up` rows are [gate; up] (`down(silu(gate) * up)`), so its first half is
  `gate_proj` and its second `up_proj`; the hidden width is `64 * ceil(8 * d_model / 3 / 64)`.
- RMSNorm: eps 1e-6 on every norm; `norm1`, `norm2`, `norm` are `input_layernorm`,
  `post_attention_layernorm` and the final `model.norm`.

Positions: the built-in engine numbers each row's positions from 0 at its first real token of a
left-padded batch; Hugging Face `generate` derives the same positions from the attention mask, so
left-padded prompts give the same tokens on both sides. The tokenizer is not converted: feed Hugging
Face the ids of `CharTokenizer` with the BOS id first, as `TinyPolicy` does.

transformers is an optional dependency, imported only when `to_hf_llama` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ponder.policy.transformer import Transformer

if TYPE_CHECKING:  # pragma: no cover
    from transformers import LlamaForCausalLM


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError("ponder.policy.hf_convert needs the `transformers` package (pip install transformers)"
                          ) from e
    return transformers


def to_hf_llama(model: Transformer, *, dtype: torch.dtype | None = None, attn_implementation: str = "sdpa",
                pad_id: int = 0, bos_id: int = 1, eos_id: int | None = 2) -> LlamaForCausalLM:
    """A `LlamaForCausalLM` (in eval mode) computing the same logits as `model`, with copies of its
    weights in `dtype` (default: the dtype of `model`'s weights). The special token ids go into the
    config and its generation config (defaults: those of `CharTokenizer`); `eos_id=None` makes `generate`
    run every row to its `max_new_tokens`."""
    tf = _transformers()
    cfg = model.cfg
    d, h = cfg.d_model, cfg.n_head
    hidden = model.blocks[0].down.in_features
    dtype = dtype or model.embed.weight.dtype
    eps = {m.eps for m in model.modules() if hasattr(m, "eps") and hasattr(m, "weight")}
    if len(eps) != 1:
        raise ValueError(f"expected one RMSNorm eps, found {sorted(eps)}")
    hf_cfg = tf.LlamaConfig(
        vocab_size=model.embed.num_embeddings, hidden_size=d, intermediate_size=hidden, num_hidden_layers=cfg.n_layer,
        num_attention_heads=h, num_key_value_heads=h, head_dim=d // h, hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=eps.pop(),
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_base)},
        attention_bias=False, mlp_bias=False, tie_word_embeddings=True,
        pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id,
    )
    hf_cfg._attn_implementation = attn_implementation
    hf = tf.LlamaForCausalLM(hf_cfg)
    with torch.no_grad():
        base = hf.model
        base.embed_tokens.weight.copy_(model.embed.weight)
        for blk, layer in zip(model.blocks, base.layers):
            q, k, v = blk.qkv.weight.split(d, dim=0)
            att, mlp = layer.self_attn, layer.mlp
            att.q_proj.weight.copy_(q)
            att.k_proj.weight.copy_(k)
            att.v_proj.weight.copy_(v)
            att.o_proj.weight.copy_(blk.proj.weight)
            gate, up = blk.gate_up.weight.split(hidden, dim=0)
            mlp.gate_proj.weight.copy_(gate)
            mlp.up_proj.weight.copy_(up)
            mlp.down_proj.weight.copy_(blk.down.weight)
            layer.input_layernorm.weight.copy_(blk.norm1.weight)
            layer.post_attention_layernorm.weight.copy_(blk.norm2.weight)
        base.norm.weight.copy_(model.norm.weight)
    if hf.lm_head.weight.data_ptr() != base.embed_tokens.weight.data_ptr():
        hf.tie_weights()
    if hf.lm_head.weight.data_ptr() != base.embed_tokens.weight.data_ptr():  # pragma: no cover
        with torch.no_grad():
            hf.lm_head.weight.copy_(model.embed.weight)
    hf.generation_config.pad_token_id = pad_id
    hf.generation_config.bos_token_id = bos_id
    hf.generation_config.eos_token_id = eos_id
    return hf.to(dtype).eval()
