"""Step labels for training and evaluating process reward models, from three sources.

- gold: the task's own `step_labels` (only where the task knows the right trace);
- Monte-Carlo (Math-Shepherd / ReST-MCTS* style): from each step prefix, roll out K completions
  with the policy and label the step with the fraction that verify (soft) or with whether any does
  (hard). A prefix that already states an answer, or leaves the policy no room to continue, is
  verified directly, with no rollout;
- outcome: every step gets the solution's verified outcome (the labels an ORM or an implicit PRM
  learns from).

Monte-Carlo labelling batches every distinct prefix of every solution into one sampling pass (a
prefix shared by several solutions is rolled out once) and returns what the rollouts cost.
"""

from __future__ import annotations

from collections.abc import Sequence

from ponder.policy.base import Policy
from ponder.reward.model import RewardExample
from ponder.tasks.base import Task, is_verified, join_steps, split_steps
from ponder.types import Cost, Problem, Sampling

SOURCES = ("gold", "mc_soft", "mc_hard", "outcome")


def gold_labels(task: Task, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]:
    """The task's gold step labels; a clear error if the task has none."""
    out = []
    for p, t in zip(problems, texts):
        labels = task.step_labels(p, split_steps(t))
        if labels is None:
            raise ValueError(f"task {getattr(task, 'name', task)!r} has no gold step labels: use Monte-Carlo labels")
        out.append([float(x) for x in labels])
    return out


def outcome_labels(task: Task, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]:
    """Every step labelled with the verified outcome of the whole solution."""
    return [[task.verify(p, t)] * len(split_steps(t)) for p, t in zip(problems, texts)]


def mc_labels(task: Task, policy: Policy, problems: Sequence[Problem], texts: Sequence[str], *, rollouts: int,
              sampling: Sampling, hard: bool = False, chunk: int = 64, progress: bool = False
              ) -> tuple[list[list[float]], Cost]:
    """Monte-Carlo step labels: for each step prefix, the fraction of `rollouts` completions from it
    that verify (or, with `hard`, 1.0 if any does). Returns the labels and the rollouts' cost.

    With partial credit the soft label is the rollouts' mean score and the hard one asks `is_verified`."""
    from ponder.eval import generate_in_chunks  # eval imports reward; import here to avoid a cycle

    if rollouts < 1:
        raise ValueError(f"rollouts must be >= 1, got {rollouts}")
    prefixes: dict[tuple[str, str], float | None] = {}  # (problem id, prefix) -> label
    owner: dict[str, Problem] = {}
    per_text: list[list[tuple[str, str]]] = []
    for p, t in zip(problems, texts):
        owner[p.id] = p
        steps = split_steps(t)
        keys = []
        for i in range(1, len(steps) + 1):
            prefix = join_steps(steps[:i])
            key = (p.id, prefix)
            if key not in prefixes:  # a stated answer, or no room left to continue: the prefix is the outcome
                finished = task.extract_answer(prefix) is not None or policy.room(p.prompt + prefix) < 1
                prefixes[key] = task.verify(p, prefix) if finished else None
            keys.append(key)
        per_text.append(keys)
    todo = [k for k, v in prefixes.items() if v is None]
    cost = Cost()
    if todo:
        prompts = [owner[pid].prompt + prefix for pid, prefix in todo]
        groups = generate_in_chunks(policy, prompts, Sampling(**{**sampling.__dict__, "n": rollouts}), chunk=chunk,
                                    progress=progress, desc="mc labels")
        for (pid, prefix), group in zip(todo, groups):
            wins = [task.verify(owner[pid], prefix + s.text) for s in group]
            prefixes[(pid, prefix)] = float(any(is_verified(task, w) for w in wins)) if hard else sum(wins) / len(wins)
            cost = cost + Cost.total(s.cost for s in group)
    labels = [[float(prefixes[k]) for k in keys] for keys in per_text]
    return labels, cost


def label_steps(task: Task, policy: Policy, problems: Sequence[Problem], texts: Sequence[str], *, how: str,
                rollouts: int, sampling: Sampling, progress: bool = False) -> tuple[list[list[float]], Cost]:
    """Step labels of each solution by `how`: the task's gold labels ("gold", nothing spent), or Monte-Carlo
    rollouts of `policy` drawn with `sampling` ("mc_soft", "mc_hard"), and what the rollouts cost."""
    if how == "gold":
        return gold_labels(task, problems, texts), Cost()
    return mc_labels(task, policy, problems, texts, rollouts=rollouts, sampling=sampling, hard=how == "mc_hard",
                     progress=progress)


def label_examples(task: Task, problems: Sequence[Problem], texts: Sequence[str], labels: Sequence[Sequence[float]],
                   *, kind: str = "process") -> list[RewardExample]:
    """Training examples for a reward model: per-step targets (process) or the outcome (outcome);
    solutions with no steps are dropped."""
    out = []
    for p, t, row in zip(problems, texts, labels):
        if not row:
            continue
        targets = tuple(row) if kind == "process" else (float(task.verify(p, t)),)
        out.append(RewardExample(prompt=p.prompt, text=t, targets=targets))
    return out
