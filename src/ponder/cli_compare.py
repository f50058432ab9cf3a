"""`ponder compare`: several runs' test-time scaling on one axis of inference FLOPs.

    ponder run                      # the small policy (0.87M parameters), with its search sweep
    ponder run big                  # the same data and recipe with a policy about 4x larger
    ponder compare runs/default runs/big --out runs/small_vs_big.png

Each run's `search_scaling` rows (from its `[search]` sweep) are plotted as accuracy against the mean
inference FLOPs per problem, so a small policy with search and a big one decoding greedily (or with
search) compare on the compute they really spend: FLOPs count every generated and encoded token at
each model's own size. The reward model's FLOPs are not included (it is as large as its policy).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ponder.runs import RunDirError

DEFAULT_METHODS = ("greedy", "majority", "weighted_vote", "beam", "mcts")


def load_scaling(run_dir: Path) -> tuple[str, int, list[dict]]:
    """(run name, policy parameters, scaling rows) of a finished run; a clear error if it has no sweep."""
    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        raise RunDirError(f"{run_dir}: no summary.json (is it a finished ponder run?)")
    summary = json.loads(summary_file.read_text())
    rows = summary.get("search_scaling", {}).get("rows", [])
    if not rows:
        raise RunDirError(f"{run_dir}: no search sweep in its summary (its recipe's search.methods was empty)")
    return str(summary.get("name") or run_dir.name), int(summary.get("model_params") or 0), rows


def cmd_compare(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    runs = [load_scaling(Path(r)) for r in args.runs]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    table = []
    for (name, params, rows), style in zip(runs, ("-", "--", ":", "-.") * 4):
        for method in methods:
            pts = sorted((r["flops"], r["accuracy"], r["size"]) for r in rows if r["method"] == method)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o",
                    label=f"{name} ({params / 1e6:.2f}M) {method}")
            table += [{"run": name, "params": params, "method": method, "size": s, "flops": f, "accuracy": a}
                      for f, a, s in pts]
    if not table:
        raise RunDirError(f"none of the runs has rows for methods {', '.join(methods)}")
    ax.set_xscale("log")
    ax.set_xlabel("inference FLOPs per problem (policy)")
    ax.set_ylabel("accuracy on held-out problems")
    ax.set_title("Small policy + search versus big policy, at equal inference compute", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"{'run':<16} {'params':>8} {'method':<14} {'size':>5} {'GFLOPs/problem':>15} {'accuracy':>9}")
    for r in sorted(table, key=lambda r: r["flops"]):
        print(f"{r['run']:<16} {r['params'] / 1e6:>7.2f}M {r['method']:<14} {r['size']:>5} {r['flops'] / 1e9:>15.3f} "
              f"{r['accuracy']:>9.1%}")
    print(f"\nplot: {out}")
    return 0


def add_parser(sub) -> None:
    """Register `ponder compare` on the main parser's subcommands."""
    c = sub.add_parser("compare", help="plot several runs' accuracy against inference FLOPs (small + search vs big)",
                       description="Plot the search sweeps of several runs on one axis of inference FLOPs.")
    c.add_argument("runs", nargs="+", help="finished run directories with a search sweep")
    c.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated methods to plot (default: {','.join(DEFAULT_METHODS)})")
    c.add_argument("--out", default="runs/compare.png", help="the plot file (default: runs/compare.png)")
    c.set_defaults(fn=cmd_compare)
