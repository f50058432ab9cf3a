"""Metrics for judging reward models: how well scores rank, find errors, and pick winners.

- `auroc`: how well outcome scores separate right from wrong solutions (rank-based, ties halved).
- `first_error_index`, `predicted_first_error`, `process_bench_f1`, `step_f1`: how well a process
  reward finds the first wrong step, in the style of ProcessBench (Zheng et al. 2024): accuracy on
  solutions that have an error (the predicted first-error step must be exactly the gold one),
  accuracy on correct solutions (the prediction must be "no error"), and their harmonic mean.
- `best_of_n_curve`: the accuracy best-of-N selection by a reward would reach, for each N.

Step labels follow `Task.step_labels`: 1 for a right step, 0 for a wrong one. All functions are
pure and take plain lists.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def _binary(values: Sequence[float], what: str) -> list[int]:
    out = []
    for i, v in enumerate(values):
        if v not in (0, 1):  # True/False and 0.0/1.0 compare equal to 0/1
            raise ValueError(f"{what} must be 0 or 1, got {v!r} at index {i}")
        out.append(int(v))
    return out


def _unit(values: Sequence[float], what: str) -> list[float]:
    out = []
    for i, v in enumerate(values):
        if not (isinstance(v, (int, float)) and 0 <= v <= 1):
            raise ValueError(f"{what} must be in [0, 1], got {v!r} at index {i}")
        out.append(float(v))
    return out


def _average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of `values` in increasing order, tied values sharing the average of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        shared = (start + end) / 2 + 1
        for j in range(start, end + 1):
            ranks[order[j]] = shared
        start = end + 1
    return ranks


def auroc(scores: Sequence[float], labels: Sequence[float]) -> float:
    """Area under the ROC curve: the chance that a random positive (label 1) outscores a random
    negative (label 0), a tie counting one half. Computed from average ranks (Mann-Whitney U).
    Raises if the lengths differ, a label is not 0/1, a score is not finite, or a class is missing."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    y = _binary(labels, "labels")
    for i, s in enumerate(scores):
        if not math.isfinite(s):
            raise ValueError(f"scores must be finite, got {s!r} at index {i}")
    n_pos = sum(y)
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes, got {n_pos} positives and {n_neg} negatives")
    ranks = _average_ranks([float(s) for s in scores])
    rank_sum = sum(r for r, label in zip(ranks, y) if label)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def first_error_index(step_labels: Sequence[float]) -> int:
    """Index of the first step labelled wrong (0), or -1 when every step is right (1)."""
    for i, label in enumerate(_binary(step_labels, "step labels")):
        if label == 0:
            return i
    return -1


