"""Plain data types that flow round the loop: problems, samples, sampling settings, cost and budget.

Everything here is a small dataclass with no behaviour beyond arithmetic on costs, so that tasks,
policies, rewards, searchers and learners can exchange data without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One verifiable problem.

    `prompt` is the exact text the policy is conditioned on; `answer` is the canonical gold answer
    (a string, compared by the task's own `verify`); `meta` carries task-specific data (operands,
    the numbers of a Countdown puzzle, ...) that `verify` and `demonstration` may need.
    """

    id: str
    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Sampling:
    """How to sample from a policy."""

    n: int = 1
    """Samples per prompt."""
    temperature: float = 1.0
    """0 means greedy (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 keeps the whole distribution."""
    max_new_tokens: int = 128
    """Hard cap on generated tokens per sample."""
    stop_at_step: bool = False
    """Stop each sample right after it ends a step (a newline), for step-level search."""
    seed: int | None = None
    """Seed for this call's random draws; None uses the policy's own generator."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"Sampling.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"Sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"Sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"Sampling.max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Cost:
    """What some piece of work spent. Costs add up: `a + b`.

    tokens_generated: tokens sampled by the policy.
    tokens_encoded: tokens run through the model without being sampled (prompt prefill, re-reads).
    policy_calls: forward passes of the policy (one per decoding step of a batch, plus prefill).
    reward_calls: texts scored by a reward model or verifier.
    flops: approximate inference FLOPs (2 x parameters per token processed, plus attention).
    """

    tokens_generated: int = 0
    tokens_encoded: int = 0
    policy_calls: int = 0
    reward_calls: int = 0
    flops: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @staticmethod
    def total(costs) -> Cost:
        out = Cost()
        for c in costs:
            out = out + c
        return out

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Budget:
    """Caps on what a searcher may spend; None means uncapped. `allows(cost)` says if a cost fits."""

    tokens_generated: int | None = None
    tokens_encoded: int | None = None
    policy_calls: int | None = None
    reward_calls: int | None = None
    flops: float | None = None

    def allows(self, cost: Cost) -> bool:
        for f in fields(self):
            cap = getattr(self, f.name)
            if cap is not None and getattr(cost, f.name) > cap:
                return False
        return True


@dataclass(frozen=True)
class Sample:
    """One completion from a policy.

    `token_ids` are the generated tokens (no prompt), `logprobs` their log-probabilities under the
    untempered policy, `finish` why generation stopped ("eos", "step", "length"), and `cost` this
    sample's share of the call that produced it: summing the costs of all samples of a call gives
    the call's total.
    """

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish: str
    cost: Cost = Cost()


@dataclass(frozen=True)
class SearchResult:
    """What a searcher returns for one problem: the chosen text, its extracted answer and score,
    every candidate it considered (for learners), and what it spent."""

    problem_id: str
    text: str
    answer: str | None
    score: float
    cost: Cost
    candidates: tuple[Sample, ...] = ()
