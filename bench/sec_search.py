"""Section 3: beam search and MCTS guided by the default run's PRM with the prefix KV cache off and on."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness import Report, div

from ponder.config import load_recipe
from ponder.policy import ModelConfig, TinyPolicy
from ponder.tasks import make_task

# -- setup -------------------------------------------------------------------------------------------


def has_search_run(opts) -> bool:
    run_dir = Path(opts.search_run)
    return (run_dir / "reward" / "prm").is_dir() and (run_dir / "checkpoints" / "init").is_dir()


def search_setup(opts):
    """A callable (searcher, cache_mb) -> (tokens generated, tokens encoded, seconds, what was chosen) on
    the default run's policy and PRM (bench/search_cache.py), or on bench/prefix_cache.py's random tree
    workload; searcher "warmup" runs a small search and returns None."""
    run_dir = Path(opts.search_run)
    if has_search_run(opts):
        import search_cache as S

        from ponder.reward.pipeline import load_model

        try:
            cfg, source = load_recipe(str(run_dir / "config.toml")), "its config.toml"
        except ValueError:  # a run made by another version of ponder: its task is the default recipe's
            cfg, source = load_recipe("default"), "the default recipe (its config.toml is another version's)"
        task = make_task(cfg.task["name"], cfg.task_config())
        policy = TinyPolicy.load(run_dir / "checkpoints" / "init", dtype="float32")
        prm = load_model(run_dir / "reward" / "prm")
        problems = task.problems("test", opts.search_problems, cfg.seed)
        args = argparse.Namespace(seed=opts.seed, width=opts.search_width, simulations=opts.search_simulations)

        def run(searcher: str, cache_mb: float):
            if searcher == "warmup":
                S.run("beam", policy, prm, task, problems[:1], args, 0)
                return None
            texts, cost, secs = S.run(searcher, policy, prm, task, problems, args, cache_mb)
            return cost.tokens_generated, cost.tokens_encoded, secs, texts

        run.what = (f"{run_dir} (task from {source}): PRM-guided search on {len(problems)} test problems, beam "
                    f"width {opts.search_width}, MCTS {opts.search_simulations} simulations, expansions 4, "
                    f"temperature 0.5, <= 64 tokens/step")
        run.searchers = ("beam", "mcts")
        return run
    import prefix_cache as P

    args = argparse.Namespace(prompts=opts.search_problems * 4, children=4, levels=3 if opts.quick else 5,
                              keep=opts.search_problems * 4, step_tokens=12, temperature=1.0, seed=opts.seed)
    cfg = ModelConfig(n_layer=4, n_head=4, d_model=128, max_seq_len=96)
    roots = [f"Q: {i * 37 % 1000}+{i * 91 % 1000}\n" for i in range(args.prompts)]

    def run(searcher: str, cache_mb: float):
        policy = P.make_policy(cfg, 0.5, opts.seed, cache_mb)
        if searcher == "warmup":
            P.tree_search(policy, roots[:2], argparse.Namespace(**{**vars(args), "levels": 1}))
            return None
        start = time.perf_counter()
        drawn, totals = P.tree_search(policy, roots, args)
        return totals["generated"], totals["encoded"], time.perf_counter() - start, drawn

    run.what = (f"no finished run at {run_dir} (needs reward/prm): bench/prefix_cache.py's random tree workload, "
                f"{args.prompts} prompts, 4 children, {args.levels} levels")
    run.searchers = ("tree",)
    return run


def sec_search(opts, rep: Report, state: dict) -> None:
    run = search_setup(opts)
    run("warmup", 0)
    rows = []
    for searcher in run.searchers:
        off, on = run(searcher, 0), run(searcher, opts.search_cache_mb)
        for label, (gen, enc, secs, _) in (("off", off), ("on", on)):
            rows.append({"search": searcher, "prefix cache": label, "tokens generated": gen, "tokens encoded": enc,
                         "encoded/generated": div(enc, gen), "wall s": secs, "speed-up": off[2] / secs,
                         "same choices": "yes" if off[3] == on[3] else "NO"})
        rep.ratio(f"{searcher} search: wall s cache off / on", off[2] / on[2], ">1: the prefix cache saves time")
        rep.ratio(f"{searcher} search: tokens encoded off / on", div(off[1], on[1]), "re-encoding avoided")
    rep.table("search", list(rows[0]), rows, [run.what + f"; cache {opts.search_cache_mb} MiB when on"])