def predicted_first_error(step_scores: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first step whose score is below `threshold` (judged wrong), or -1 if none is."""
    for i, s in enumerate(step_scores):
        if s < threshold:
            return i
    return -1


def process_bench_f1(pred_first_errors: Sequence[int], gold_first_errors: Sequence[int]) -> dict[str, float]:
    """ProcessBench-style scores from first-error indices (-1 meaning "no error").

    error_acc: on samples whose gold index is >= 0, the fraction predicted exactly;
    correct_acc: on samples whose gold index is -1, the fraction predicted -1;
    f1: the harmonic mean of the two (0 when both are 0).
    Also n_error and n_correct, the sample counts. An accuracy with no samples, and then f1, is nan.
    """
    if len(pred_first_errors) != len(gold_first_errors):
        raise ValueError(f"{len(pred_first_errors)} predictions but {len(gold_first_errors)} gold indices")
    for what, seq in (("predicted", pred_first_errors), ("gold", gold_first_errors)):
        for i, v in enumerate(seq):
            if isinstance(v, bool) or not isinstance(v, int | float) or not float(v).is_integer() or v < -1:
                raise ValueError(f"{what} first-error indices must be integers >= -1, got {v!r} at index {i}")
    hits = {True: 0, False: 0}
    counts = {True: 0, False: 0}
    for p, g in zip(pred_first_errors, gold_first_errors):
        erroneous = g >= 0
        counts[erroneous] += 1
        hits[erroneous] += int(p == g)
    error_acc = hits[True] / counts[True] if counts[True] else math.nan
    correct_acc = hits[False] / counts[False] if counts[False] else math.nan
    if math.isnan(error_acc) or math.isnan(correct_acc):
        f1 = math.nan
    elif error_acc + correct_acc == 0:
        f1 = 0.0
    else:
        f1 = 2 * error_acc * correct_acc / (error_acc + correct_acc)
    return {
        "error_acc": error_acc,
        "correct_acc": correct_acc,
        "f1": f1,
        "n_error": float(counts[True]),
        "n_correct": float(counts[False]),
    }


def step_f1(pred_labels: Sequence[float], gold_labels: Sequence[float]) -> float:
    """Binary F1 over steps with "wrong step" (label 0) as the positive class: 2TP / (2TP + FP + FN).

    Both are flat lists of 0/1 step labels (concatenate the solutions' labels). nan when neither
    list has a wrong step (F1 is undefined without positives)."""
    if len(pred_labels) != len(gold_labels):
        raise ValueError(f"{len(pred_labels)} predicted labels but {len(gold_labels)} gold labels")
    pred = _binary(pred_labels, "predicted labels")
    gold = _binary(gold_labels, "gold labels")
    tp = sum(1 for p, g in zip(pred, gold) if p == 0 and g == 0)
    fp = sum(1 for p, g in zip(pred, gold) if p == 0 and g == 1)
    fn = sum(1 for p, g in zip(pred, gold) if p == 1 and g == 0)
    if tp + fp + fn == 0:
        return math.nan
    return 2 * tp / (2 * tp + fp + fn)


def _pick_order(scores: Sequence[float]) -> list[int]:
    """Candidate indices from the one best-of-N would pick first: highest score, then lowest index."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def best_of_n_curve(
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[float]],
    ns: Sequence[int],
    trials: int | None = None,
    seed: int = 0,
) -> dict[int, float]:
    """Best-of-N accuracy for each N in `ns`: per problem, draw N of its candidates without
    replacement, pick the highest-scoring one (ties to the lowest index in the pool), and average
    its correctness over draws and then over problems.

    `scores[p]` and `correct[p]` (0/1, or partial credit in [0, 1]) describe problem p's pool of candidates; every pool must
    hold at least max(ns) candidates. With `trials=None` the expectation over draws is exact: the
    candidate ranked r-th (0-based) in pick order is chosen with probability C(m-1-r, N-1) / C(m, N)
    in a pool of m. With an integer `trials`, it is estimated from that many random draws per
    problem and N, from `random.Random(seed)`. With oracle scores (score = correctness) the exact
    curve is the unbiased pass@N estimate.
    """
    if len(scores) != len(correct):
        raise ValueError(f"scores for {len(scores)} problems but correctness for {len(correct)}")
    if not scores:
        raise ValueError("best_of_n_curve needs at least one problem")
    for n in ns:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"every N must be an integer >= 1, got {n!r}")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise ValueError(f"trials must be None (exact) or an integer >= 1, got {trials!r}")
    pools = []
    for p, (s, c) in enumerate(zip(scores, correct)):
        if len(s) != len(c):
            raise ValueError(f"problem {p}: {len(s)} scores but {len(c)} correctness values")
        for i, x in enumerate(s):
            if not math.isfinite(x):
                raise ValueError(f"problem {p}: scores must be finite, got {x!r} at index {i}")
        for n in ns:
            if n > len(s):
                raise ValueError(f"problem {p} has {len(s)} candidates, too few for N={n}")
        pools.append((list(s), _unit(c, f"problem {p}: correctness values")))
    rng = random.Random(seed)
    curve: dict[int, float] = {}
    for n in ns:
        total = 0.0
        for s, c in pools:
            m = len(s)
            if trials is None:
                denom = math.comb(m, n)
                order = _pick_order(s)
                total += sum(c[i] * math.comb(m - 1 - r, n - 1) for r, i in enumerate(order)) / denom
            else:
                hits = 0
                for _ in range(trials):
                    drawn = rng.sample(range(m), n)
                    hits += c[min(drawn, key=lambda i: (-s[i], i))]
                total += hits / trials
        curve[n] = total / len(pools)
    return curve
