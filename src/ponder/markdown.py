"""Markdown tables of a run or of a multi-seed run, printed by `ponder report RUN --markdown`.

The README's figures are this module's output pasted in, never numbers typed by hand: the headline
table (each evaluated policy's greedy accuracy and its selection methods at the largest N), the
test-time scaling sweep and the claims with their computed verdicts. For a multi-seed run every cell
is the mean over seeds with the spread (min-max) beside it; for a single run, the accuracy with its
95% bootstrap interval over problems.
"""

from __future__ import annotations

import json
from pathlib import Path

from ponder.claims import effect_text
from ponder.convergence import CONVERGENCE_POINTS, convergence_line
from ponder.replicate import read_manifest

HEADLINE = ("oracle", "majority", "prm", "prm_vote", "prm0_vote", "orm", "orm_vote")
"""Columns of the accuracy tables, where a run has them (prm0_vote: the frozen first PRM, once rounds refit it)."""


def _pct_single(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return ""
    return f"{value * 100:.1f}" + (f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if ci else "")


def _pct_seeds(agg: dict | None) -> str:
    if not agg or agg["mean"] is None:
        return ""
    spread = f" ({agg['min'] * 100:.1f}-{agg['max'] * 100:.1f})" if agg["seeds"] > 1 else ""
    return f"{agg['mean'] * 100:.1f}{spread}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _claim_row(statement: str, effect: str, verdict: str, extra: str = "") -> list[str]:
    return [statement, effect, f"**{verdict}**" + extra]


def single_run(summary: dict) -> str:
    """The tables of one run: accuracies (%) with 95% bootstrap intervals, claims with verdicts."""
    phases = summary["phases"]
    n = max((r["n"] for rows in summary["search"].values() for r in rows), default=None)
    methods = [m for m in HEADLINE if any(r["method"] == m for rows in summary["search"].values() for r in rows)]
    from ponder.report import baseline_entry, behaviour_rows, claim_effect, shows_behaviours

    rows = []
    for p in [*phases, *([baseline_entry(summary)] if summary.get("baseline") else [])]:
        by = {(r["method"], r["n"]): r for r in p.get("search") or summary["search"].get(p["phase"], [])}
        rows.append([p["phase"], _pct_single(p["greedy_accuracy"], p.get("greedy_ci"))] +
                    [_pct_single(by[m, n]["accuracy"], by[m, n].get("ci")) if (m, n) in by else "" for m in methods])
    problems = phases[0].get("problems") if phases else None
    out = [f"Accuracy in % on {problems} held-out problems, [95% bootstrap interval], seed {summary['seed']}:", "",
           _table(["policy", "greedy", *[f"{m}@{n}" for m in methods]], rows)]
    if conv := summary.get("init_convergence"):
        out += ["", convergence_line(conv).replace("[init] greedy", "Initialization: greedy") + "."]
    scaling = summary.get("search_scaling", {}).get("rows", [])
    if scaling:
        out += ["", (f"Test-time scaling ({summary['search_scaling']['problems']} problems; tokens are means per "
                "problem):"), "", _table(["method", "size", "accuracy", "tokens generated", "tokens encoded"], [
                    [r["method"], str(r["size"]), _pct_single(r["accuracy"], r.get("ci")),
                     f"{r['tokens_generated']:.0f}", f"{r['tokens_encoded']:.0f}"] for r in scaling])]
    if shows_behaviours(summary):
        rows = behaviour_rows(summary)
        out += ["", "Behaviours (checks and corrections; 95% bootstrap intervals over problems):", "",
                _table(list(rows[0]), [[str(v) for v in r.values()] for r in rows])]
    out += ["", "Claims (paired differences, 95% bootstrap intervals, computed verdicts):", "",
            _table(["claim", "effect", "verdict"],
                   [_claim_row(c["statement"], claim_effect(c), c["verdict"]) for c in summary.get("claims", [])])]
    return "\n".join(out) + "\n"


def multi_seed(agg: dict) -> str:
    """The tables of a multi-seed run: mean over seeds (min-max), and claims judged over seeds."""
    figs = agg["figures"]
    phases = list(dict.fromkeys(k.split("/", 1)[1] for k in figs if k.startswith("greedy/")))
    n = max((int(k.split("/")[0].split("@")[1]) for k in figs if "@" in k.split("/")[0]
             and not k.startswith("search/") and k.split("/")[0].split("@")[0] in HEADLINE), default=None)
    methods = [m for m in HEADLINE if any(k == f"{m}@{n}/{p}" for p in phases for k in figs)]
    rows = [[p, _pct_seeds(figs.get(f"greedy/{p}"))] + [_pct_seeds(figs.get(f"{m}@{n}/{p}")) for m in methods]
            for p in phases]
    seeds = agg["seeds"]
    out = [(f"Accuracy in %, mean over {len(seeds)} seeds ({', '.join(map(str, seeds))}) with the range across "
           "seeds in brackets:"), "", _table(["policy", "greedy", *[f"{m}@{n}" for m in methods]], rows)]
    if moved := figs.get("init/moved_last_20pct_steps"):
        points = ", ".join(f"{100 * v:+.1f}" for v in moved["values"] if v is not None)
        unsettled = sum(v is not None and abs(v) > CONVERGENCE_POINTS + 1e-12 for v in moved["values"])
        out += ["", (f"Initialization: greedy accuracy moved {points} points over the last 20% of its SFT steps "
                f"(per seed); {unsettled} of {len(seeds)} seeds moved more than {100 * CONVERGENCE_POINTS:.0f}.")]
    if any(v["mean"] for k, v in figs.items() if k.startswith(("check_rate/", "correction_rate/"))):
        def rate(key: str, scale: float, digits: int) -> str:
            a = figs.get(key)
            if a is None or a["mean"] is None:
                return ""
            return f"{a['mean'] * scale:.{digits}f} ({a['min'] * scale:.{digits}f}-{a['max'] * scale:.{digits}f})"

        out += ["", "Behaviours of the samples at temperature, mean over seeds (range):", "", _table(
            ["policy", "checks (%)", "corrects (%)", "fixed / solution", "tokens / solution"],
            [[p, rate(f"check_rate/{p}", 100, 1), rate(f"correction_rate/{p}", 100, 1),
              rate(f"fixed_per_solution/{p}", 1, 3), rate(f"tokens_per_solution/{p}", 1, 1)]
             for p in phases if f"check_rate/{p}" in figs])]
    sweep = [k for k in figs if k.startswith("search/") and not k.endswith("/tokens_generated")]
    if sweep:
        out += ["", "Test-time scaling, mean over seeds (range):", "", _table(
            ["method@size", "accuracy", "tokens generated"],
            [[k.removeprefix("search/"), _pct_seeds(figs[k]),
              f"{figs[k + '/tokens_generated']['mean']:.0f}" if k + "/tokens_generated" in figs else ""]
             for k in sweep])]
    rows = []
    for c in agg["claims"]:
        e = c["effect"]
        effect = effect_text(c["id"], e["mean"], e["lo"], e["hi"])
        measured = sum(v != "not measured" for v in c["per_seed"])
        extra = f" (holds in {c['holds_in']} of {len(seeds)} seeds)" if measured else ""
        rows.append(_claim_row(c["statement"], effect, c["verdict"], extra))
    out += ["", "Claims: mean effect over seeds with its 95% t-interval, verdict computed from that interval:", "",
            _table(["claim", "effect", "verdict"], rows)]
    return "\n".join(out) + "\n"


def run_markdown(run_dir: str | Path) -> str:
    """Markdown for a run directory: a multi-seed one's aggregate.json, or a single run's summary.json."""
    run_dir = Path(run_dir)
    if read_manifest(run_dir) is not None:
        return multi_seed(json.loads((run_dir / "aggregate.json").read_text()))
    return single_run(json.loads((run_dir / "summary.json").read_text()))
