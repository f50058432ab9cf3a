"""Benchmark: real step-level tree search (beam search and MCTS guided by a trained PRM) with and without
the prefix KV cache, side by side on the same policy, problems, seed and threads.

It needs a finished run with a PRM (the default demo makes one):

    make demo                                        # or: ponder run
    .venv/bin/python bench/search_cache.py runs/default [--problems 50] [--threads 1]

Both runs must choose the same texts (the cache changes what is computed, not what is sampled).
Prints a markdown table: tokens generated and encoded, the encoded/generated ratio, wall seconds,
and the speed-up of the cached run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ponder.config import load_recipe
from ponder.policy.tiny import TinyPolicy
from ponder.reward.pipeline import load_model
from ponder.search import BeamConfig, MCTSConfig, beam_search, mcts
from ponder.tasks import make_task
from ponder.types import Cost, Sampling


def run(searcher: str, policy: TinyPolicy, prm, task, problems, args, cache_mb: float) -> tuple[list[str], Cost, float]:
    policy.set_prefix_cache(cache_mb)
    sampling = Sampling(temperature=0.5, max_new_tokens=64, seed=args.seed)
    start = time.perf_counter()
    if searcher == "beam":
        results = beam_search(problems, policy, prm, task, config=BeamConfig(width=args.width, expansions=4),
                              sampling=sampling)
    else:
        results, _ = mcts(problems, policy, prm, task, config=MCTSConfig(simulations=args.simulations, expansions=4),
                          sampling=sampling)
    seconds = time.perf_counter() - start
    policy.set_prefix_cache(0)
    return [r.text for r in results], Cost.total(r.cost for r in results), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a finished run with reward/prm, e.g. runs/default")
    ap.add_argument("--checkpoint", default="init")
    ap.add_argument("--problems", type=int, default=50)
    ap.add_argument("--width", type=int, default=4, help="beam width")
    ap.add_argument("--simulations", type=int, default=16, help="MCTS simulations per problem")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    cfg = load_recipe(str(run_dir / "config.toml"))
    task = make_task(cfg.task["name"], cfg.task_config())
    policy = TinyPolicy.load(run_dir / "checkpoints" / args.checkpoint, dtype="float32")
    prm = load_model(run_dir / "reward" / "prm")
    problems = task.problems("test", args.problems, cfg.seed)
    rows = []
    for searcher in ("beam", "mcts"):
        off_texts, off, t_off = run(searcher, policy, prm, task, problems, args, 0)
        on_texts, on, t_on = run(searcher, policy, prm, task, problems, args, 256)
        same = off_texts == on_texts
        for label, cost, secs in (("off", off, t_off), ("on", on, t_on)):
            rows.append({"search": searcher, "prefix cache": label, "tokens generated": cost.tokens_generated,
                         "tokens encoded": cost.tokens_encoded,
                         "encoded/generated": round(cost.tokens_encoded / max(cost.tokens_generated, 1), 3),
                         "wall s": round(secs, 2), "speed-up": round(t_off / secs, 2), "same choices": same})
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(json.dumps({"problems": len(problems), "threads": args.threads, "width": args.width,
                      "simulations": args.simulations}))


if __name__ == "__main__":
    main()
