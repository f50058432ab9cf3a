"""The reward protocols every searcher and learner takes, and the aggregations of step scores.

Rewards score (problem, text) pairs given as two parallel lists, so one call can batch many
problems through a reward model. An `OutcomeReward` gives one score per text; a `ProcessReward`
also gives one score per step (steps as `split_steps` cuts them; partial solutions are fine), and
its outcome score is an aggregation of those. `calls` counts the texts scored so far, which is
what `Cost.reward_calls` reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ponder.types import Problem

AGGREGATIONS = ("last", "min", "product", "mean")


@runtime_checkable
class OutcomeReward(Protocol):
    """Scores whole solutions; higher is better."""

    calls: int

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]:
        """One score per (problems[i], texts[i]) pair."""
        ...


@runtime_checkable
class ProcessReward(OutcomeReward, Protocol):
    """Scores every step prefix of a (possibly partial) solution."""

    def step_scores(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]:
        """For each pair, one score per step of `split_steps(texts[i])`: the estimated chance that
        the solution is still on a correct path after that step. An empty text has no steps."""
        ...


def aggregate(scores: Sequence[float], how: str = "min") -> float:
    """One outcome score from a solution's step scores.

    last: the score after the final step; min: the weakest step; product: all steps right (scores
    read as independent probabilities); mean: the average step. A solution with no steps scores 0.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r} (choose from {', '.join(AGGREGATIONS)})")
    if not scores:
        return 0.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "product":
        return float(math.prod(scores))
    return float(sum(scores) / len(scores))


def check_pairs(problems: Sequence[Problem], texts: Sequence[str]) -> None:
    """Raise if the two parallel lists differ in length."""
    if len(problems) != len(texts):
        raise ValueError(f"{len(problems)} problems but {len(texts)} texts: the lists must be parallel")
