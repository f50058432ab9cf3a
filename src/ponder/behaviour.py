"""Behaviour metrics: how often a policy's solutions check and correct themselves, and what it bought.

A task that can read behaviours off a solution has `behaviours(problem, text)`, returning counts of
`checks`, `corrections`, of the corrections those that `fixed` a wrong step and those that `broke`
a right one, and the `errors` (wrong steps taken from a right position, corrected or not; arithmetic's
column strategy with `[task] check`). For each evaluation the loop keeps,
per problem, what its samples did (`per_problem`); the summary turns that into rates with bootstrap
intervals over problems (`summarize`):

  check_rate          share of solutions with at least one check line
  correction_rate     share of solutions that redid a step after a check
  fixed_per_solution  corrections that turned a wrong step right, per solution (successful ones)
  broke_per_solution  corrections that turned a right step wrong, per solution
  errors_per_solution wrong steps taken, per solution
  errors_fixed        share of the wrong steps that the solution itself corrected (None without errors):
                      how well the policy catches its errors, apart from how often it makes them
  accuracy_corrected  accuracy of the solutions that corrected a step (None when none did)
  accuracy_uncorrected  accuracy of the others
  tokens_per_solution mean tokens generated per solution

Greedy decoding and the evaluation's samples at temperature are kept apart: training that makes the
policy check more shows first in its samples, and in greedy only once checking is its likeliest move.
"""

from __future__ import annotations

from collections.abc import Sequence

from ponder.stats import interval, ratio_interval
from ponder.tasks.base import Task, stable_seed
from ponder.types import Problem, Sample

RATES = ("check_rate", "correction_rate", "fixed_per_solution", "broke_per_solution", "errors_per_solution",
         "tokens_per_solution")
"""Per-problem means whose interval is a plain bootstrap over problems."""


def has_behaviours(task: Task) -> bool:
    """Whether the task reads checks and corrections off a solution."""
    return callable(getattr(task, "behaviours", None))


def per_problem(task: Task, problems: Sequence[Problem], groups: Sequence[Sequence[Sample]]) -> dict[str, list[float]]:
    """For each problem, over its samples: the rates of `RATES`, the counts behind the accuracy of the
    samples that corrected a step and of those that did not (`corrected`, `corrected_right`,
    `uncorrected`, `uncorrected_right`), and those behind the share of errors fixed (`errors`, `fixed`)."""
    keys = (*RATES, "corrected", "corrected_right", "uncorrected", "uncorrected_right", "errors", "fixed")
    out: dict[str, list[float]] = {k: [] for k in keys}
    for problem, group in zip(problems, groups, strict=True):
        n = max(len(group), 1)
        row = dict.fromkeys(keys, 0.0)
        for sample in group:
            b = task.behaviours(problem, sample.text)
            right = float(task.verify(problem, sample.text))
            row["check_rate"] += (b["checks"] > 0) / n
            row["correction_rate"] += (b["corrections"] > 0) / n
            row["fixed_per_solution"] += b["fixed"] / n
            row["broke_per_solution"] += b["broke"] / n
            row["errors_per_solution"] += b["errors"] / n
            row["errors"] += b["errors"]
            row["fixed"] += b["fixed"]
            row["tokens_per_solution"] += len(sample.token_ids) / n
            kind = "corrected" if b["corrections"] else "uncorrected"
            row[kind] += 1
            row[f"{kind}_right"] += right
        for k in keys:
            out[k].append(row[k])
    return out


def summarize(rows: dict[str, list[float]], *, seed: int, label: str) -> dict:
    """The rates of one evaluation with their 95% intervals: {metric: {"mean", "lo", "hi", "n"}}; each
    interval's bootstrap is seeded from `seed`, `label` and the metric."""
    out = {k: interval(rows[k], seed=stable_seed(seed, label, k)) for k in RATES if k in rows}
    for kind in ("corrected", "uncorrected"):
        out[f"accuracy_{kind}"] = ratio_interval(rows[f"{kind}_right"], rows[kind],
                                                 seed=stable_seed(seed, label, kind))
    if "errors" in rows:  # runs from before errors were counted have neither
        out["errors_fixed"] = ratio_interval(rows["fixed"], rows["errors"], seed=stable_seed(seed, label, "errors"))
    return out
