"""Uncertainty for every figure ponder reports: bootstrap intervals over problems, paired differences,
verdicts on claims, and the aggregate of several seeds.

- `interval(values)`: the mean of per-problem scores (1/0 for verified/failed, or partial credit in
  [0, 1]) and its 95% percentile-bootstrap interval, resampling problems with a seeded generator.
- `ratio_interval(num, den)`: a rate among only some samples (sum of numerators over sum of
  denominators across problems) and its bootstrap interval, problems resampled.
- `paired(a, b)`: the mean of a - b over the *same* problems and the bootstrap interval of that
  difference. Pairing removes the variance that problem difficulty shares between two methods, so a
  3-point gain on 1,000 problems can be decided where two unpaired intervals would overlap.
- `verdict(lo, hi, direction)`: "holds" when the interval of the effect lies wholly on the claimed
  side of zero, "contradicted" when it lies wholly on the other side, "within noise" when it
  contains zero, "not measured" when there is nothing to judge. The rule is the whole of the logic:
  nothing is ever judged by hand.
- `across_seeds(values)`: mean, standard deviation, range and the t-interval of the mean over seeds
  (each seed a full independent run), for the aggregate of `ponder run --seeds K`.

Intervals are reproducible: the bootstrap generator is seeded from the caller's seed and a label, so
the same run gives the same intervals; the resample count (2,000) keeps the Monte-Carlo error of an
interval's end near 0.1 points on 1,000 problems.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
VERDICTS = ("holds", "contradicted", "within noise", "not measured")

# two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal's 1.96)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a flat sequence of per-problem scores, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: per-problem scores must be finite")
    return arr


def bootstrap_means(values: Sequence[float], *, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """Means of `resamples` bootstrap resamples of `values` (problems drawn with replacement)."""
    arr = _as_array(values, "bootstrap")
    if arr.size == 0:
        raise ValueError("bootstrap: no values")
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    chunk = max(1, 2_000_000 // arr.size)  # bounded memory for large evaluations
    for i in range(0, resamples, chunk):
        k = min(chunk, resamples - i)
        out[i : i + k] = arr[rng.integers(0, arr.size, size=(k, arr.size))].mean(axis=1)
    return out


def percentile_interval(means: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` interval of bootstrap means (percentile method)."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def interval(values: Sequence[float], *, seed: int, level: float = LEVEL, resamples: int = RESAMPLES) -> dict:
    """{"mean", "lo", "hi", "n"}: the mean of per-problem scores and its bootstrap interval."""
    arr = _as_array(values, "interval")
    if arr.size == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    lo, hi = percentile_interval(bootstrap_means(arr, seed=seed, resamples=resamples), level)
    return {"mean": float(arr.mean()), "lo": lo, "hi": hi, "n": int(arr.size)}


def ratio_interval(numerators: Sequence[float], denominators: Sequence[float], *, seed: int, level: float = LEVEL,
                   resamples: int = RESAMPLES) -> dict:
    """{"mean", "lo", "hi", "n"}: sum(numerators) / sum(denominators) over problems (a rate among only
    some of each problem's samples, such as the accuracy of the samples that corrected a step), with its
    bootstrap interval (problems resampled, numerator and denominator together). No denominator: None."""
    num, den = _as_array(numerators, "ratio numerators"), _as_array(denominators, "ratio denominators")
    if num.size != den.size:
        raise ValueError(f"ratio_interval: {num.size} numerators but {den.size} denominators")
    if den.sum() <= 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.size, size=(resamples, num.size))
    sums = den[idx].sum(axis=1)
    ratios = num[idx].sum(axis=1)[sums > 0] / sums[sums > 0]  # a resample with no denominator has no ratio
    lo, hi = percentile_interval(ratios, level)
    return {"mean": float(num.sum() / den.sum()), "lo": lo, "hi": hi, "n": int(den.sum())}


def paired(a: Sequence[float], b: Sequence[float], *, seed: int, level: float = LEVEL,
           resamples: int = RESAMPLES) -> dict:
    """{"diff", "lo", "hi", "n"}: mean of a - b over the same problems, with the bootstrap interval of the
    difference (both methods resampled with the same problem indices)."""
    x, y = _as_array(a, "paired a"), _as_array(b, "paired b")
    if x.size != y.size:
        raise ValueError(f"paired: the two methods were scored on different problem sets ({x.size} and {y.size} "
                         "problems); a paired difference needs the same problems in the same order")
    if x.size == 0:
        return {"diff": None, "lo": None, "hi": None, "n": 0}
    d = x - y
    lo, hi = percentile_interval(bootstrap_means(d, seed=seed, resamples=resamples), level)
    return {"diff": float(d.mean()), "lo": lo, "hi": hi, "n": int(d.size)}


def verdict(lo: float | None, hi: float | None, direction: int = 1) -> str:
    """Judge a claim from the interval [lo, hi] of its effect. `direction` is +1 when the claim says the
    effect is positive (A beats B), -1 when it says negative (A falls below B)."""
    if direction not in (1, -1):
        raise ValueError(f"verdict: direction must be +1 or -1, got {direction!r}")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "not measured"
    if lo > hi:
        raise ValueError(f"verdict: interval [{lo}, {hi}] has lo > hi")
    lo, hi = (lo, hi) if direction == 1 else (-hi, -lo)
    if lo > 0:
        return "holds"
    if hi < 0:
        return "contradicted"
    return "within noise"


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (the normal's beyond 30)."""
    if df < 1:
        raise ValueError(f"t_quantile: df must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def across_seeds(values: Sequence[float | None]) -> dict:
    """Mean, sample standard deviation, min, max, spread (max - min) and the 95% t-interval of the mean
    over independent seeds. Missing values (None) are left out and counted; one seed has no interval."""
    present = [float(v) for v in values if v is not None]
    out = {"mean": None, "sd": None, "min": None, "max": None, "spread": None, "lo": None, "hi": None,
           "seeds": len(present), "values": list(values)}
    if not present:
        return out
    arr = np.asarray(present)
    out.update(mean=float(arr.mean()), min=float(arr.min()), max=float(arr.max()),
               spread=float(arr.max() - arr.min()))
    if arr.size > 1:
        sd = float(arr.std(ddof=1))
        half = t_quantile(arr.size - 1) * sd / math.sqrt(arr.size)
        out.update(sd=sd, lo=out["mean"] - half, hi=out["mean"] + half)
    return out
