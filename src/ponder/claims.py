"""The roadmap's headline results as computed claims, and the paired comparisons a report draws.

Each claim reads a run's results (the per-problem scores the phases keep), measures one effect as a
paired difference on the same problems, and judges it with `ponder.stats.verdict`: `holds`,
`contradicted`, `within noise`, or `not measured` where the recipe did not produce what the claim
needs. Which rows a claim compares is fixed here, before any number is seen, so no claim is judged
by picking its best-looking row:

  search_scaling      majority vote of the largest N against one sample (majority@1), first evaluation
  weighted_scaling    the same for the PRM-weighted vote (ORM-weighted without a PRM): where the vote
                      follows the policy's mode (a systematic error), majority cannot scale but a vote a
                      reward model weighs can
  weighted_vote       PRM-weighted vote (ORM-weighted without a PRM) against plain majority, largest N
  prm_search          PRM beam search at its largest width against best-of-N by the PRM at the smallest N
                      that generates at least as many tokens (best-of-N gets the compute advantage)
  small_vs_big        a small policy with search against a larger one greedy at matched FLOPs: two runs,
                      so never measured inside one (`ponder compare` measures it, `ponder.small_big`)
  learning            greedy accuracy after the last learning round against the initialized policy;
                      one `learning_round<k>` claim per round against the round before
  prm_follows         a PRM that learning rounds refitted to the policy (distill, self_evolve) against the
                      reward phase's frozen PRM: their weighted votes of the largest N on the last
                      evaluation's samples (the current policy's)
  self_correction     trained self-correction at equal samples: the initialized policy's majority vote of
                      the largest N (greedy without samples) against the baseline's (`init.baseline`,
                      the same model trained on as many tokens of demonstrations without the behaviour)
  learned_corrections successful self-corrections (corrections that fixed a wrong step) per sampled
                      solution after the last learning round against the initialized policy's
  entropy             on-policy learners: the correlation of per-step entropy and mean reward (negative:
                      entropy falls as reward rises), bootstrapped over steps
  overoptimization    best-of-N by a proxy reward, graded by the verifier, at the largest N against the
                      best N below it (`ponder reward eval --overopt` measures it, not a run)

Effects are differences of accuracies (fractions; 0.05 is 5 points), except `entropy` (a correlation)
and `learned_corrections` (a difference of successful corrections per solution); `effect_text` writes
each in its unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from ponder.stats import interval, paired, percentile_interval, verdict
from ponder.tasks.base import stable_seed

MIN_STEPS = 6  # fewest on-policy steps an entropy-reward correlation is judged from


UNITS = {"entropy": "r", "learned_corrections": "per solution"}
"""Claims whose effect is not a difference of accuracies, and the unit `effect_text` writes it in."""


def effect_text(cid: str, effect: float | None, lo: float | None = None, hi: float | None = None) -> str:
    """A claim's effect with its interval, in its unit: '+5.5 [+2.1, +8.9] points' for accuracies,
    'r = -0.62 [-0.80, -0.31]' for a correlation, '+0.120 [+0.080, +0.160] per solution' for a rate."""
    if effect is None:
        return ""
    unit = UNITS.get(cid, "points")
    scale, fmt = (100, "{:+.1f}") if unit == "points" else (1, "{:+.2f}" if unit == "r" else "{:+.3f}")
    iv = f" [{fmt.format(lo * scale)}, {fmt.format(hi * scale)}]" if lo is not None and hi is not None else ""
    text = fmt.format(effect * scale) + iv
    return f"r = {text}" if unit == "r" else f"{text} {unit}"


def _claim(cid: str, statement: str, measured: dict | None, evidence: str, direction: int = 1) -> dict:
    if measured is None:
        return {"id": cid, "statement": statement, "effect": None, "lo": None, "hi": None, "n": 0,
                "direction": direction, "verdict": "not measured", "evidence": evidence}
    effect = measured.get("diff", measured.get("effect"))
    return {"id": cid, "statement": statement, "effect": effect, "lo": measured["lo"], "hi": measured["hi"],
            "n": measured["n"], "direction": direction, "verdict": verdict(measured["lo"], measured["hi"], direction),
            "evidence": evidence}


def eval_phases(results: dict) -> list[str]:
    """The run's evaluation phases in the order they ran (eval_init, eval_round1, ...)."""
    return [k for k in results if k.startswith("eval_")]


