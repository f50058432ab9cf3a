"""`ponder compare`: several runs side by side, on search compute or on learning compute.

Search (the default): each run's test-time scaling sweep on one axis of inference FLOPs.

    ponder run                      # the small policy (0.87M parameters), with its search sweep
    ponder run big                  # the same data and recipe with a policy about 4x larger
    ponder compare runs/default runs/big --out runs/small_vs_big.png

Each run's `search_scaling` rows (from its `[search]` sweep) are plotted as accuracy against the mean
inference FLOPs per problem, so a small policy with search and a big one decoding greedily (or with
search) compare on the compute they really spend: FLOPs count every generated and encoded token at
each model's own size. The reward model's FLOPs are not included (it is as large as its policy).
With two or more runs of different sizes over the same problems it also measures the `small_vs_big`
claim (`ponder.small_big`: the smallest run's search, chosen by cross-fitting among the options within
the largest run's greedy FLOPs, against that greedy answer, paired over problems), both runs' best
searches at 1, 2, 4, 8 and 16 times that budget, and a table by difficulty bin of the small policy's
pass rate: where search pays and where size does. All of it goes to a .json beside the plot.

Learning (`--learning`): runs that differ in their learner, started from the same initialized
policy (`init.checkpoint`; `make learners` runs every learner recipe that way), as held-out accuracy
against learning compute (tokens sampled to make training data plus tokens trained, summed over the
rounds). Learners spend compute in different chunks, so the table reads each run's curve at common
budgets: linear interpolation between its evaluations, from the initial policy at 0, and only
within the compute the run actually spent (no extrapolation). It writes the plot and an HTML page
with the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from ponder import small_big
from ponder.claims import effect_text
from ponder.runs import RunDirError, write_json

DEFAULT_METHODS = ("greedy", "majority", "weighted_vote", "beam", "mcts")


def load_scaling(run_dir: Path) -> tuple[str, int, list[dict]]:
    """(run name, policy parameters, scaling rows) of a finished run; a clear error if it has no sweep."""
    sweep = load_sweep(run_dir)
    return sweep["name"], sweep["params"], sweep["rows"]


def load_sweep(run_dir: Path) -> dict:
    """A finished run's sweep: name, params, rows, and from its state the per-problem scores, problem ids
    and difficulty (empty for runs made before they were kept); a clear error if it has no sweep."""
    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        raise RunDirError(f"{run_dir}: no summary.json (is it a finished ponder run?)")
    summary = json.loads(summary_file.read_text())
    rows = summary.get("search_scaling", {}).get("rows", [])
    if not rows:
        raise RunDirError(f"{run_dir}: no search sweep in its summary (its recipe's search.methods was empty)")
    state_file = run_dir / "state.json"
    search = json.loads(state_file.read_text()).get("results", {}).get("search", {}) if state_file.is_file() else {}
    return {"name": str(summary.get("name") or run_dir.name), "params": int(summary.get("model_params") or 0),
            "rows": rows, "per_problem": search.get("per_problem", {}), "problem_ids": search.get("problem_ids", []),
            "difficulty": search.get("difficulty", [])}


def small_vs_big_section(sweeps: list[dict], *, bins: int, bins_at: float = 1.0, seed: int = 0
                         ) -> tuple[dict | None, list[str]]:
    """The smallest and the largest run's claim, frontier and difficulty bins ({"claim", "frontier",
    "bins"}), and the lines that print them; (None, [why not]) when they cannot be paired."""
    small, big = min(sweeps, key=lambda s: s["params"]), max(sweeps, key=lambda s: s["params"])
    if small["params"] == big["params"]:
        return None, ["claim small_vs_big: not measured (the runs' policies are the same size)"]
    try:
        measured = small_big.claim(small, big, seed=seed)
        front = small_big.frontier(small, big, seed=seed)
        rows = small_big.difficulty_bins(small, big, bins=bins, multiple=bins_at, seed=seed)
    except small_big.SweepMismatch as err:
        return None, [f"claim small_vs_big: not measured ({err})"]
    lines = [f"claim small_vs_big: {measured['verdict']}"
             + (f", {effect_text('small_vs_big', measured['effect'], measured['lo'], measured['hi'])}"
                if measured["effect"] is not None else ""), f"  {measured['evidence']}"]
    if front:
        lines += ["", (f"Both policies at equal inference FLOPs (policy and reward model; multiples of {big['name']}'s "
                      "greedy), each run's option chosen on the other half of the problems, accuracy in % [95% interval]:"),
                  "", f"| budget | GFLOPs | {small['name']} option | accuracy | {big['name']} option | accuracy | small - big |",
                  "|---|---|---|---|---|---|---|"]
        for r in front:
            d = r["small_minus_big"]
            lines.append(f"| {r['multiple']:g}x | {r['budget'] / 1e9:.2f} | {_picks(r['small_picks'])} | {_pct(r['small'])} | "
                         f"{_picks(r['big_picks'])} | {_pct(r['big'])} | "
                         f"{effect_text('small_vs_big', d['effect'], d['lo'], d['hi'])} ({d['verdict']}) |")
    if rows:
        lines += ["", (f"By difficulty bin of {small['name']}'s pass rate (1 = easiest), searches within {bins_at:g}x "
                      f"{big['name']}'s greedy FLOPs, accuracy in % [95% interval]:"), "",
                  "| bin | problems | pass rate | small greedy | small search | big greedy | big search | small - big search |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            d = r.get("small_minus_big")
            diff = f"{effect_text('small_vs_big', d['effect'], d['lo'], d['hi'])} ({d['verdict']})" if d else "-"
            lines.append(f"| {r['bin']} | {r['problems']} | {r['pass_rate'][0]:.2f}-{r['pass_rate'][1]:.2f} | "
                         + " | ".join(_pct(r[k]) for k in ("small_greedy", "small_search", "big_greedy", "big_search"))
                         + f" | {diff} |")
    return {"claim": measured, "frontier": front, "bins": rows}, lines


def _picks(picks: list[str]) -> str:
    return picks[0] if picks[0] == picks[1] else " / ".join(picks)


def _pct(cell: dict | None) -> str:
    return "-" if cell is None else f"{100 * cell['accuracy']:.1f} [{100 * cell['lo']:.1f}, {100 * cell['hi']:.1f}]"


def cmd_compare(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.bins < 1 or not args.bins_at > 0:
        raise RunDirError(f"--bins must be >= 1 and --bins-at > 0, got {args.bins} and {args.bins_at}")
    sweeps = [load_sweep(Path(r)) for r in args.runs]
    runs = [(s["name"], s["params"], s["rows"]) for s in sweeps]
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
    if len(sweeps) > 1:
        measured, lines = small_vs_big_section(sweeps, bins=args.bins, bins_at=args.bins_at)
        print("\n" + "\n".join(lines))
        if measured is not None:
            write_json(out.with_suffix(".json"), measured)
            print(f"claim and bins: {out.with_suffix('.json')}")
    print(f"\nplot: {out}")
    return 0


def load_learning(run_dir: Path) -> dict:
    """A finished run's learner and its evaluations against learning compute."""
    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        raise RunDirError(f"{run_dir}: no summary.json (is it a finished ponder run?)")
    summary = json.loads(summary_file.read_text())
    phases = summary.get("phases", [])
    if len(phases) < 2:
        raise RunDirError(f"{run_dir}: no learning round was evaluated (its recipe's learn.rounds was 0?)")
    return {"run": run_dir.name, "learner": summary.get("learner") or "?",  # the directory: unique, unlike names
            "points": [(p["learning_compute_tokens"], p["greedy_accuracy"], p.get("majority_accuracy"))
                       for p in phases if "learning_compute_tokens" in p],
            "majority_n": phases[0].get("majority_n")}


def interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """The piecewise-linear curve through sorted `points` at `x`; None outside their range."""
    if not points or x < points[0][0] or x > points[-1][0]:
        return None
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def learning_table(runs: list[dict], budgets: list[float]) -> list[dict]:
    """One row per run: accuracy (greedy, and majority at the runs' N) at each budget, and at the end."""
    rows = []
    for r in runs:
        greedy = [(c, g) for c, g, _ in r["points"]]
        vote = [(c, m) for c, _, m in r["points"] if m is not None]
        row = {"run": r["run"], "learner": r["learner"], "initial_greedy": greedy[0][1]}
        for b in budgets:
            row[f"greedy@{b / 1e6:.2f}M"] = interpolate(greedy, b)
            row[f"majority@{b / 1e6:.2f}M"] = interpolate(vote, b) if vote else None
        row.update(final_greedy=greedy[-1][1], final_majority=vote[-1][1] if vote else None,
                   compute_tokens=greedy[-1][0])
        rows.append(row)
    return rows


def cmd_compare_learning(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ponder.report import _table, page
    from ponder.runs import write_atomic

    runs = [load_learning(Path(r)) for r in args.runs]
    common = min(r["points"][-1][0] for r in runs)
    budgets = [common / 2, common]
    rows = learning_table(runs, budgets)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for r in runs:
        xs = [c / 1e6 for c, _, _ in r["points"]]
        a1.plot(xs, [g for _, g, _ in r["points"]], "-o", label=r["run"])
        if all(m is not None for _, _, m in r["points"]):
            a2.plot(xs, [m for _, _, m in r["points"]], "-o", label=r["run"])
    for a, what in ((a1, "greedy"), (a2, f"majority@{runs[0]['majority_n']}")):
        a.axvline(common / 1e6, ls=":", color="grey")
        a.set_xlabel("learning compute (million tokens sampled + trained)")
        a.set_ylabel(f"{what} accuracy, held-out")
        a.grid(alpha=0.3)
    a1.legend(fontsize=7)
    fig.suptitle("Learners from one initialized policy, against learning compute", fontsize=10)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    cols = list(rows[0])
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(f"{v:.1%}" if isinstance(v, float) and k != "compute_tokens" else
                         ("-" if v is None else str(v)) for k, v in row.items()))
    html_out = out.with_suffix(".html")
    note = ("<p>Accuracy on held-out problems against learning compute (tokens sampled to make training data "
            "plus tokens trained, summed over rounds), every run from the same initialized policy. Columns "
            "@xM read each run's curve by linear interpolation between its evaluations at x million tokens; "
            "the larger budget is the least any run spent, so every learner is compared at equal compute. "
            "'-': the run did not spend that much.</p>")
    write_atomic(html_out, page("ponder: learners at equal training compute",
                                ["<h1>Learners at equal training compute</h1>", note, _table(rows, cols),
                                 f'<img src="{out.name}" alt="learning curves">']))
    print(f"\nplot: {out}\nreport: {html_out}")
    return 0


def add_parser(sub) -> None:
    """Register `ponder compare` on the main parser's subcommands."""
    c = sub.add_parser("compare", help="compare runs: accuracy against inference FLOPs, or (--learning) learners "
                                       "against learning compute",
                       description="Plot the search sweeps of several runs on one axis of inference FLOPs, or with "
                                   "--learning their learning curves and a table at equal training compute.")
    c.add_argument("runs", nargs="+", help="finished run directories (with a search sweep, or learning rounds)")
    c.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated methods to plot (default: {','.join(DEFAULT_METHODS)})")
    c.add_argument("--bins", type=int, default=5,
                   help="difficulty bins of the small_vs_big table (quantiles of the small policy's pass rate; default 5)")
    c.add_argument("--bins-at", type=float, default=1.0,
                   help="the difficulty bins compare searches within this multiple of the big policy's greedy FLOPs "
                        "(default 1)")
    c.add_argument("--learning", action="store_true",
                   help="compare learners instead: accuracy against learning compute, and a table at equal compute")
    c.add_argument("--out", default="runs/compare.png",
                   help="the plot file (default: runs/compare.png); --learning also writes the .html beside it")
    c.set_defaults(fn=lambda a: cmd_compare_learning(a) if a.learning else cmd_compare(a))
