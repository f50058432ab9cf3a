"""Section 6: sampling and one SFT step against model size, batch and new tokens, each in a fresh process."""

from __future__ import annotations

import copy
import statistics
import time

import engine_vs_hf as E  # bench/ is this script's directory, hence on sys.path
from harness import (
    SCALE_SEQ,
    SCALE_SIZES,
    PeakMeter,
    Report,
    div,
    engine_args,
    fmt,
    median_gaps,
    recipe_task,
    run_child,
)

from ponder.learn.sft import train_sft
from ponder.policy import ModelConfig, TinyPolicy
from ponder.training import SFTConfig

# -- one configuration, in its child process ----------------------------------------------------------


def scale_policy(size: str, eos: bool) -> TinyPolicy:
    n_layer, n_head, d = SCALE_SIZES[size]
    policy = TinyPolicy(ModelConfig(n_layer=n_layer, n_head=n_head, d_model=d, max_seq_len=SCALE_SEQ), seed=0,
                        dtype="float32", prefix_cache_mb=0)
    if not eos:  # as engine_vs_hf.load_policy: every row runs to its token cap
        policy.tokenizer = copy.copy(policy.tokenizer)
        policy.tokenizer.eos_id = -1
    return policy


def scale_child(opts, p: dict, meter: PeakMeter) -> dict:
    """Time (median of `scale_repeats` runs after the first) and peak RSS (the first run) of sampling
    `batch` rows x `new` tokens, or of SFT steps on `batch` sequences of a prompt + `new` tokens."""
    _, task = recipe_task()
    size, batch, new = p["size"], p["batch"], p["new"]
    if p["workload"] == "sample":
        policy = scale_policy(size, eos=False)
        args = engine_args(opts, batches=[batch], new_tokens=new)
        prompts = [q.prompt for q in task.problems("test", batch, opts.seed)]
        E.Runner("ours", policy, None, prompts, 1, args)(2)
        run = E.Runner("ours", policy, None, prompts, batch, args)
        meter.start()
        times, tokens = [], 0
        for i in range(1 + opts.scale_repeats):
            start = time.perf_counter()
            tokens = run()
            times.append(time.perf_counter() - start)
            if i == 0:
                mem = meter.stop()
        secs = statistics.median(times[1:] or times)
        return {**mem, "seconds": secs, "tokens_per_s": tokens / secs, "params": policy.num_params()}
    policy = scale_policy(size, eos=True)
    demos = [(q.prompt, task.demonstration(q)) for q in task.problems("train", 64, opts.seed)]
    examples = [(q, (d * (new // len(d) + 1))[:new]) for q, d in demos]  # completions of exactly `new` chars
    stamps: list[float] = []
    train_sft(policy, examples, SFTConfig(steps=1, batch_size=1, warmup=0), seed=0, progress=False)  # warm-up
    meter.start()
    train_sft(policy, examples, SFTConfig(steps=1 + opts.scale_repeats, batch_size=batch, lr=1e-4, warmup=0,
                                          log_every=1), seed=0, progress=False,
              log=lambda _: stamps.append(time.perf_counter()))
    mem = meter.stop()
    secs, _ = median_gaps(stamps)
    return {**mem, "seconds": secs, "tokens_per_s": batch * (new + 1) / secs, "params": policy.num_params()}


def sec_scale(opts, rep: Report, state: dict) -> None:
    base_b, base_n = opts.scale_base_batch, opts.scale_new[0]
    configs = [(s, base_b, base_n) for s in opts.scale_sizes]
    configs += [("default", b, base_n) for b in opts.scale_batches if b != base_b]
    configs += [("default", base_b, n) for n in opts.scale_new if n != base_n]
    rows, res = [], {}
    for size, batch, new in configs:
        sm = run_child("scale", {"workload": "sample", "size": size, "batch": batch, "new": new}, opts)
        ft = run_child("scale", {"workload": "sft", "size": size, "batch": batch, "new": new}, opts)
        res[(size, batch, new)] = (sm, ft)
        n_layer, _, d = SCALE_SIZES[size]
        rows.append({"model": f"{n_layer}x{d} ({fmt((sm.get('params') or ft.get('params') or 0) / 1e6)}M)",
                     "batch": batch, "new tokens": new, "sample s": sm.get("seconds"),
                     "sample tok/s": sm.get("tokens_per_s"), "sample peak delta MiB": sm.get("delta_mb"),
                     "SFT step s": ft.get("seconds"), "SFT trained tok/s": ft.get("tokens_per_s"),
                     "SFT peak delta MiB": ft.get("delta_mb"), "error": sm.get("error") or ft.get("error")})
    base = res[("default", base_b, base_n)]
    largest = opts.scale_sizes[-1]
    big = res[(largest, base_b, base_n)]
    shape = f"{SCALE_SIZES[largest][0]}x{SCALE_SIZES[largest][2]}"
    if largest != "default":
        params = f"param ratio {fmt(div(big[0].get('params'), base[0].get('params')))}x"
        rep.ratio(f"sampling tok/s: {shape} / 4x128 model",
                  div(big[0].get("tokens_per_s"), base[0].get("tokens_per_s")), params)
        rep.ratio(f"SFT tok/s: {shape} / 4x128 model", div(big[1].get("tokens_per_s"), base[1].get("tokens_per_s")),
                  params)
    lo, hi = min(opts.scale_batches), max(opts.scale_batches)
    rep.ratio(f"sampling tok/s: batch {hi} / batch {lo}",
              div(res[("default", hi, base_n)][0].get("tokens_per_s"),
                  res[("default", lo, base_n)][0].get("tokens_per_s")),
              "what batching buys the built-in engine")
    cols = [c for c in rows[0] if c != "error" or any(r["error"] for r in rows)]
    rep.table("scale", cols, rows, [
        (f"one axis at a time from 4x128, batch {base_b}, {base_n} new tokens; random models (max_seq_len "
        f"{SCALE_SEQ}); sampling: distinct task prompts, EOS off; SFT: batch x (prompt + new-tokens chars + EOS), "
        f"AdamW; each configuration in its own process: time = median of {opts.scale_repeats} run(s) after the "
        f"first, memory = peak delta of the first sampling run / of the whole SFT call")])