def _scores(res: dict, method: str, n: int) -> list[float] | None:
    if method == "greedy":
        return res.get("greedy_per_problem")
    row = next((r for r in res.get("search", []) if r["method"] == method and r["n"] == n), None)
    return None if row is None else row.get("per_problem")


def _ns(res: dict, method: str) -> list[int]:
    return sorted(r["n"] for r in res.get("search", []) if r["method"] == method)


def search_scaling(results: dict, seed: int) -> dict:
    statement = "test-time search: accuracy rises with the number of samples (majority vote)"
    res = results.get("eval_init", {})
    ns = _ns(res, "majority")
    a, b = (_scores(res, "majority", ns[-1]), _scores(res, "majority", ns[0])) if len(ns) > 1 else (None, None)
    if a is None or b is None:
        return _claim("search_scaling", statement, None, "needs eval.n with two sizes or more")
    return _claim("search_scaling", statement, paired(a, b, seed=stable_seed(seed, "search_scaling")),
                  f"majority@{ns[-1]} - majority@{ns[0]}, eval_init, {len(a)} problems")


def weighted_scaling(results: dict, seed: int) -> dict:
    statement = "test-time search: accuracy rises with the number of samples (reward-weighted vote)"
    res = results.get("eval_init", {})
    for model in ("prm", "orm"):
        ns = _ns(res, f"{model}_vote")
        if len(ns) > 1:
            a, b = _scores(res, f"{model}_vote", ns[-1]), _scores(res, f"{model}_vote", ns[0])
            if a is not None and b is not None:
                return _claim("weighted_scaling", statement,
                              paired(a, b, seed=stable_seed(seed, "weighted_scaling")),
                              f"{model}_vote@{ns[-1]} - {model}_vote@{ns[0]}, eval_init, {len(a)} problems")
    return _claim("weighted_scaling", statement, None, "needs a trained reward model and eval.n with two sizes or more")


def weighted_vote(results: dict, seed: int) -> dict:
    statement = "a reward-weighted vote beats plain majority vote"
    res = results.get("eval_init", {})
    for model in ("prm", "orm"):
        ns = _ns(res, f"{model}_vote")
        if ns and ns[-1] in _ns(res, "majority"):
            a, b = _scores(res, f"{model}_vote", ns[-1]), _scores(res, "majority", ns[-1])
            if a is not None and b is not None:
                return _claim("weighted_vote", statement, paired(a, b, seed=stable_seed(seed, "weighted_vote")),
                              f"{model}_vote@{ns[-1]} - majority@{ns[-1]}, eval_init, {len(a)} problems")
    return _claim("weighted_vote", statement, None, "needs a trained reward model (reward.models)")


def prm_search(results: dict, seed: int) -> dict:
    statement = "PRM-guided beam search beats best-of-N at equal tokens"
    sweep = results.get("search", {})
    rows, scores = sweep.get("rows", []), sweep.get("per_problem", {})
    beams = sorted((r for r in rows if r["method"] == "beam"), key=lambda r: r["size"])
    bons = sorted((r for r in rows if r["method"] == "best_of_n"), key=lambda r: r["size"])
    if not beams or not bons or not scores:
        return _claim("prm_search", statement, None, "needs search.methods with beam and best_of_n")
    beam = beams[-1]
    bon = next((r for r in bons if r["tokens_generated"] >= beam["tokens_generated"]), bons[-1])
    a, b = scores.get(f"beam@{beam['size']}"), scores.get(f"best_of_n@{bon['size']}")
    if a is None or b is None:
        return _claim("prm_search", statement, None, "the sweep kept no per-problem scores")
    return _claim("prm_search", statement, paired(a, b, seed=stable_seed(seed, "prm_search")),
                  f"beam@{beam['size']} ({beam['tokens_generated']:.0f} tokens) - best_of_n@{bon['size']} "
                  f"({bon['tokens_generated']:.0f} tokens), {len(a)} problems")


def small_vs_big() -> dict:
    return _claim("small_vs_big", "a small policy with search beats a larger policy greedy at matched inference "
                  "FLOPs", None, "two runs: ponder compare RUN_SMALL RUN_BIG")


