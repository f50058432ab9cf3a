"""Reward model ensembles: several reward models combined into one conservative score.

A single learned reward model can be over-optimised: search or RL finds texts it scores highly
that the true reward does not. "Reward Model Ensembles Help Mitigate Overoptimization" (Coste et
al. 2023) combines the members' scores conservatively: the mean, the worst case over members (WCO),
or the mean minus a multiple of the members' disagreement (uncertainty-weighted, UWO).
`ensemble_scores` does the arithmetic on a members x items matrix; `RewardEnsemble` wraps reward
models as one `OutcomeReward` (and one `ProcessReward` when every member is one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Self

from ponder.reward.base import OutcomeReward, ProcessReward, check_pairs
from ponder.types import Problem

ENSEMBLE_RULES = ("mean", "wco", "uwo")


def ensemble_scores(matrix: Sequence[Sequence[float]], how: str = "mean", coef: float = 1.0) -> list[float]:
    """One score per item from a members x items matrix of scores (Coste et al. 2023).

    mean: the members' average; wco (worst-case optimisation): the lowest member score; uwo
    (uncertainty-weighted optimisation): mean - coef * variance, the variance being the population
    variance across members (divide by the number of members), so one member gives the mean.
    `coef` is used by uwo only. No items gives an empty list.
    """
    if how not in ENSEMBLE_RULES:
        raise ValueError(f"unknown ensemble rule {how!r} (choose from {', '.join(ENSEMBLE_RULES)})")
    if not math.isfinite(coef) or coef < 0:
        raise ValueError(f"ensemble coef must be a finite number >= 0, got {coef}")
    if len(matrix) == 0:
        raise ValueError("an ensemble needs at least one member, got an empty matrix")
    n_items = len(matrix[0])
    for m, row in enumerate(matrix):
        if len(row) != n_items:
            raise ValueError(f"member {m} scored {len(row)} items but member 0 scored {n_items}")
        for i, x in enumerate(row):
            if not math.isfinite(x):
                raise ValueError(f"member {m} gave a non-finite score {x} for item {i}")
    k = len(matrix)
    out = []
    for i in range(n_items):
        column = [float(row[i]) for row in matrix]
        if how == "wco":
            out.append(min(column))
            continue
        mean = sum(column) / k
        if how == "mean":
            out.append(mean)
        else:
            var = sum((x - mean) ** 2 for x in column) / k
            out.append(mean - coef * var)
    return out


class RewardEnsemble:
    """Several rewards as one `OutcomeReward`: every member scores every text, and
    `ensemble_scores(how, coef)` combines them.

    When every member is a `ProcessReward`, the constructor returns a `ProcessRewardEnsemble` (a
    subclass that also has `step_scores`, combining the members step by step), so that
    `isinstance(ensemble, ProcessReward)` tells the truth. `calls` counts texts scored by the
    ensemble, once per text per call however many members there are; each member keeps its own.
    """

    def __new__(cls, members: Sequence[OutcomeReward], how: str = "mean", coef: float = 1.0) -> Self:
        every_process = bool(members) and all(callable(getattr(m, "step_scores", None)) for m in members)
        target = ProcessRewardEnsemble if cls is RewardEnsemble and every_process else cls
        return super().__new__(target)

    def __init__(self, members: Sequence[OutcomeReward], how: str = "mean", coef: float = 1.0) -> None:
        if how not in ENSEMBLE_RULES:
            raise ValueError(f"unknown ensemble rule {how!r} (choose from {', '.join(ENSEMBLE_RULES)})")
        if not math.isfinite(coef) or coef < 0:
            raise ValueError(f"ensemble coef must be a finite number >= 0, got {coef}")
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member, got none")
        for i, m in enumerate(members):
            if not callable(getattr(m, "score", None)):
                raise TypeError(f"ensemble member {i} ({type(m).__name__}) has no score method")
        self.members = members
        self.how = how
        self.coef = coef
        self.calls = 0

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]:
        check_pairs(problems, texts)
        matrix = []
        for i, m in enumerate(self.members):
            row = list(m.score(problems, texts))
            if len(row) != len(texts):
                raise ValueError(f"ensemble member {i} gave {len(row)} scores for {len(texts)} texts")
            matrix.append(row)
        self.calls += len(texts)
        return ensemble_scores(matrix, self.how, self.coef)


class ProcessRewardEnsemble(RewardEnsemble):
    """A `RewardEnsemble` of process rewards: also combines step scores, step by step."""

    members: list[ProcessReward]

    def __init__(self, members: Sequence[ProcessReward], how: str = "mean", coef: float = 1.0) -> None:
        super().__init__(members, how, coef)
        for i, m in enumerate(self.members):
            if not callable(getattr(m, "step_scores", None)):
                raise TypeError(f"ensemble member {i} ({type(m).__name__}) has no step_scores method")

    def step_scores(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]:
        """For each pair, the members' step scores combined step by step; the members must agree on
        the number of steps of each text."""
        check_pairs(problems, texts)
        per_member = []
        for i, m in enumerate(self.members):
            rows = m.step_scores(problems, texts)
            if len(rows) != len(texts):
                raise ValueError(f"ensemble member {i} gave step scores for {len(rows)} texts, expected {len(texts)}")
            per_member.append(rows)
        out = []
        for t in range(len(texts)):
            lengths = [len(rows[t]) for rows in per_member]
            if len(set(lengths)) > 1:
                raise ValueError(f"ensemble members disagree on the number of steps of text {t}: {lengths}")
            out.append(ensemble_scores([rows[t] for rows in per_member], self.how, self.coef))
        self.calls += len(texts)
        return out
