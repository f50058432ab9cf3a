"""A small policy with search against a big policy decoding greedily, at matched inference FLOPs.

`ponder compare` reads two runs' test-time scaling sweeps and asks the question of "Scaling LLM
Test-Time Compute Optimally" (Snell et al., 2024): does a small policy that spends its inference
compute on search beat a policy several times larger that spends the same compute on one greedy
answer, and on which problems?

Both sweeps must be over the same held-out problems (same task, seed and `search.problems`); the
problem ids each run kept are compared first. The budget is the big policy's greedy FLOPs per problem
(each model's own size, every generated and encoded token). An option's FLOPs add its reward model's
scoring: ponder's reward models are the size of their policy, and each reward call is counted as one
forward pass over a whole solution with its prompt (the greedy row's tokens), an upper bound, since
beam search and MCTS score partial solutions.
Which of the small run's (method, size) options spends it is chosen without looking at the problems
it is scored on: the problems are split into two halves by index, and each half is scored with the
option most accurate on the *other* half among those whose mean FLOPs per problem fit the budget
(cross-fitting; ties go to the cheaper option). So the effect, a paired difference over all the
problems, carries no selection bias from picking the best-looking row.

`frontier` asks the same at larger budgets, with both policies searching: at each multiple of the big
policy's greedy FLOPs, each run's cross-fitted best option within it, paired. `difficulty_bins` splits
the problems into quantile bins of the small policy's own pass rate (the sweep's oracle difficulty, as
the paper's bins) and shows, bin by bin and at a budget (the big greedy's by default), the small
policy greedy, the small policy's search, the big policy greedy and the big policy's search, each with
its interval, and the paired difference small search - big greedy: where search pays and where size
does.
"""

from __future__ import annotations

from collections.abc import Sequence

from ponder.search.scaling import assign_bins
from ponder.stats import interval, paired, verdict
from ponder.tasks.base import stable_seed

STATEMENT = "a small policy with search beats a larger policy greedy at matched inference FLOPs"


class SweepMismatch(ValueError):
    """Two runs' sweeps that cannot be paired (different problems, or no per-problem scores kept)."""


def check_pair(small: dict, big: dict) -> None:
    """Raise SweepMismatch, naming the runs, unless both sweeps kept per-problem scores of the same problems
    in the same order and the big one has a greedy row."""
    for sw in (small, big):
        if not sw.get("problem_ids") or not sw.get("per_problem"):
            raise SweepMismatch(f"{sw['name']}: its sweep kept no problem ids or per-problem scores (a run made "
                                "before ponder compare paired runs); run its recipe again")
    if small["problem_ids"] != big["problem_ids"]:
        raise SweepMismatch(f"{small['name']} and {big['name']} swept different problems: pairing needs the same "
                            "task, seed and search.problems in both recipes")
    if "greedy@1" not in big["per_problem"]:
        raise SweepMismatch(f"{big['name']}: its sweep has no greedy row (add \"greedy\" to search.methods)")


def _flops(sweep: dict) -> dict[str, float]:
    """Each option's mean FLOPs per problem: the policy's, plus its reward calls at 2 x params per token of a
    whole greedy solution with its prompt (see the module docstring)."""
    greedy = next((r for r in sweep["rows"] if r["method"] == "greedy"), None)
    per_call = 2.0 * sweep["params"] * (greedy["tokens_generated"] + greedy.get("tokens_encoded", 0.0)) if greedy else 0.0
    out = {}
    for r in sweep["rows"]:
        calls = float(r.get("reward_calls") or 0.0)
        if calls and greedy is None:
            raise SweepMismatch(f"{sweep['name']}: its sweep has no greedy row to size its reward calls by")
        out[f"{r['method']}@{r['size']}"] = float(r["flops"]) + calls * per_call
    return out


def _pick(options: Sequence[str], scores: dict[str, list[float]], flops: dict[str, float], idx: Sequence[int]) -> str:
    """The option most accurate on problems `idx`; ties: the cheaper, then the first listed."""
    return max(options, key=lambda k: (sum(scores[k][i] for i in idx), -flops[k], -options.index(k)))


def cross_fit(sweep: dict, budget: float) -> dict | None:
    """`sweep`'s options within `budget` FLOPs a problem, each half of the problems scored by the one most
    accurate on the other half: {"budget", "options", "picks" (for the even and the odd problems), "flops"
    (theirs), "scores" (per problem)}; None when no option fits."""
    flops = _flops(sweep)
    options = [k for k in sweep["per_problem"] if k in flops and flops[k] <= budget]
    if not options:
        return None
    n = len(sweep["problem_ids"])
    halves = [list(range(0, n, 2)), list(range(1, n, 2))]
    picks = [_pick(options, sweep["per_problem"], flops, halves[1]),  # scores the even problems
             _pick(options, sweep["per_problem"], flops, halves[0])]  # scores the odd ones
    scores = [sweep["per_problem"][picks[i % 2]][i] for i in range(n)]
    return {"budget": budget, "options": options, "picks": picks, "scores": scores, "flops": [flops[p] for p in picks]}


def matched_search(small: dict, big: dict) -> dict | None:
    """The small policy's cross-fitted search at the big policy's greedy FLOPs (see `cross_fit`); None
    when no option of the small run fits that budget."""
    check_pair(small, big)
    return cross_fit(small, _flops(big)["greedy@1"])


