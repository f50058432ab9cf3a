"""Outcome rewards: the `OutcomeReward` protocol and the task's verifier exposed as one.

The verifier is the gold reward: exact, but only available where the task can check an answer.
Trained reward models implement the same protocol, so searchers and learners take either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ponder.tasks.base import Task
from ponder.types import Problem


@runtime_checkable
class OutcomeReward(Protocol):
    """Scores whole solutions; higher is better. `calls` counts texts scored so far."""

    calls: int

    def score(self, problem: Problem, texts: Sequence[str]) -> list[float]: ...


class VerifierReward:
    """The task's own `verify` as a reward in [0, 1]."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.calls = 0

    def score(self, problem: Problem, texts: Sequence[str]) -> list[float]:
        self.calls += len(texts)
        return [float(self.task.verify(problem, t)) for t in texts]
