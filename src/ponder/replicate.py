"""Seeds as an axis: one recipe run over several seeds, and the aggregate of their summaries.

`ponder run RECIPE --seeds K` makes

    runs/<name>/
      replicate.json     the seeds and the recipe (so --resume knows what to finish)
      seed<S>/           one complete, independent run per seed S = recipe seed, seed + 1, ..., seed + K - 1
      aggregate.json     every figure's mean, sd, min, max, spread and 95% t-interval over seeds, per-seed values kept
      report.html        the aggregate tables and claims, with links to each seed's own report

The seeds share nothing: each run builds its own task data, model, reward models and evaluation
problems from its own seed (every phase seeds itself from the run's seed and its name), and runs one
after another in its own directory. So the spread over seeds is the whole run-to-run variation of a
result, the choice of evaluation problems included, and the t-interval of the mean over seeds is the
interval a figure is reported with. A claim's aggregate verdict applies `ponder.stats.verdict` to the
t-interval of its effect over seeds; the per-seed verdicts are kept beside it.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from ponder.claims import UNITS, effect_text
from ponder.runs import RunDirError, write_atomic, write_json
from ponder.stats import across_seeds, verdict

MANIFEST = "replicate.json"


def seed_dir(root: Path, seed: int) -> Path:
    return Path(root) / f"seed{seed}"


def create_root(path: str | Path, cfg, seeds: list[int], *, force: bool) -> Path:
    """Make a fresh multi-seed run directory with its manifest and resolved recipe; an existing one is
    replaced only with `force`, and never when it is not a ponder run."""
    from ponder.config import to_dict, to_toml

    path = Path(path)
    if path.exists():
        if not force:
            raise RunDirError(f"{path} already exists; choose another --name, pass --force to overwrite it, "
                              f"or --resume {path} to continue it")
        ours = (path / "state.json").exists() or (path / MANIFEST).exists()
        if path.is_dir() and not ours and any(path.iterdir()):
            raise RunDirError(f"{path} exists and is not a ponder run; refusing to delete it")
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.mkdir(parents=True)
    write_atomic(path / "config.toml", to_toml(to_dict(cfg)))
    write_json(path / MANIFEST, {"seeds": list(seeds), "recipe": to_dict(cfg)})
    return path


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a multi-seed run directory, or None when `root` is a single run."""
    f = Path(root) / MANIFEST
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise RunDirError(f"{f}: unreadable ({e})") from None


BEHAVIOURS = ("check_rate", "correction_rate", "fixed_per_solution", "tokens_per_solution")
"""Behaviour rates of the evaluations' sampled solutions that a multi-seed run aggregates."""


def figures(summary: dict) -> dict[str, float]:
    """Every number of a summary worth aggregating, by a stable label: greedy and majority accuracy per
    evaluation, each selection method's accuracy, each sweep point's accuracy and tokens, reward-model
    quality, the sampled solutions' behaviour rates (`BEHAVIOURS`), each claim's effect, and how far
    init's greedy accuracy moved over its last 20% of steps."""
    out: dict[str, float] = {}
    if conv := summary.get("init_convergence"):
        out["init/greedy_at_80pct_steps"] = conv["greedy_accuracy"][0]
        out["init/moved_last_20pct_steps"] = conv["moved"]
    baseline = [{**summary["baseline"], "phase": "baseline"}] if summary.get("baseline") else []
    for p in [*summary.get("phases", []), *baseline]:
        out[f"greedy/{p['phase']}"] = p["greedy_accuracy"]
        if p.get("majority_accuracy") is not None:
            out[f"majority@{p['majority_n']}/{p['phase']}"] = p["majority_accuracy"]
        for metric in BEHAVIOURS:
            if (b := p.get("behaviours", {}).get("sampled", {}).get(metric)) and b.get("mean") is not None:
                out[f"{metric}/{p['phase']}"] = b["mean"]
    for phase, rows in summary.get("search", {}).items():
        for r in rows:
            out[f"{r['method']}@{r['n']}/{phase}"] = r["accuracy"]
    for r in summary.get("search_scaling", {}).get("rows", []):
        out[f"search/{r['method']}@{r['size']}"] = r["accuracy"]
        out[f"search/{r['method']}@{r['size']}/tokens_generated"] = r["tokens_generated"]
    for phase, models in summary.get("reward_models", {}).items():
        for name, m in models.items():
            for key in ("auroc", "first_error_f1"):
                if isinstance(m.get(key), (int, float)):
                    out[f"reward/{name}/{key}/{phase}"] = m[key]
    for c in summary.get("claims", []):
        if c.get("effect") is not None:
            out[f"claim/{c['id']}"] = c["effect"]
    return out


