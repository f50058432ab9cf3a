"""Diverse verifier tree search (DVTS): several independent step-level searches from distinct first steps.

Beam search concentrates its beams on whatever the process reward likes early, so its beams often
share a prefix. DVTS spends the same `width * expansions` samples per step but splits the beams into
`subtrees` independent subtrees: the first step samples the root `width * expansions` times and the
`subtrees` best distinct first steps each seed one subtree; from then on each subtree keeps its own
best `width // subtrees` children per step (1 by default: a greedy walk guided by the PRM, each beam
expanded into `expansions` children). Finished solutions from all subtrees are pooled and the answer
is chosen by PRM value or by value-weighted vote. The machinery and the budget rule are beam.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ponder.policy.base import Policy
from ponder.reward.base import ProcessReward
from ponder.search.beam import check_settings, results, run_step_search
from ponder.tasks.base import Task
from ponder.types import Budget, Problem, Sampling, SearchResult


@dataclass(frozen=True)
class DVTSConfig:
    """DVTS settings: `width` beams in all, split into `subtrees` subtrees (width divisible by subtrees;
    subtrees=None means one beam per subtree), each beam expanded into `expansions` children per step."""

    width: int = 4
    subtrees: int | None = None
    expansions: int = 4
    max_steps: int = 16
    score: str = "last"
    """How a child's PRM step scores become one value: last, min, product or mean."""
    select: str = "score"
    """Final choice among pooled finished candidates: best value ("score") or "weighted_vote"."""
    lookahead: int = 0
    """Score a child after rolling it out this many more steps greedily (0: score the child itself)."""

    def __post_init__(self) -> None:
        check_settings(self, "DVTSConfig")
        if self.subtrees is not None and self.width % self.subtrees:
            raise ValueError(f"DVTSConfig.subtrees must divide width={self.width}, got {self.subtrees}")

    @property
    def n_subtrees(self) -> int:
        return self.width if self.subtrees is None else self.subtrees


def dvts(problems: Sequence[Problem], policy: Policy, prm: ProcessReward, task: Task, *, config: DVTSConfig,
         sampling: Sampling, budget: Budget | None = None) -> list[SearchResult]:
    """Diverse verifier tree search; one SearchResult per problem, candidates pooled over subtrees.
    `sampling` gives temperature, top_p, the per-step token cap and seed; n and stop_at_step are ignored.
    Fewer subtrees start when the first step yields fewer distinct live steps than `subtrees`."""
    k = config.n_subtrees
    states = run_step_search(problems, policy, prm, task, width=config.width, expansions=config.expansions,
                             max_steps=config.max_steps, how=config.score, lookahead=config.lookahead,
                             sampling=sampling, budget=budget, group_width=config.width // k, split_first=k)
    return results(states, task, config.select)