def learning(results: dict, seed: int) -> list[dict]:
    """The headline (last round against init) and one claim per round against the round before."""
    phases = [p for p in eval_phases(results) if results[p].get("greedy_per_problem") is not None]
    statement = "learning from search raises greedy accuracy"
    if len(phases) < 2 or phases[0] != "eval_init":
        return [_claim("learning", statement, None, "needs learn.rounds >= 1")]
    first, last = results[phases[0]]["greedy_per_problem"], results[phases[-1]]["greedy_per_problem"]
    out = [_claim("learning", statement, paired(last, first, seed=stable_seed(seed, "learning")),
                  f"greedy {phases[-1].removeprefix('eval_')} - greedy init, {len(first)} problems")]
    for before, after in pairwise(phases):
        a, b = results[after]["greedy_per_problem"], results[before]["greedy_per_problem"]
        name = after.removeprefix("eval_")
        out.append(_claim(f"learning_{name}", f"{name} raises greedy accuracy over {before.removeprefix('eval_')}",
                          paired(a, b, seed=stable_seed(seed, "learning", name)),
                          f"greedy {name} - greedy {before.removeprefix('eval_')}, {len(a)} problems"))
    return out


def prm_follows(results: dict, seed: int) -> dict:
    statement = "a PRM that follows the policy beats the frozen first PRM on the current policy's samples"
    phases = [p for p in eval_phases(results) if _ns(results[p], "prm0_vote")]
    if not phases:
        return _claim("prm_follows", statement, None, "needs learning rounds that refit the PRM (self_evolve, "
                      "or distill with prm_steps)")
    res = results[phases[-1]]
    n = _ns(res, "prm0_vote")[-1]
    a, b = _scores(res, "prm_vote", n), _scores(res, "prm0_vote", n)
    if a is None or b is None:
        return _claim("prm_follows", statement, None, "the evaluation kept no per-problem scores")
    return _claim("prm_follows", statement, paired(a, b, seed=stable_seed(seed, "prm_follows")),
                  f"prm_vote@{n} - prm0_vote@{n}, {phases[-1]}, {len(a)} problems")


def self_correction(results: dict, seed: int) -> dict:
    statement = "trained self-correction raises accuracy at equal samples"
    init, base = results.get("eval_init", {}), results.get("baseline")
    if not base or not init:
        return _claim("self_correction", statement, None,
                      "needs init.baseline: a plain policy trained on as many demonstration tokens")
    ns = sorted(set(_ns(init, "majority")) & set(_ns(base, "majority")))
    method, n = ("majority", ns[-1]) if ns else ("greedy", 1)
    a, b = _scores(init, method, n), _scores(base, method, n)
    if a is None or b is None:
        return _claim("self_correction", statement, None, "the evaluations kept no per-problem scores")
    label = "greedy" if method == "greedy" else f"majority@{n}"
    settings = ", ".join(f"{k} = {v}" for k, v in base.get("settings", {}).items())
    return _claim("self_correction", statement, paired(a, b, seed=stable_seed(seed, "self_correction")),
                  f"{label} init - {label} baseline ({settings}, {base.get('train_tokens', 0)} against "
                  f"{base.get('init_train_tokens', 0)} training tokens), {len(a)} problems")


def learned_corrections(results: dict, seed: int) -> dict:
    statement = "reinforcement learning raises the rate of successful self-corrections"
    phases = [p for p in eval_phases(results) if "behaviours" in results[p]]
    if len(phases) < 2 or phases[0] != "eval_init":
        return _claim("learned_corrections", statement, None,
                      "needs a task that reads behaviours (arithmetic with task.check) and learn.rounds >= 1")
    last = phases[-1]
    if not any(sum(results[p]["behaviours"]["sampled"]["check_rate"]) for p in (phases[0], last)):
        return _claim("learned_corrections", statement, None,
                      "no solution checked a step, before learning or after (arithmetic with task.check teaches it)")
    a = results[last]["behaviours"]["sampled"]["fixed_per_solution"]
    b = results["eval_init"]["behaviours"]["sampled"]["fixed_per_solution"]
    return _claim("learned_corrections", statement, paired(a, b, seed=stable_seed(seed, "learned_corrections")),
                  f"corrections that fixed a wrong step per sampled solution, {last.removeprefix('eval_')} - init, "
                  f"{len(a)} problems")


