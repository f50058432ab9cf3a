"""The results of a run: summary.json, PNG plots and report.html, built from the run directory alone.

`ponder report RUN_DIR` rebuilds them at any time (also for a run that is still going), so the
report never holds anything the run directory does not.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ponder.behaviour import summarize as summarize_behaviours
from ponder.claims import accuracy_interval, claims, comparisons, effect_text
from ponder.convergence import convergence, convergence_line
from ponder.runs import write_atomic, write_json
from ponder.timing import phase_times, time_line


def _evaluation(name: str, res: dict, seed: int) -> dict:
    """One evaluation's headline figures: greedy and the largest majority vote with their intervals,
    and the behaviour rates where the task reads them."""
    majority = {r["n"]: r for r in res["search"] if r["method"] == "majority"}
    top = majority[max(majority)] if majority else None
    return {"greedy_accuracy": res["greedy_accuracy"],
            "greedy_ci": accuracy_interval(res.get("greedy_per_problem"), seed=seed, label=f"{name}/greedy"),
            "majority_accuracy": top["accuracy"] if top else None,
            "majority_ci": accuracy_interval(top.get("per_problem"), seed=seed,
                                             label=f"{name}/majority@{top['n']}") if top else None,
            "majority_n": max(majority) if majority else None,
            "problems": len(res.get("greedy_per_problem") or []) or None,
            **({"behaviours": {kind: summarize_behaviours(rows, seed=seed, label=f"{name}/{kind}")
                               for kind, rows in res["behaviours"].items()}} if "behaviours" in res else {})}


def _search_rows(name: str, res: dict, seed: int) -> list[dict]:
    """One evaluation's selection rows without their per-problem scores, each with its interval."""
    return [{**{k: v for k, v in r.items() if k != "per_problem"},
             "ci": accuracy_interval(r.get("per_problem"), seed=seed, label=f"{name}/{r['method']}@{r['n']}")}
            for r in res["search"]]


def build_summary(config: dict, results: dict, metrics: list[dict] | None = None) -> dict:
    """Machine-readable results: greedy accuracy per phase against cumulative training compute, and
    each search method's accuracy and generated tokens at each N, every accuracy with its 95% bootstrap
    interval over problems (`*_ci`, `ci`); the paired comparisons and the computed claims
    (`ponder.claims`). No wall-clock fields: equal seeds give equal files."""
    seed = int(config.get("seed") or 0)
    phases, search = [], {}
    train_tokens = sample_tokens = learn_tokens = 0
    init = results.get("init", {})
    train_tokens += init.get("train_tokens", 0)
    for name, res in results.items():
        if name.startswith("round"):
            train_tokens += res.get("train_tokens", 0)
            sample_tokens += res.get("sample_tokens", 0)
            learn_tokens += res.get("train_tokens", 0) + res.get("sample_tokens", 0)
        if name.startswith("eval_"):
            learned = name.removeprefix("eval_")
            phases.append({"phase": learned, **_evaluation(name, res, seed),
                           "train_tokens": train_tokens, "sample_tokens": sample_tokens,
                           "training_compute_tokens": train_tokens + sample_tokens,
                           "learning_compute_tokens": learn_tokens})
            search[learned] = _search_rows(name, res, seed)
    baseline = results.get("baseline")
    if baseline:
        baseline = {"settings": baseline["settings"], "train_tokens": baseline["train_tokens"],
                    "init_train_tokens": baseline["init_train_tokens"], "steps": baseline["steps"],
                    **_evaluation("baseline", baseline, seed),
                    "search": _search_rows("baseline", baseline, seed)}
    rounds = {k: v for k, v in results.items() if k.startswith("round")}
    reward_models = {name.removeprefix("eval_"): res["reward_models"] for name, res in results.items()
                     if name.startswith("eval_") and "reward_models" in res}
    scaling = dict(results.get("search", {}))
    per_problem = scaling.pop("per_problem", {})
    if scaling:
        scaling["rows"] = [{**r, "ci": accuracy_interval(per_problem.get(f"{r['method']}@{r['size']}"), seed=seed,
                                                         label=f"search/{r['method']}@{r['size']}")}
                           for r in scaling["rows"]]
    return {"name": config.get("name"), "seed": config.get("seed"), "task": config.get("task"),
            "model_params": init.get("params"), "skipped_data_lines": init.get("skipped_data_lines", 0),
            "init_convergence": convergence(results),
            "phases": phases, "search": search,
            "baseline": baseline or None,
            "reward_training": results.get("reward", {}).get("models", {}),
            "reward_models": reward_models, "search_scaling": scaling,
            "learner": config.get("learn", {}).get("learner"),
            "learning": [{"round": k, **{f: x for f, x in v.items() if isinstance(x, (int, float)) or x is None}}
                         for k, v in rounds.items()],
            "comparisons": comparisons(results, seed=seed),
            "claims": claims(results, seed=seed, curves=rl_curves(metrics or []))}


