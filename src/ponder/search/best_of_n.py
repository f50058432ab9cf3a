"""Best-of-N: sample N complete solutions per problem and keep the one a reward scores highest.

With the task's verifier as the reward this is the oracle upper bound (pass@N); with a trained
reward model it is the practical method whose gains and over-optimisation the roadmap measures.
"""

from __future__ import annotations

from collections.abc import Sequence

from ponder.policy.base import Policy
from ponder.reward.base import OutcomeReward
from ponder.tasks.base import Task
from ponder.types import Cost, Problem, Sampling, SearchResult


def select_best(scores: Sequence[float]) -> int:
    """Index of the highest score; ties go to the earliest candidate."""
    if not scores:
        raise ValueError("select_best needs at least one score")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def best_of_n(problems: Sequence[Problem], policy: Policy, reward: OutcomeReward, task: Task, *, n: int,
              sampling: Sampling) -> list[SearchResult]:
    """Sample `n` solutions per problem, score each with `reward`, return the best per problem."""
    groups = policy.generate([p.prompt for p in problems], Sampling(**{**sampling.__dict__, "n": n}))
    results = []
    for problem, samples in zip(problems, groups):
        scores = reward.score([problem] * len(samples), [s.text for s in samples])
        i = select_best(scores)
        cost = Cost.total(s.cost for s in samples) + Cost(reward_calls=len(samples))
        results.append(SearchResult(problem_id=problem.id, text=samples[i].text,
                                    answer=task.extract_answer(samples[i].text), score=scores[i], cost=cost,
                                    candidates=tuple(samples)))
    return results
