"""The task's verifier exposed as an `OutcomeReward` (and, where the task knows them, gold step labels
as a `ProcessReward`).

The verifier is the gold reward: exact, but only available where the task can check an answer.
Trained reward models implement the same protocols, so searchers and learners take either.
"""

from __future__ import annotations

from collections.abc import Sequence

from ponder.reward.base import check_pairs
from ponder.tasks.base import Task, split_steps
from ponder.types import Problem


class VerifierReward:
    """The task's own `verify` as a reward in [0, 1]."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.calls = 0

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]:
        check_pairs(problems, texts)
        self.calls += len(texts)
        return [float(self.task.verify(p, t)) for p, t in zip(problems, texts)]


class GoldStepReward(VerifierReward):
    """Gold step labels (1 while every step so far is right, 0 from the first wrong one) as a
    process reward; the outcome score is the verifier's. Only for tasks with `step_labels`."""

    def step_scores(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]:
        check_pairs(problems, texts)
        self.calls += len(texts)
        out = []
        for p, t in zip(problems, texts):
            labels = self.task.step_labels(p, split_steps(t))
            if labels is None:
                raise ValueError(f"task {self.task.name!r} has no gold step labels")
            running, row = 1.0, []
            for x in labels:
                running = min(running, float(x))
                row.append(running)
            out.append(row)
        return out
