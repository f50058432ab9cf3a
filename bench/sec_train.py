"""Section 4: training throughput and achieved FLOP/s against the measured matmul peak."""

from __future__ import annotations

import statistics
import time

import torch
from harness import Report, input_lengths, load_default_policy, matmul_peak, median_gaps, recipe_task, train_flops
from sec_grpo import ponder_grpo

from ponder.learn import sft
from ponder.learn.sft import train_sft
from ponder.training import SFTConfig


def sec_train(opts, rep: Report, state: dict) -> None:
    peaks = {k: matmul_peak(opts.matmul_n, dt) for k, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    fp32 = peaks["float32"][0]
    best = max(peaks, key=lambda k: peaks[k][0])
    state["peak"] = fp32
    rows = [{"workload": f"peak: {k} matmul (best of sides 256..{n})", "GFLOP/s": v / 1e9, "of fp32 peak": v / fp32}
            for k, (v, n) in peaks.items()]
    policy, what = load_default_policy(opts)
    n, cfg = policy.num_params(), policy.config
    _, task = recipe_task()
    examples = [(q.prompt, task.demonstration(q)) for q in task.problems("train", 512, opts.seed)]
    lens: list[list[int]] = []
    orig = sft.nll_loss

    def probed(pol, prompts, completions):
        lens.append(input_lengths(pol.tokenizer, prompts, completions, [True] * len(prompts)))
        return orig(pol, prompts, completions)

    stamps: list[float] = []
    sft.nll_loss = probed
    try:
        train_sft(policy, examples, SFTConfig(steps=1 + opts.train_steps, batch_size=opts.sft_batch, lr=1e-3,
                                              warmup=0, log_every=1), seed=opts.seed, progress=False,
                  log=lambda _: stamps.append(time.perf_counter()))
    finally:
        sft.nll_loss = orig
    step_s, _ = median_gaps(stamps)
    flops = statistics.mean(train_flops(n, cfg, x) for x in lens[1:])
    toks = statistics.mean(sum(x) for x in lens[1:])
    rows.append({"workload": f"SFT step, batch {opts.sft_batch}", "step s": step_s, "tokens/step": toks,
                 "tokens/s": toks / step_s, "GFLOP/s": flops / step_s / 1e9, "of fp32 peak": flops / step_s / fp32})
    rep.ratio("SFT: achieved / fp32 matmul peak", flops / step_s / fp32, "model FLOPs utilisation")
    g = state.get("grpo")
    if g is None and ("grpo" not in opts.sections):
        pol2, _ = load_default_policy(opts)
        g = ponder_grpo(opts, pol2, task, task.problems("train", opts.rl_pool, opts.seed), opts.rl_steps)
    if g is not None:
        f_upd = statistics.mean(train_flops(n, cfg, x) for x in g["update_lens"])
        t_upd = statistics.mean(sum(x) for x in g["update_lens"])
        rows.append({"workload": f"RL update (GRPO, {opts.rl_prompts}x{opts.rl_group} samples)",
                     "step s": g["update_call_s"], "tokens/step": t_upd, "tokens/s": t_upd / g["update_call_s"],
                     "GFLOP/s": f_upd / g["update_call_s"] / 1e9, "of fp32 peak": f_upd / g["update_call_s"] / fp32})
        rep.ratio("RL update: achieved / fp32 matmul peak", f_upd / g["update_call_s"] / fp32,
                  "model FLOPs utilisation")
    s = state.get("sampling")
    if s is not None:
        m = s["model"]
        ctx = s["prompt_len"] + opts.new_tokens / 2  # the mean number of attended positions while decoding
        for r in s["rows"]:
            f = m.flops_per_token(ctx) * r["ours tok/s"]
            rows.append({"workload": f"decode, built-in engine, batch {r['batch']}", "tokens/s": r["ours tok/s"],
                         "GFLOP/s": f / 1e9, "of fp32 peak": f / fp32})
    rep.table("train", ["workload", "step s", "tokens/step", "tokens/s", "GFLOP/s", "of fp32 peak"], rows, [
        (f"model: {what}, N = {n / 1e6:.3f}M params; training FLOPs per sequence of T input positions = 6*N*T + "
        f"6*n_layer*d_model*T*(T+1) (fwd+bwd = 3x fwd; tokens = real input positions, prompt included, padding "
        f"not); decode FLOPs/token = 2*N + 4*n_layer*d_model*context; fastest matmul dtype here: {best}; "
        f"median of {opts.train_steps} step(s) after 1 warm-up")])



