"""Answer voting: majority vote (self-consistency) and weighted majority vote.

Both take the extracted answers of N candidates (None for a candidate with no answer, which never
votes) and return the index of a representative candidate of the winning answer: the first one
that gave it, so the choice is deterministic. Ties go to the answer seen first.
"""

from __future__ import annotations

from collections.abc import Sequence


def weighted_vote(answers: Sequence[str | None], weights: Sequence[float]) -> int | None:
    """Index of the first candidate of the answer with the largest total weight, or None if no
    candidate has an answer."""
    if len(answers) != len(weights):
        raise ValueError(f"{len(answers)} answers but {len(weights)} weights")
    totals: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, (a, w) in enumerate(zip(answers, weights)):
        if a is None:
            continue
        totals[a] = totals.get(a, 0.0) + float(w)
        first.setdefault(a, i)
    if not totals:
        return None
    best = max(totals, key=lambda a: (totals[a], -first[a]))
    return first[best]


def majority_vote(answers: Sequence[str | None]) -> int | None:
    """Index of the first candidate of the most frequent answer, or None if none has an answer."""
    return weighted_vote(answers, [1.0] * len(answers))