def correlation_interval(x: Sequence[float], y: Sequence[float], *, seed: int, resamples: int = 2000) -> dict:
    """Pearson correlation of paired series and its bootstrap interval (pairs resampled together)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size != ys.size or xs.size < 3:
        raise ValueError(f"correlation_interval: needs two series of equal length >= 3, got {xs.size} and {ys.size}")

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        sa, sb = a.std(), b.std()
        return 0.0 if sa == 0 or sb == 0 else float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, xs.size, size=(resamples, xs.size))
    boots = np.array([corr(xs[i], ys[i]) for i in idx])
    lo, hi = percentile_interval(boots)
    return {"effect": corr(xs, ys), "lo": lo, "hi": hi, "n": int(xs.size)}


def entropy(curves: dict | None, seed: int) -> dict:
    statement = "policy entropy falls as reward rises (on-policy learning)"
    ent, rew = (curves or {}).get("entropy", []), (curves or {}).get("reward_mean", [])
    if len(ent) < MIN_STEPS:
        return _claim("entropy", statement, None, "needs an on-policy learner (reinforce, rloo, grpo, dr_grpo, ppo)",
                      direction=-1)
    return _claim("entropy", statement, correlation_interval(ent, rew, seed=stable_seed(seed, "entropy")),
                  f"correlation of entropy and mean reward over {len(ent)} learning steps", direction=-1)


def overoptimization() -> dict:
    return _claim("overoptimization", "an over-optimised proxy reward diverges from the verifier", None,
                  "ponder reward eval --overopt", direction=-1)


def claims(results: dict, *, seed: int, curves: dict | None = None) -> list[dict]:
    """Every headline claim of the roadmap, measured from a run's results where it can be."""
    return [search_scaling(results, seed), weighted_scaling(results, seed), weighted_vote(results, seed), prm_search(results, seed), small_vs_big(),
            *learning(results, seed), prm_follows(results, seed), self_correction(results, seed), learned_corrections(results, seed),
            entropy(curves, seed), overoptimization()]


def comparisons(results: dict, *, seed: int) -> list[dict]:
    """The paired differences a report shows: at each evaluation, every method at the largest N against
    greedy; each evaluation's greedy and methods against the evaluation before; each point of the search
    sweep against its greedy row."""
    out = []
    phases = eval_phases(results)

    def add(a_label: str, b_label: str, a, b, where: str) -> None:
        if a is not None and b is not None:
            out.append({"a": a_label, "b": b_label, "where": where,
                        **paired(a, b, seed=stable_seed(seed, "compare", where, a_label, b_label))})

    for phase in phases:
        res = results[phase]
        n = max((r["n"] for r in res.get("search", [])), default=None)
        for method in dict.fromkeys(r["method"] for r in res.get("search", [])):
            add(f"{method}@{n}", "greedy", _scores(res, method, n), _scores(res, "greedy", 1), phase)
    for before, after in pairwise(phases):
        ra, rb = results[after], results[before]
        n = max((r["n"] for r in ra.get("search", [])), default=None)
        for method in ["greedy", *dict.fromkeys(r["method"] for r in ra.get("search", []))]:
            size = 1 if method == "greedy" else n
            label = "greedy" if method == "greedy" else f"{method}@{n}"
            add(f"{label} {after.removeprefix('eval_')}", f"{label} {before.removeprefix('eval_')}",
                _scores(ra, method, size), _scores(rb, method, size), f"{after} vs {before}")
    sweep = results.get("search", {}).get("per_problem", {})
    for key, scores in sweep.items():
        if key != "greedy@1":
            add(key, "greedy@1", scores, sweep.get("greedy@1"), "search")
    return out


def accuracy_interval(scores: Sequence[float] | None, *, seed: int, label: str) -> list[float] | None:
    """[lo, hi] of an accuracy's bootstrap interval, or None without per-problem scores."""
    if not scores:
        return None
    iv = interval(scores, seed=stable_seed(seed, "interval", label))
    return [iv["lo"], iv["hi"]]
