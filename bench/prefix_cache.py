"""Benchmark of TinyPolicy's prefix KV cache on a step-level tree-search workload.

Each level expands every kept node into `--children` step continuations (`stop_at_step`, at most
`--step-tokens` tokens each), then keeps `--keep` of the new nodes (a seeded random choice, so both
runs keep the same ones) as the next level's prompts. The same workload runs with the cache off and
on, with the same seeds; the script checks that both draw the same tokens and prints a markdown table
of tokens generated and encoded, wall time and the speed-up.

    .venv/bin/python bench/prefix_cache.py            # the default workload
    .venv/bin/python bench/prefix_cache.py --quick    # a small one, seconds
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from ponder.policy import ModelConfig, TinyPolicy
from ponder.types import Sampling


def make_policy(cfg: ModelConfig, std: float, seed: int, cache_mb: float) -> TinyPolicy:
    """A random float32 policy whose matrices are redrawn with a large std, so its output is peaked
    and varied (the default init gives near-uniform, repetitive text)."""
    policy = TinyPolicy(cfg, seed=seed, dtype="float32", prefix_cache_mb=cache_mb)
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for p in policy.model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return policy


def tree_search(policy: TinyPolicy, roots: list[str], args) -> tuple[list, dict]:
    """Run the tree expansion; returns every level's sampled token ids and the summed costs."""
    pick = random.Random(args.seed)
    nodes, drawn = list(roots), []
    totals = {"generated": 0, "encoded": 0, "flops": 0.0, "samples": 0, "steps": 0}
    for level in range(args.levels):
        groups = policy.generate(nodes, Sampling(n=args.children, temperature=args.temperature,
                                                 max_new_tokens=args.step_tokens, stop_at_step=True,
                                                 seed=args.seed + level))
        samples = [s for g in groups for s in g]
        drawn.append([s.token_ids for s in samples])
        totals["generated"] += sum(s.cost.tokens_generated for s in samples)
        totals["encoded"] += sum(s.cost.tokens_encoded for s in samples)
        totals["flops"] += sum(s.cost.flops for s in samples)
        totals["samples"] += len(samples)
        totals["steps"] += sum(s.finish == "step" for s in samples)
        children = [n + s.text for n, g in zip(nodes, groups) for s in g if s.finish != "eos"]
        if not children:
            break
        nodes = pick.sample(children, min(args.keep, len(children)))
    return drawn, totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--max-seq-len", type=int, default=96)
    ap.add_argument("--std", type=float, default=0.5, help="std of the random weight matrices")
    ap.add_argument("--prompts", type=int, default=32, help="root prompts")
    ap.add_argument("--children", type=int, default=4, help="continuations drawn per node (Sampling.n)")
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--keep", type=int, default=32, help="nodes kept per level")
    ap.add_argument("--context", type=int, default=0,
                    help="characters of a shared preamble before each root prompt (like few-shot examples)")
    ap.add_argument("--step-tokens", type=int, default=12, help="max_new_tokens of one step")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--cache-mb", type=float, default=64.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a small workload: 8 prompts, 3 levels, keep 8")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.levels, args.keep = 8, 3, 8
    torch.set_num_threads(args.threads)
    cfg = ModelConfig(n_layer=args.n_layer, n_head=args.n_head, d_model=args.d_model, max_seq_len=args.max_seq_len)
    rng = random.Random(args.seed)
    preamble = "".join(rng.choice("0123456789+= \n") for _ in range(args.context))
    roots = [f"{preamble}Q: {rng.randint(0, 999)}+{rng.randint(0, 999)}\n" for _ in range(args.prompts)]
    if max(len(r) for r in roots) + 1 + args.levels * args.step_tokens >= cfg.max_seq_len:
        raise SystemExit("the deepest node would not fit max_seq_len: lower --levels or --step-tokens")

    make_policy(cfg, args.std, args.seed, 0).generate(roots[:2], Sampling(max_new_tokens=4))  # warm-up
    results = {}
    for name, mb in (("off", 0.0), ("on", args.cache_mb)):
        policy = make_policy(cfg, args.std, args.seed, mb)
        start = time.perf_counter()
        drawn, totals = tree_search(policy, roots, args)
        totals["seconds"] = time.perf_counter() - start
        totals["drawn"] = drawn
        totals["cache"] = policy.prefix_cache.stats() if policy.prefix_cache is not None else None
        results[name] = totals

    off, on = results["off"], results["on"]
    print(f"model {cfg.n_layer}x{cfg.d_model} ({cfg.n_head} heads, max_seq_len {cfg.max_seq_len}), "
          f"{args.prompts} prompts, {args.children} children per node, {args.levels} levels, keep {args.keep}, "
          f"{args.context} preamble chars, <= {args.step_tokens} tokens per step, "
          f"temperature {args.temperature}, {args.threads} thread(s)\n")
    print("| prefix cache | tokens generated | tokens encoded | encoded/generated | GFLOPs | wall s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['generated']} | {r['encoded']} | {r['encoded'] / max(1, r['generated']):.3f} | "
              f"{r['flops'] / 1e9:.2f} | {r['seconds']:.2f} | {off['seconds'] / r['seconds']:.2f}x |")
    print(f"\nsame tokens with and without the cache: {'yes' if off['drawn'] == on['drawn'] else 'NO'}")
    print(f"samples ending a step (the rest hit --step-tokens or EOS): {on['steps']} of {on['samples']}")
    print(f"cache: {on['cache']}")


if __name__ == "__main__":
    main()