def convergence_html(conv: dict | None) -> str:
    """The report's line on whether init had settled (empty when it was not measured)."""
    if not conv:
        return ""
    text = html.escape(convergence_line(conv).removeprefix("[init] "))
    style = "" if conv["settled"] else ' style="color:#b00;font-weight:bold"'
    return f"<p{style}>Initialization: {text}.</p>"


def _plot_training(metrics: list[dict], out: Path) -> bool:
    series: dict[str, list[tuple[int, float]]] = {}
    for m in metrics:
        if "loss" in m and m.get("step", 0) > 0 and "reward_mean" not in m:  # NLL only: RL losses go below 0
            series.setdefault(m["phase"], []).append((m["step"], m["loss"]))
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    offset = 0
    for phase, pts in series.items():
        xs = [offset + s for s, _ in pts]
        ax.plot(xs, [v for _, v in pts], label=phase)
        offset = xs[-1]
    ax.set_xlabel("optimizer step (phases in order)")
    ax.set_ylabel("loss (NLL per completion token)")
    ax.set_yscale("log")
    ax.set_title("Training curves")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def error_bars(rows: list[dict], value: str = "accuracy", ci: str = "ci"):
    """Matplotlib's (2, n) yerr from each row's [lo, hi] interval; None when a row has none."""
    if not rows or any(not r.get(ci) for r in rows):
        return None
    return [[max(0.0, r[value] - r[ci][0]) for r in rows], [max(0.0, r[ci][1] - r[value]) for r in rows]]