def aggregate(summaries: list[dict]) -> dict:
    """The aggregate of per-seed summaries (in seed order): each figure over seeds, and each claim with its
    per-seed verdicts and a verdict from the t-interval of its effect over seeds."""
    if not summaries:
        raise ValueError("aggregate: no seed summaries")
    per_seed = [figures(s) for s in summaries]
    labels = list(dict.fromkeys(k for f in per_seed for k in f))
    out_figures = {k: across_seeds([f.get(k) for f in per_seed]) for k in labels}
    claims = []
    for c in summaries[0].get("claims", []):
        rows = [next((x for x in s.get("claims", []) if x["id"] == c["id"]), None) for s in summaries]
        effects = across_seeds([None if r is None else r["effect"] for r in rows])
        verdicts = ["not measured" if r is None else r["verdict"] for r in rows]
        if effects["seeds"] >= 2:
            agg = verdict(effects["lo"], effects["hi"], c["direction"])
        else:  # one measured seed: its own verdict (a problem-bootstrap interval) is all there is
            agg = next((v for v in verdicts if v != "not measured"), "not measured")
        claims.append({"id": c["id"], "statement": c["statement"], "direction": c["direction"],
                       "evidence": c["evidence"], "effect": effects, "verdict": agg, "per_seed": verdicts,
                       "holds_in": sum(v == "holds" for v in verdicts)})
    return {"name": summaries[0].get("name"), "seeds": [s.get("seed") for s in summaries],
            "figures": out_figures, "claims": claims, "per_seed": per_seed}


def _fmt(label: str, v: float | None) -> str:
    if v is None:
        return ""
    if label.endswith("tokens_generated") or label.startswith("tokens_per_solution"):
        return f"{v:.0f}"
    if label.startswith(("reward/", "fixed_per_solution", *(f"claim/{cid}" for cid in UNITS))):
        return f"{v:.3f}"
    return f"{v * 100:.1f}"


def figure_row(label: str, agg: dict) -> dict:
    """One aggregate figure as display strings (accuracies in %, differences in points)."""
    lo_hi = f"[{_fmt(label, agg['lo'])}, {_fmt(label, agg['hi'])}]" if agg["lo"] is not None else ""
    return {"figure": label, "mean": _fmt(label, agg["mean"]), "95% interval (t, over seeds)": lo_hi,
            "sd": _fmt(label, agg["sd"]) if agg["sd"] is not None else "",
            "min-max": f"{_fmt(label, agg['min'])}-{_fmt(label, agg['max'])}" if agg["min"] is not None else "",
            "per seed": ", ".join(_fmt(label, v) for v in agg["values"])}


def write_aggregate(root: str | Path) -> dict:
    """Read every seed's summary under a multi-seed run directory and write aggregate.json and
    report.html; returns the aggregate. Seeds without a summary yet are named in the error."""
    from ponder.report import _table, page

    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None:
        raise RunDirError(f"{root}: not a multi-seed run directory (no {MANIFEST})")
    missing = [s for s in manifest["seeds"] if not (seed_dir(root, s) / "summary.json").is_file()]
    if missing:
        raise RunDirError(f"{root}: seeds {', '.join(map(str, missing))} have no summary.json yet; "
                          f"finish them with: ponder run --resume {root}")
    summaries = [json.loads((seed_dir(root, s) / "summary.json").read_text()) for s in manifest["seeds"]]
    agg = aggregate(summaries)
    write_json(root / "aggregate.json", agg)
    claim_rows = [{"claim": c["statement"], "mean effect [95% t-interval]": _claim_effect(c),
                   "verdict (over seeds)": c["verdict"], "per seed": ", ".join(c["per_seed"]),
                   "measured as": c["evidence"]} for c in agg["claims"]]
    fig_rows = [figure_row(k, v) for k, v in agg["figures"].items()]
    parts = [f"<h1>ponder: {html.escape(str(agg['name']))} over {len(agg['seeds'])} seeds</h1>",
             "<p>Seeds " + ", ".join(f'<a href="seed{s}/report.html">{s}</a>' for s in agg["seeds"]) +
             ": independent runs of the same recipe. Accuracies in %, claim effects in points (entropy: a "
             "correlation); intervals are Student-t intervals of the mean over seeds.</p>",
             "<h2>Claims</h2>", _table(claim_rows, list(claim_rows[0])) if claim_rows else "",
             "<h2>Every figure over seeds</h2>", _table(fig_rows, list(fig_rows[0])) if fig_rows else ""]
    write_atomic(root / "report.html", page(f"ponder: {agg['name']} x {len(agg['seeds'])} seeds", parts))
    return agg


def _claim_effect(c: dict) -> str:
    e = c["effect"]
    return effect_text(c["id"], e["mean"], e["lo"], e["hi"])
