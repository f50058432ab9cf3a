"""Reward shaping: turning step scores and outcome scores into the per-step rewards a learner uses.

A process reward model gives one score per step: the estimated chance that the solution is still
on a correct path. Summing those scores as per-step rewards invites reward hacking: a policy can
raise its return by repeating a high-scoring but useless step ("On Designing Effective RL Reward
at Training Time for LLM Reasoning", Gao et al. 2024). The transforms here bound the return:

- `clip_process_rewards` (the paper's Clip): rewards are never positive, so extra steps never help;
- `delta_process_rewards` (the paper's Delta): rewards are differences of successive scores, so the
  return telescopes to a value that does not depend on the number of steps;
- `potential_shaping`: classic potential-based shaping (Ng, Harada and Russell 1999), which adds a
  dense signal without changing which policies are optimal.

`ShapedReward` wraps an outcome reward and a process reward with one of these transforms, scoring
whole texts (the `OutcomeReward` protocol) and giving the per-step rewards (`step_rewards`) for
learners that use dense rewards. Also here: a length penalty, a format reward and discounted
returns-to-go. Every function is pure and takes plain lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ponder.reward.base import OutcomeReward, ProcessReward, check_pairs
from ponder.tasks.base import Task, split_steps
from ponder.types import Problem

TRANSFORMS = ("clip", "delta", "potential", "raw")
DELTA_LAST = ("score", "zero")


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


def returns(rewards: Sequence[float], gamma: float = 1.0) -> list[float]:
    """Discounted returns-to-go: G_t = r_t + gamma * G_{t+1}, with G after the last step 0.

    `returns(r, g)[0]` is the discounted return of the whole trajectory.
    """
    _check_gamma(gamma)
    out = [0.0] * len(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


def potential_shaping(
    rewards: Sequence[float], potentials: Sequence[float], gamma: float = 1.0, terminal_zero: bool = True
) -> list[float]:
    """Potential-based shaping (Ng et al. 1999): r'_t = r_t + gamma * Phi(s_{t+1}) - Phi(s_t).

    `potentials` has one entry more than `rewards`: Phi(s_0), the value before the first step,
    then Phi after each step. With `terminal_zero` (the convention that keeps the optimal policies
    unchanged) the potential after the last step is taken as 0 whatever `potentials[-1]` says.
    The discounted return telescopes: sum_t gamma^t r'_t = sum_t gamma^t r_t + gamma^T Phi_T - Phi_0,
    with Phi_T = 0 under `terminal_zero`.
    """
    _check_gamma(gamma)
    if len(potentials) != len(rewards) + 1:
        raise ValueError(
            f"potentials must have one entry more than rewards (Phi before the first step, then after "
            f"each step): got {len(potentials)} potentials for {len(rewards)} rewards"
        )
    phi = [float(p) for p in potentials]
    if terminal_zero:
        phi[-1] = 0.0
    return [float(r) + gamma * phi[t + 1] - phi[t] for t, r in enumerate(rewards)]


def clip_process_rewards(step_scores: Sequence[float], threshold: float) -> list[float]:
    """The Clip mechanism (Gao et al. 2024): r_t = min(s_t - threshold, 0).

    Process rewards are never positive: a step scored at or above `threshold` earns 0, a weaker
    one is penalised by its shortfall. So no trajectory gains return by adding steps, and the
    return is at most 0 whatever its length.
    """
    return [min(float(s) - threshold, 0.0) for s in step_scores]


def delta_process_rewards(step_scores: Sequence[float], last: str = "score") -> list[float]:
    """The Delta mechanism (Gao et al. 2024): r_t = s_t - s_{t+1} for every step but the last.

    The paper's abstract states only the aim (the accumulated reward of any trajectory is bounded);
    what is implemented is this. With `last="score"` the last step earns its own score, r_T = s_T,
    so the sum telescopes to s_1, the first step's score, and the return-to-go from any step t is
    s_t. With `last="zero"` the last step earns 0 (for use beside an outcome reward that already
    judges the end), so the return is s_1 - s_T. Either way, for scores in [0, 1] the return lies
    in [-1, 1] however many steps there are. No steps, no rewards.
    """
    if last not in DELTA_LAST:
        raise ValueError(f"unknown last-step rule {last!r} (choose from {', '.join(DELTA_LAST)})")
    s = [float(x) for x in step_scores]
    if not s:
        return []
    out = [s[t] - s[t + 1] for t in range(len(s) - 1)]
    out.append(s[-1] if last == "score" else 0.0)
    return out


def length_penalty(n_tokens: int, target: int, coef: float) -> float:
    """A penalty of `coef` per token beyond `target`: -coef * max(0, n_tokens - target); 0 within it."""
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    if target < 0:
        raise ValueError(f"target must be >= 0, got {target}")
    if coef < 0:
        raise ValueError(f"coef must be >= 0 (it is the size of a penalty), got {coef}")
    return -coef * max(0, n_tokens - target)


def format_reward(text: str, task: Task, present: float = 1.0, missing: float = 0.0) -> float:
    """`present` (1) if the task extracts an answer from the text, else `missing` (0).

    For a pure penalty, pass present=0 and a negative `missing` (say -1): well-formed texts are
    then left alone and malformed ones lose reward. Correctness plays no part, only the format.
    """
    return float(present) if task.extract_answer(text) is not None else float(missing)


def shape_steps(
    step_scores: Sequence[float],
    outcome: float | None = None,
    transform: str = "clip",
    threshold: float = 0.5,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    gamma: float = 1.0,
    phi0: float = 0.0,
    delta_last: str = "score",
) -> list[float]:
    """Per-step rewards of one solution: `process_coef` times the transformed step scores, plus
    `outcome_coef * outcome` on the last step (when there is an outcome and at least one step).

    transform: clip (`clip_process_rewards` at `threshold`), delta (`delta_process_rewards` with
    `delta_last`), potential (the step scores as the potential Phi of `potential_shaping`, with
    Phi_0 = `phi0`, base rewards 0, terminal potential 0: dense, yet the return is only the outcome
    term minus `process_coef * phi0`), or raw (the scores themselves: the hackable baseline).
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r} (choose from {', '.join(TRANSFORMS)})")
    _check_gamma(gamma)
    scores = [float(s) for s in step_scores]
    if transform == "clip":
        process = clip_process_rewards(scores, threshold)
    elif transform == "delta":
        process = delta_process_rewards(scores, last=delta_last)
    elif transform == "potential":
        process = potential_shaping([0.0] * len(scores), [phi0, *scores], gamma=gamma, terminal_zero=True)
    else:
        process = scores
    out = [process_coef * r for r in process]
    if out and outcome is not None:
        out[-1] += outcome_coef * float(outcome)
    return out


