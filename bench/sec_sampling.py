"""Section 1: sampling throughput of the built-in engine against Hugging Face `generate` (same weights)."""

from __future__ import annotations

import statistics

import engine_vs_hf as E  # bench/ is this script's directory, hence on sys.path
from harness import Report, engine_args


def sec_sampling(opts, rep: Report, state: dict) -> None:
    args = engine_args(opts, batches=opts.batches, new_tokens=opts.new_tokens, repeats=opts.repeats)
    policy, what, prompts = E.load_policy(args)
    from ponder.policy.hf_convert import to_hf_llama

    hf = to_hf_llama(policy.model, eos_id=None)
    rows = []
    for batch in opts.batches:
        tokens, med, tps = E.time_engines(E.make_runners(policy, prompts, batch, args, hf), opts.repeats)
        rows.append({"batch": batch, "tokens/call": tokens["ours"], "ours s": med["ours"], "HF s": med["hf"],
                     "ours tok/s": tps["ours"], "HF tok/s": tps["hf"], "ours / HF": tps["ours"] / tps["hf"]})
        rep.ratio(f"sampling batch {batch}: ours / HF tokens/s", tps["ours"] / tps["hf"],
                  ">1: the built-in engine is faster")
    state["sampling"] = {"rows": rows, "model": policy.model, "prompt_len": statistics.mean(
        len(policy.tokenizer.encode(p)) + 1 for p in prompts)}
    rep.table("sampling", list(rows[0]), rows, [
        (f"model: {what}, {policy.num_params() / 1e6:.2f}M params, float32 on both sides; {opts.new_tokens} new tokens "
        f"per row (EOS off), temperature 1, distinct prompts, median of {opts.repeats} after a warm-up, engines "
        f"alternating; HF: LlamaForCausalLM.generate(use_cache=True), SDPA attention")])



