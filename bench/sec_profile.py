"""Section 7: where the time of one decode step of the built-in engine goes (torch.profiler, cProfile)."""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import engine_vs_hf as E  # bench/ is this script's directory, hence on sys.path
import torch
from harness import Report, engine_args, matmul_peak

OP_KINDS = {  # aten op names (no namespace, no trailing in-place "_") by what they do in a decode step
    "matmul": {"mm", "addmm", "bmm", "matmul", "linear", "baddbmm"},
    "sampling": {"multinomial", "softmax", "_softmax", "log_softmax", "_log_softmax", "argmax", "sort", "cumsum",
                 "scatter", "gather", "div"},
    "elementwise / norm": {"mul", "add", "sub", "silu", "rsqrt", "pow", "mean", "cos", "sin", "neg", "exp"},
}


def op_kind(key: str) -> str:
    name = key.removeprefix("aten::")
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    if "scaled_dot_product" in name:
        return "attention"
    for kind, names in OP_KINDS.items():
        if name in names:
            return kind
    return "indexing / copies / other"  # KV-cache writes and reads, masks, compaction, views, .item()


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 to /dev/null for a while (C++ libraries write there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def sec_profile(opts, rep: Report, state: dict) -> None:
    b, new = opts.profile_batch, opts.profile_new_tokens
    args = engine_args(opts, batches=[b], new_tokens=new)
    policy, what, prompts = E.load_policy(args)
    run = E.Runner("ours", policy, None, prompts, b, args)
    run()  # warm-up
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:  # kineto logs its start and stop
        start = time.perf_counter()
        run()
        prof_wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total_self = sum(e.self_cpu_time_total for e in events) / 1e6  # seconds inside aten ops
    kinds: dict[str, float] = {}
    for e in events:
        kinds[op_kind(e.key)] = kinds.get(op_kind(e.key), 0.0) + e.self_cpu_time_total / 1e6
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    rows = [{"op": e.key, "calls/step": e.count / new, "self ms/step": e.self_cpu_time_total / 1e3 / new,
             "share of wall": e.self_cpu_time_total / 1e6 / prof_wall, "kind": op_kind(e.key)} for e in top]
    n_calls = sum(e.count for e in events)
    pr = cProfile.Profile()
    pr.enable()
    run()
    pr.disable()
    funcs = sorted(pstats.Stats(pr, stream=io.StringIO()).stats.items(), key=lambda kv: kv[1][2], reverse=True)[:6]
    py_lines = [f"{Path(f).name}:{line}({fn}) " if f != "~" else f"{fn} " for (f, line, fn), _ in funcs]
    py_lines = [f"{where}{tt / new * 1e3:.3f} ms own, {ct / new * 1e3:.3f} ms cumulative, {nc / new:.1f} calls per step"
                for where, ((_, _, _), (_, nc, tt, ct, _)) in zip(py_lines, funcs)]
    peak = state.get("peak") or matmul_peak(opts.matmul_n, torch.float32)[0]
    ctx = statistics.mean(len(policy.tokenizer.encode(p)) + 1 for p in prompts[:b]) + new / 2
    floor = b * policy.model.flops_per_token(ctx) / peak  # seconds per step if compute-bound at the peak
    step = wall / new
    matmul_share = kinds.get("matmul", 0.0) / prof_wall
    rep.ratio(f"decode step, batch {b}: time in matmul ops / wall (profiled)", matmul_share,
              "low: the step is overhead-bound, not compute-bound")
    rep.ratio(f"decode step, batch {b}: compute floor / measured", floor / step, "1 would be the fp32 matmul peak")
    notes = [
        (f"model: {what}; batch {b}, {new} new tokens (1 prefill + {new - 1} decode forwards), EOS off; "
        f"{step * 1e3:.2f} ms per token step unprofiled ({prof_wall / new * 1e3:.2f} ms profiled); compute floor at "
        f"the fp32 peak {floor * 1e3:.3f} ms ({floor / step:.1%} of the step)"),
        f"{n_calls / new:.0f} aten op calls per step; {total_self / prof_wall:.0%} of profiled wall time is inside "
        f"aten ops, the rest Python and dispatch; by kind (share of wall): "
        + ", ".join(f"{k} {v / prof_wall:.0%}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])),
        "top Python functions by own time (cProfile of one generate call, per token step):",
        *("    " + ln for ln in py_lines)]
    rep.table("profile", list(rows[0]), rows, notes)



