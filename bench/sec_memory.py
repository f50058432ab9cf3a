"""Section 5: peak resident memory of each workload, one fresh process each."""

from __future__ import annotations

from harness import Report, div, run_child
from sec_search import has_search_run


def sec_memory(opts, rep: Report, state: dict) -> None:
    batches = opts.memory_batches or opts.batches
    jobs = [(f"sampling, {e}, batch {b}", "sample", {"engine": e, "batch": b}) for b in batches
            for e in ("ours", "hf")]
    jobs += [("GRPO step, ponder", "grpo", {"side": "ponder"}), ("GRPO step, TRL", "grpo", {"side": "trl"})]
    search_names = [s for s in (("beam", "mcts") if has_search_run(opts) else ("tree",)) if s in opts.memory_search]
    jobs += [(f"{s} search, cache {c}", "search", {"searcher": s, "cache_mb": opts.search_cache_mb if c == "on" else 0})
             for s in search_names for c in ("off", "on")]
    jobs += [(f"SFT step, batch {opts.sft_batch}", "sft", {})]
    rows, by = [], {}
    for name, job, params in jobs:
        r = run_child(job, params, opts)
        by[name] = r
        rows.append({"workload": name, "peak delta MiB": r.get("delta_mb"), "process peak MiB": r.get("peak_mb"),
                     "sampling part delta MiB": r.get("sample_delta_mb"), "update part delta MiB":
                     r.get("update_delta_mb"), "error": r.get("error")})
    b = max(batches)
    rep.ratio(f"sampling batch {b} peak delta: HF / ours", div(by[f"sampling, hf, batch {b}"].get("delta_mb"),
                                                             by[f"sampling, ours, batch {b}"].get("delta_mb")),
              ">1: the built-in engine needs less")
    rep.ratio("GRPO step process peak: TRL / ponder", div(by["GRPO step, TRL"].get("peak_mb"),
                                                          by["GRPO step, ponder"].get("peak_mb")),
              ">1: ponder needs less (libraries included)")
    cols = ["workload", "peak delta MiB", "process peak MiB", "sampling part delta MiB", "update part delta MiB"]
    if any(r["error"] for r in rows):
        cols.append("error")
    rep.table("memory", cols, rows, [
        ("one fresh process per workload, after a warm-up at toy size (it pages in library code: ~100 MiB for the "
         "first backward pass); peak delta = VmHWM - VmRSS at the start of the "
        "run; process peak = VmHWM (imports included); GRPO: one step from a built policy / trainer "
        "(optimizer state included), split at the end of sampling+scoring")])