def _plot_search(summary: dict, out: Path) -> bool:
    if not summary["search"]:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    shown = list(summary["search"].items())
    shown = [shown[0], shown[-1]] if len(shown) > 1 else shown
    styles = {"oracle": "-o", "majority": "-s"}
    for (phase, rows), color in zip(shown, ("tab:blue", "tab:red")):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = [r for r in rows if r["method"] == method]
            ax.errorbar([r["n"] for r in pts], [r["accuracy"] for r in pts], yerr=error_bars(pts),
                        fmt=styles.get(method, "-^"), color=color, capsize=2, label=f"{method} ({phase})",
                        alpha=0.9 if method != "oracle" else 0.6)
        greedy = next(p for p in summary["phases"] if p["phase"] == phase)
        ax.axhline(greedy["greedy_accuracy"], ls="--", color=color, lw=1, label=f"greedy ({phase})")
        if greedy.get("greedy_ci"):
            ax.axhspan(*greedy["greedy_ci"], color=color, alpha=0.08)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (samples per problem)")
    ax.set_ylabel("accuracy on held-out problems")
    ax.set_ylim(0, 1.02)
    ax.set_title("Test-time search: accuracy versus N")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def _plot_learning(summary: dict, out: Path) -> bool:
    if len(summary["phases"]) < 2:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [p["training_compute_tokens"] for p in summary["phases"]]
    ax.errorbar(xs, [p["greedy_accuracy"] for p in summary["phases"]],
                yerr=error_bars(summary["phases"], value="greedy_accuracy", ci="greedy_ci"), fmt="-o", capsize=3)
    for p, x in zip(summary["phases"], xs):
        ax.annotate(p["phase"], (x, p["greedy_accuracy"]), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set_xlabel("training compute (tokens trained + tokens sampled)")
    ax.set_ylabel("greedy accuracy on held-out problems")
    ax.set_title("Learning from search: accuracy versus training compute")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


BEHAVIOUR_COLUMNS = {"check_rate": "checks", "correction_rate": "corrects", "fixed_per_solution": "fixed / solution",
                     "broke_per_solution": "broke / solution", "errors_per_solution": "errors / solution",
                     "errors_fixed": "errors fixed", "accuracy_corrected": "accuracy if corrected",
                     "accuracy_uncorrected": "accuracy otherwise", "tokens_per_solution": "tokens / solution"}


def baseline_entry(summary: dict) -> dict:
    """The baseline policy (`init.baseline`) as a row beside the phases: its settings in its name."""
    b = summary["baseline"]
    return {**b, "phase": "baseline (" + ", ".join(f"{k} = {v}" for k, v in b["settings"].items()) + ")"}


def shows_behaviours(summary: dict) -> bool:
    """Whether any evaluation saw a check or a correction (a task without them shows no section)."""
    return any(b[m]["mean"] for p in summary["phases"] for b in p.get("behaviours", {}).values()
               for m in ("check_rate", "correction_rate"))


def behaviour_rows(summary: dict) -> list[dict]:
    """One row per evaluation and decoding (greedy, sampled): each behaviour metric with its interval."""
    rows = []
    for p in [*summary["phases"], *([baseline_entry(summary)] if summary.get("baseline") else [])]:
        for kind, b in p.get("behaviours", {}).items():
            row = {"phase": p["phase"], "decoding": kind}
            for metric, title in BEHAVIOUR_COLUMNS.items():
                v = b.get(metric)
                if v is None:  # a run from before the metric was kept
                    row[title] = ""
                elif metric == "tokens_per_solution":
                    row[title] = f"{v['mean']:.1f} [{v['lo']:.1f}, {v['hi']:.1f}]"
                elif metric in ("fixed_per_solution", "broke_per_solution", "errors_per_solution"):
                    row[title] = f"{v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]"
                else:
                    row[title] = pct(v["mean"], [v["lo"], v["hi"]] if v["mean"] is not None else None) or "none"
            rows.append(row)
    return rows


def _plot_behaviours(summary: dict, out: Path) -> bool:
    if not shows_behaviours(summary):
        return False
    phases = [p for p in summary["phases"] if "behaviours" in p]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    xs = range(len(phases))
    for metric, color in (("check_rate", "tab:blue"), ("correction_rate", "tab:orange"),
                          ("fixed_per_solution", "tab:green"), ("broke_per_solution", "tab:red")):
        pts = [p["behaviours"]["sampled"][metric] for p in phases]
        yerr = [[v["mean"] - v["lo"] for v in pts], [v["hi"] - v["mean"] for v in pts]]
        a1.errorbar(xs, [v["mean"] for v in pts], yerr=yerr, fmt="-o", capsize=3, color=color,
                    label=BEHAVIOUR_COLUMNS[metric])
    shares = [p["behaviours"]["sampled"].get("errors_fixed") or {"mean": None} for p in phases]
    if all(v["mean"] is not None for v in shares):  # a share of the wrong steps, not of the solutions
        a1.errorbar(xs, [v["mean"] for v in shares], yerr=[[v["mean"] - v["lo"] for v in shares],
                                                           [v["hi"] - v["mean"] for v in shares]],
                    fmt="--s", capsize=3, color="tab:gray", label="errors fixed (share of wrong steps)")
    pts = [p["behaviours"]["sampled"]["tokens_per_solution"] for p in phases]
    a2.errorbar(xs, [v["mean"] for v in pts], yerr=[[v["mean"] - v["lo"] for v in pts], [v["hi"] - v["mean"] for v in pts]],
                fmt="-o", capsize=3, color="tab:purple")
    a1.set_ylabel("share of sampled solutions (or of errors)")
    a1.legend(fontsize=8)
    a2.set_ylabel("tokens per sampled solution")
    for a in (a1, a2):
        a.set_xticks(list(xs), [p["phase"] for p in phases])
    fig.suptitle("Behaviours: checks and corrections of the evaluation's samples")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def rl_curves(metrics: list[dict]) -> dict[str, list[float]]:
    """Per-step entropy and mean reward of the on-policy learning rounds, rounds in order."""
    rows = [m for m in metrics if m.get("phase", "").startswith("round") and m.get("entropy") is not None
            and "reward_mean" in m]
    return {"entropy": [m["entropy"] for m in rows], "reward_mean": [m["reward_mean"] for m in rows]}


def _plot_entropy(metrics: list[dict], out: Path) -> bool:
    curves = rl_curves(metrics)
    if not curves["entropy"]:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    steps = range(1, len(curves["entropy"]) + 1)
    a1.plot(steps, curves["entropy"])
    a1.set_ylabel("policy entropy (nats per token, sampled tokens)")
    a2.plot(steps, curves["reward_mean"], color="tab:green")
    a2.set_ylabel("mean reward of the batch")
    for a in (a1, a2):
        a.set_xlabel("learning step (rounds in order)")
    fig.suptitle("On-policy learning: entropy and reward")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def reward_model_rows(metrics: dict[str, dict]) -> list[dict]:
    """One flat row per reward model: AUROC, first-error F1 and best-of-N accuracy per N."""
    rows = []
    for name, m in metrics.items():
        row = {"model": name, "auroc": m.get("auroc"), "first_error_f1": m.get("first_error_f1", "")}
        row.update({f"best_of_{n}": acc for n, acc in m.get("best_of_n", {}).items()})
        rows.append(row)
    return rows


def reward_section(metrics: dict[str, dict], title: str) -> str:
    """HTML table of reward-model metrics (see `reward_model_rows`)."""
    rows = reward_model_rows(metrics)
    if not rows:
        return ""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    return f"<h2>{html.escape(title)}</h2>" + _table(rows, cols) + (
        "<p>AUROC: how well the score separates verified from failed samples. First-error F1 (process models, "
        "ProcessBench style): harmonic mean of the accuracy of locating the first wrong step in failed "
        "solutions and of finding no wrong step in correct ones, against the task's gold step labels. "
        "best_of_N: verifier accuracy of the sample the model ranks first among N (expected over draws).</p>")


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def pct(value: float | None, ci: list[float] | None = None) -> str:
    """An accuracy as a percentage, with its interval where known: '79.0% [76.4, 81.5]'."""
    if value is None:
        return ""
    return f"{value:.1%}" + (f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if ci else "")


def points(value: float | None, lo: float | None = None, hi: float | None = None) -> str:
    """A difference of accuracies in points, with its interval: '+5.5 [+2.1, +8.9]'."""
    if value is None:
        return ""
    return f"{value * 100:+.1f}" + (f" [{lo * 100:+.1f}, {hi * 100:+.1f}]" if lo is not None else "")


def claim_effect(c: dict) -> str:
    """A claim's effect and interval as text, in its unit (`ponder.claims.effect_text`)."""
    return effect_text(c["id"], c["effect"], c["lo"], c["hi"])


def claims_section(claims: list[dict]) -> str:
    """The roadmap's headline claims, each with its measured effect, interval and computed verdict."""
    if not claims:
        return ""
    rows = [{"claim": c["statement"], "effect [95% interval]": claim_effect(c), "verdict": c["verdict"],
             "measured as": c["evidence"]} for c in claims]
    return ("<h2>Claims</h2><p>Each effect is a paired difference on the same problems with its 95% bootstrap "
            "interval; the verdict is computed: <b>holds</b> when the interval lies on the claimed side of zero, "
            "<b>contradicted</b> when on the other, <b>within noise</b> when it contains zero.</p>"
            + _table(rows, list(rows[0])))


def comparisons_section(comparisons: list[dict]) -> str:
    """Every paired comparison of the run: A - B on the same problems, with the difference's interval."""
    if not comparisons:
        return ""
    rows = [{"where": c["where"], "A": c["a"], "B": c["b"], "A - B (points) [95%]": points(c["diff"], c["lo"], c["hi"]),
             "problems": c["n"]} for c in comparisons]
    return "<h2>Paired comparisons</h2>" + _table(rows, list(rows[0]))


def page(title: str, parts: list[str]) -> str:
    """A self-contained HTML page."""
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}th{background:#f3f3f3}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(run_dir: str | Path) -> dict:
    """Write summary.json, plots/*.png and report.html for a run directory; returns the summary."""
    run_dir = Path(run_dir)
    state = json.loads((run_dir / "state.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    metrics = []
    if (run_dir / "metrics.jsonl").exists():
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = build_summary(config, state["results"], metrics)
    write_json(run_dir / "summary.json", summary)
    times = phase_times(metrics)
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    made = [name for name, fn in (("training.png", lambda p: _plot_training(metrics, p)),
                                  ("search.png", lambda p: _plot_search(summary, p)),
                                  ("learning.png", lambda p: _plot_learning(summary, p)),
                                  ("entropy.png", lambda p: _plot_entropy(metrics, p)),
                                  ("behaviours.png", lambda p: _plot_behaviours(summary, p))) if fn(plots / name)]
    search_rows = [{"phase": ph, **r, "accuracy": pct(r["accuracy"], r.get("ci"))}
                   for ph, rows in summary["search"].items() for r in rows]
    phase_rows = [{**p, "greedy_accuracy": pct(p["greedy_accuracy"], p.get("greedy_ci")),
                   "majority_accuracy": pct(p["majority_accuracy"], p.get("majority_ci"))} for p in summary["phases"]]
    baseline = [] if not summary.get("baseline") else [
        "<h2>Against a baseline policy</h2>",
        ("<p>The baseline: the same model, seed and SFT settings on the demonstrations of the task with the "
         "settings named, trained for as many demonstration tokens as init; evaluated on the same problems.</p>"),
        _table([{"policy": p["phase"], "train_tokens": p["train_tokens"],
                 "greedy_accuracy": pct(p["greedy_accuracy"], p.get("greedy_ci")),
                 "majority_accuracy": pct(p["majority_accuracy"], p.get("majority_ci")), "majority_n": p["majority_n"]}
                for p in (summary["phases"][0], baseline_entry(summary))],
               ["policy", "train_tokens", "greedy_accuracy", "majority_accuracy", "majority_n"])]
    samples = sorted((run_dir / "samples").glob("*.jsonl")) if (run_dir / "samples").exists() else []
    parts = [
        f"<h1>ponder run: {html.escape(str(summary['name']))}</h1>",
        (f"<p>task <code>{html.escape(json.dumps(summary['task']))}</code>, seed {summary['seed']}, "
         f"model {summary['model_params'] or 0:,} parameters</p>"),
        convergence_html(summary.get("init_convergence")),
        claims_section(summary["claims"]),
        "<h2>Greedy accuracy after each phase</h2>",
        "<p>Accuracies with their 95% bootstrap interval over the held-out problems.</p>",
        _table(phase_rows, ["phase", "problems", "greedy_accuracy", "majority_accuracy", "train_tokens",
                            "sample_tokens", "learning_compute_tokens"]),
        *baseline,
        "<h2>Search at test time</h2>",
        _table(search_rows, ["phase", "method", "n", "accuracy", "tokens_generated"]),
    ]
    scaling = summary["search_scaling"]
    if scaling:
        from ponder.search.scaling import plot_scaling

        if plot_scaling(scaling["rows"] + scaling.get("compute_optimal", []), plots / "scaling.png"):
            made.append("scaling.png")
        rows = [{**r, "accuracy": pct(r["accuracy"], r.get("ci"))} for r in scaling["rows"]]
        parts += [f"<h2>Test-time scaling ({scaling['problems']} held-out problems, means per problem)</h2>",
                  _table(rows, ["method", "size", "accuracy", "tokens_generated", "tokens_encoded",
                                           "encode_ratio", "reward_calls", "flops"]),
                  "<h3>Compute-optimal: the best method per difficulty bin at each budget</h3>",
                  _table(scaling.get("compute_optimal", []), ["budget", "tokens_generated", "accuracy", "choice"])]
    for extra in sorted((run_dir / "search").glob("*.json")) if (run_dir / "search").is_dir() else []:
        res = json.loads(extra.read_text())
        ck = res["checkpoint"]
        title = f"Test-time scaling of checkpoint {html.escape(ck)} (<code>ponder search</code>, {res['problems']} problems)"
        parts += [f"<h2>{title}</h2>",
                  _table(res["rows"], ["method", "size", "accuracy", "tokens_generated", "tokens_encoded",
                                       "encode_ratio", "reward_calls", "flops"]),
                  _table(res.get("compute_optimal", []), ["budget", "tokens_generated", "accuracy", "choice"])]
        if (plots / f"scaling_{ck}.png").is_file():
            parts.append(f'<img src="plots/scaling_{html.escape(ck)}.png" alt="scaling {html.escape(ck)}">')
    for phase, metrics in summary["reward_models"].items():
        parts.append(reward_section(metrics, f"Reward models on the {phase} policy's samples"))
    if shows_behaviours(summary):
        rows = behaviour_rows(summary)
        parts += ["<h2>Behaviours: checks and corrections</h2>",
                  ("<p>Per evaluation, greedy and the samples at temperature: the share of solutions that check a "
                  "step and that redo one, the corrections that turned a wrong step right (fixed) or a right step "
                  "wrong (broke) per solution, accuracy with and without a correction, and solution length; 95% "
                  "bootstrap intervals over problems.</p>"), _table(rows, list(rows[0]))]
    if summary["learning"]:
        cols = list(dict.fromkeys(c for r in summary["learning"] for c in r if c not in ("sample_flops", "step")))
        parts += [f"<h2>Learning rounds ({html.escape(str(summary.get('learner')))})</h2>",
                  _table(summary["learning"], cols)]
    parts.append(comparisons_section(summary["comparisons"]))
    if times:
        parts += ["<h2>Where the time went</h2>",
                  ("<p>Wall-clock seconds per phase in this process, split by what the code was doing: sampling "
                   "(the policy's decode), training (optimizer steps), scoring (forward passes without gradients: "
                   "reward models, log-probs) and the rest. Not part of summary.json: they vary from run to run. "
                   f"{html.escape(time_line(times))}.</p>"),
                  _table(times, list(times[0]))]
    parts += [f'<h2>{n.removesuffix(".png").title()}</h2><img src="plots/{n}" alt="{n}">' for n in made]
    if samples:
        parts.append("<h2>Samples</h2><ul>" + "".join(
            f'<li><a href="samples/{s.name}">{html.escape(s.name)}</a></li>' for s in samples) + "</ul>")
    write_atomic(run_dir / "report.html", page(f"ponder: {summary['name']}", parts))
    return summary