def frontier(small: dict, big: dict, *, multiples: Sequence[float] = (1, 2, 4, 8, 16), seed: int = 0) -> list[dict]:
    """Both policies at equal budgets: at each multiple of the big policy's greedy FLOPs, each run's
    cross-fitted best option within it, their accuracies with intervals, and the paired difference
    small - big with its verdict. Rows where either run has no option that fits are left out."""
    check_pair(small, big)
    base, rows = _flops(big)["greedy@1"], []
    for k in multiples:
        a, b = cross_fit(small, k * base), cross_fit(big, k * base)
        if a is None or b is None:
            continue
        d = paired(a["scores"], b["scores"], seed=stable_seed(seed, "frontier", k))
        ia = interval(a["scores"], seed=stable_seed(seed, "frontier", k, "small"))
        ib = interval(b["scores"], seed=stable_seed(seed, "frontier", k, "big"))
        rows.append({"multiple": k, "budget": k * base, "small_picks": a["picks"], "big_picks": b["picks"],
                     "small": {"accuracy": ia["mean"], "lo": ia["lo"], "hi": ia["hi"]},
                     "big": {"accuracy": ib["mean"], "lo": ib["lo"], "hi": ib["hi"]},
                     "small_minus_big": {"effect": d["diff"], "lo": d["lo"], "hi": d["hi"],
                                         "verdict": verdict(d["lo"], d["hi"])}})
    return rows


def claim(small: dict, big: dict, *, seed: int = 0) -> dict:
    """The `small_vs_big` claim, measured: the matched search's per-problem scores against the big policy's
    greedy ones, paired. The same fields as every claim of `ponder.claims`."""
    base = {"id": "small_vs_big", "statement": STATEMENT, "direction": 1}
    m = matched_search(small, big)
    if m is None:
        budget = _flops(big)["greedy@1"]
        return {**base, "effect": None, "lo": None, "hi": None, "n": 0, "verdict": "not measured",
                "evidence": f"no option of {small['name']}'s sweep fits {big['name']}'s greedy budget "
                            f"({budget / 1e6:.1f} MFLOPs a problem)"}
    d = paired(m["scores"], big["per_problem"]["greedy@1"], seed=stable_seed(seed, "small_vs_big"))
    picks = " / ".join(f"{p} ({f / 1e6:.1f} MFLOPs)" for p, f in zip(m["picks"], m["flops"]))
    return {**base, "effect": d["diff"], "lo": d["lo"], "hi": d["hi"], "n": d["n"],
            "verdict": verdict(d["lo"], d["hi"]),
            "evidence": f"{small['name']} ({small['params'] / 1e6:.2f}M) with {picks}, each chosen on the other half of "
                        f"the problems among the options within {big['name']}'s greedy {m['budget'] / 1e6:.1f} MFLOPs (policy and reward model) - "
                        f"{big['name']} ({big['params'] / 1e6:.2f}M) greedy, {d['n']} problems"}


def difficulty_bins(small: dict, big: dict, *, bins: int = 5, multiple: float = 1.0, seed: int = 0) -> list[dict]:
    """Per quantile bin of the small policy's pass rate (easiest first): problems, the pass-rate range, and
    accuracy with interval of the small policy greedy, the big policy greedy, and each run's cross-fitted
    search within `multiple` x the big greedy's FLOPs; with the paired difference small search - big search
    and its verdict (at multiple 1 the big one's search is its greedy answer unless something cheaper wins)."""
    check_pair(small, big)
    difficulty = small.get("difficulty")
    if not difficulty or len(difficulty) != len(small["problem_ids"]):
        raise SweepMismatch(f"{small['name']}: its sweep kept no per-problem difficulty; run its recipe again")
    budget = multiple * _flops(big)["greedy@1"]
    a, b_ = cross_fit(small, budget), cross_fit(big, budget)
    # assign_bins gives 0 to the lowest pass rates: number the bins easiest first
    bin_of = [bins - 1 - b for b in assign_bins(difficulty, bins)]
    rows = []
    for b in range(bins):
        idx = [i for i, x in enumerate(bin_of) if x == b]
        if not idx:
            continue

        def acc(scores: Sequence[float] | None, label: str, idx: list[int] = idx, b: int = b) -> dict | None:
            if scores is None:
                return None
            iv = interval([scores[i] for i in idx], seed=stable_seed(seed, "bins", b, label))
            return {"accuracy": iv["mean"], "lo": iv["lo"], "hi": iv["hi"]}

        row = {"bin": b + 1, "problems": len(idx), "pass_rate": [min(difficulty[i] for i in idx),
                                                                   max(difficulty[i] for i in idx)],
               "small_greedy": acc(small["per_problem"].get("greedy@1"), "small_greedy"),
               "small_search": acc(a["scores"] if a else None, "small_search"),
               "big_greedy": acc(big["per_problem"]["greedy@1"], "big_greedy"),
               "big_search": acc(b_["scores"] if b_ else None, "big_search")}
        if a is not None and b_ is not None:
            d = paired([a["scores"][i] for i in idx], [b_["scores"][i] for i in idx],
                       seed=stable_seed(seed, "bins", b, "diff"))
            row["small_minus_big"] = {"effect": d["diff"], "lo": d["lo"], "hi": d["hi"],
                                      "verdict": verdict(d["lo"], d["hi"])}
        rows.append(row)
    return rows