class ShapedReward:
    """An outcome reward plus a shaped process reward, as one `OutcomeReward`.

    `step_rewards` gives each text's per-step rewards (see `shape_steps`; steps as `split_steps`
    cuts them) for learners that use dense rewards; `score` gives each text's total: the discounted
    return of those step rewards. A text with no steps scores just `outcome_coef` times its outcome.
    `outcome` may be None (process reward only). `calls` counts the texts this wrapper scored, once
    per text per call; the wrapped rewards keep their own counts.
    """

    def __init__(
        self,
        process: ProcessReward,
        outcome: OutcomeReward | None = None,
        transform: str = "clip",
        threshold: float = 0.5,
        process_coef: float = 1.0,
        outcome_coef: float = 1.0,
        gamma: float = 1.0,
        phi0: float = 0.0,
        delta_last: str = "score",
    ) -> None:
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {transform!r} (choose from {', '.join(TRANSFORMS)})")
        if delta_last not in DELTA_LAST:
            raise ValueError(f"unknown last-step rule {delta_last!r} (choose from {', '.join(DELTA_LAST)})")
        _check_gamma(gamma)
        if not callable(getattr(process, "step_scores", None)):
            raise TypeError(f"process reward {type(process).__name__} has no step_scores method")
        for name, value in (("threshold", threshold), ("process_coef", process_coef),
                            ("outcome_coef", outcome_coef), ("phi0", phi0)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        self.process = process
        self.outcome = outcome
        self.transform = transform
        self.threshold = threshold
        self.process_coef = process_coef
        self.outcome_coef = outcome_coef
        self.gamma = gamma
        self.phi0 = phi0
        self.delta_last = delta_last
        self.calls = 0

    def _parts(self, problems: Sequence[Problem], texts: Sequence[str]) -> tuple[list[list[float]], list[float | None]]:
        check_pairs(problems, texts)
        steps = self.process.step_scores(problems, texts)
        if len(steps) != len(texts):
            raise ValueError(f"process reward gave step scores for {len(steps)} texts, expected {len(texts)}")
        for i, (row, text) in enumerate(zip(steps, texts)):
            n = len(split_steps(text))
            if len(row) != n:
                raise ValueError(f"process reward gave {len(row)} step scores for text {i}, which has {n} steps")
        outcomes: list[float | None] = [None] * len(texts)
        if self.outcome is not None:
            outcomes = list(self.outcome.score(problems, texts))
            if len(outcomes) != len(texts):
                raise ValueError(f"outcome reward gave {len(outcomes)} scores, expected {len(texts)}")
        self.calls += len(texts)
        return steps, outcomes

    def _shape(self, row: Sequence[float], outcome: float | None) -> list[float]:
        return shape_steps(row, outcome, transform=self.transform, threshold=self.threshold,
                           process_coef=self.process_coef, outcome_coef=self.outcome_coef, gamma=self.gamma,
                           phi0=self.phi0, delta_last=self.delta_last)

    def step_rewards(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]:
        """For each pair, one shaped reward per step, the outcome term on the last step."""
        steps, outcomes = self._parts(problems, texts)
        return [self._shape(row, o) for row, o in zip(steps, outcomes)]

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]:
        """For each pair, the discounted return of its step rewards."""
        steps, outcomes = self._parts(problems, texts)
        out = []
        for row, o in zip(steps, outcomes):
            shaped = self._shape(row, o)
            if shaped:
                out.append(returns(shaped, self.gamma)[0])
            else:
                out.append(0.0 if o is None else self.outcome_coef * float(o))
        return out
