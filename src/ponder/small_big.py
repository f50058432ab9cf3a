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

`difficulty_bins` then splits the problems into quantile bins of the small policy's own pass rate
(the sweep's oracle difficulty, as the paper's bins) and shows, bin by bin, the small policy greedy,
the small policy with the matched search, and the big policy greedy, each with its interval, and the
paired difference of the last two: where search pays and where size does.
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


def matched_search(small: dict, big: dict) -> dict | None:
    """The small policy's cross-fitted search at the big policy's greedy FLOPs: {"budget", "options",
    "picks" (the option scoring the even and the odd problems), "scores" (per problem)}; None when no
    option of the small run fits the budget."""
    check_pair(small, big)
    budget = _flops(big)["greedy@1"]
    flops = _flops(small)
    options = [k for k in small["per_problem"] if k in flops and flops[k] <= budget]
    if not options:
        return None
    n = len(small["problem_ids"])
    halves = [list(range(0, n, 2)), list(range(1, n, 2))]
    picks = [_pick(options, small["per_problem"], flops, halves[1]),  # scores the even problems
             _pick(options, small["per_problem"], flops, halves[0])]  # scores the odd ones
    scores = [small["per_problem"][picks[i % 2]][i] for i in range(n)]
    return {"budget": budget, "options": options, "picks": picks, "scores": scores,
            "flops": [flops[p] for p in picks]}


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


def difficulty_bins(small: dict, big: dict, *, bins: int = 5, seed: int = 0) -> list[dict]:
    """Per quantile bin of the small policy's pass rate (hardest last): problems, the pass-rate range,
    accuracy (with interval) of the small policy greedy, of its matched search and of the big policy
    greedy, and the paired difference matched search - big greedy with its verdict."""
    m = matched_search(small, big)
    difficulty = small.get("difficulty")
    if not difficulty or len(difficulty) != len(small["problem_ids"]):
        raise SweepMismatch(f"{small['name']}: its sweep kept no per-problem difficulty; run its recipe again")
    # bin 0 holds the lowest pass rates: number the bins easiest first
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

        big_greedy = big["per_problem"]["greedy@1"]
        row = {"bin": b + 1, "problems": len(idx), "pass_rate": [min(difficulty[i] for i in idx),
                                                                   max(difficulty[i] for i in idx)],
               "small_greedy": acc(small["per_problem"].get("greedy@1"), "small_greedy"),
               "small_search": acc(m["scores"] if m else None, "small_search"),
               "big_greedy": acc(big_greedy, "big_greedy")}
        if m is not None:
            d = paired([m["scores"][i] for i in idx], [big_greedy[i] for i in idx],
                       seed=stable_seed(seed, "bins", b, "diff"))
            row["search_minus_big"] = {"effect": d["diff"], "lo": d["lo"], "hi": d["hi"],
                                       "verdict": verdict(d["lo"], d["hi"])}
        rows.append(row)
    return rows
