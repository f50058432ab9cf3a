"""Expert iteration (ReST-EM / STaR without rationalisation): sample, keep verified, fine-tune, repeat.

One round: draw fresh training problems, sample `samples` solutions per problem from the current
policy, score them with an outcome reward (the verifier by default), keep the distinct solutions
that reach `threshold` (at most `keep_per_problem` per problem), and run SFT on them. The policy is
fine-tuned in place, continuing from the previous round, rather than restarted from the base model
as in ReST-EM: on a small model the rounds are short, and restarting would throw away most of the
compute the round just spent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ponder.learn.base import Learner, Round
from ponder.learn.sft import train_sft
from ponder.policy.base import Policy
from ponder.reward.base import OutcomeReward
from ponder.tasks.base import verified_at
from ponder.training import Checkpointing, SFTConfig, steps_for
from ponder.types import Cost, Problem, Sample, Sampling


@dataclass(frozen=True)
class ExpertIterationConfig:
    """Settings of expert iteration."""

    samples: int = 4
    """Solutions sampled per problem."""
    temperature: float = 1.0
    """Sampling temperature."""
    max_new_tokens: int = 96
    """Generation cap per sample."""
    threshold: float | None = None
    """Keep a solution whose reward is at least this (None: when the reward is the task's verifier, the
    task's `verified_at`, 1.0 unless the recipe's `[task]` sets it; 1.0 for any other reward)."""
    keep_per_problem: int = 1
    """Most distinct kept solutions per problem (stops easy problems dominating the data)."""
    skip_solved: bool = False
    """Keep nothing from a problem every sample of which reached the threshold: the round then trains only on
    problems the policy solves some of the time, so its steps go to what is left to learn instead of to
    what the policy already does (DAPO's dynamic sampling, which drops all-right and all-wrong groups, here
    for learning from verified samples, where all-wrong groups keep nothing anyway)."""
    epochs: float = 2.0
    """Passes over the round's kept solutions; the round trains min(sft.steps, epochs * kept / batch)
    steps, so a round that kept little data does not overfit it (0 always trains sft.steps)."""
    sft: SFTConfig = SFTConfig(steps=150, lr=1e-3, warmup=10)
    """The SFT phase of each round (`steps` is the most it trains)."""

    def __post_init__(self) -> None:
        for name in ("samples", "max_new_tokens", "keep_per_problem"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number or unset, got {self.threshold}")


def round_steps(cfg: ExpertIterationConfig, kept: int) -> int:
    """SFT steps of a round that kept `kept` solutions."""
    return steps_for(cfg.sft, cfg.epochs, kept)


def collect_verified(problems: Sequence[Problem], groups: Sequence[Sequence[Sample]],
                     rewards: Sequence[Sequence[float]], *, threshold: float, keep_per_problem: int,
                     skip_solved: bool = False) -> list[tuple[str, str]]:
    """(prompt, completion) pairs of distinct solutions that reach `threshold`, in sample order; with
    `skip_solved`, none from a problem all of whose samples reach it."""
    out = []
    for problem, samples, scores in zip(problems, groups, rewards):
        if skip_solved and all(r >= threshold for r in scores):
            continue
        kept: list[str] = []
        for s, r in zip(samples, scores):
            if r >= threshold and s.finish == "eos" and s.text not in kept:
                kept.append(s.text)
                if len(kept) == keep_per_problem:
                    break
        out.extend((problem.prompt, text) for text in kept)
    return out


def sample_round(policy: Policy, reward: OutcomeReward, problems: Sequence[Problem], cfg: ExpertIterationConfig,
                 *, seed: int, phase: str) -> tuple[list[tuple[str, str]], dict]:
    """The search half of a round: sample, score, keep verified. Returns (training pairs, stats)."""
    if cfg.threshold is None:
        cfg = replace(cfg, threshold=verified_at(getattr(reward, "task", None)))
    sampling = Sampling(n=cfg.samples, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=seed)
    groups = policy.generate([p.prompt for p in problems], sampling)
    rewards = [reward.score([p] * len(g), [s.text for s in g]) for p, g in zip(problems, groups)]
    sample_cost = Cost.total(s.cost for g in groups for s in g)
    data = collect_verified(problems, groups, rewards, threshold=cfg.threshold,
                            keep_per_problem=cfg.keep_per_problem, skip_solved=cfg.skip_solved)
    n_samples = sum(len(g) for g in groups)
    stats = {"phase": phase, "samples": n_samples,
             "all_solved": sum(all(r >= cfg.threshold for r in rs) for rs in rewards) / max(len(problems), 1),
             "sample_pass_rate": sum(r >= cfg.threshold for rs in rewards for r in rs) / max(n_samples, 1),
             "problems_solved": sum(any(r >= cfg.threshold for r in rs) for rs in rewards) / max(len(problems), 1),
             "kept": len(data), "sample_tokens": sample_cost.tokens_generated, "sample_flops": sample_cost.flops}
    return data, stats


def train_round(policy: Policy, data: Sequence[tuple[str, str]], stats: dict, cfg: ExpertIterationConfig, *,
                seed: int, phase: str, log: Callable[[dict], None] | None = None, progress: bool = True,
                checkpointing: Checkpointing | None = None) -> dict:
    """The learning half of a round: SFT on the kept pairs. Returns `stats` with training figures."""
    stats = dict(stats)
    if data:
        sft_cfg = replace(cfg.sft, steps=round_steps(cfg, len(data)))
        sft = train_sft(policy, data, sft_cfg, seed=seed + 1, log=log, phase=phase, progress=progress,
                        checkpointing=checkpointing)
        stats.update(train_steps=sft_cfg.steps, train_tokens=sft["tokens"], train_loss=sft["final_loss"])
    else:
        stats.update(train_steps=0, train_tokens=0, train_loss=float("nan"))
    return stats


def expert_iteration_round(policy: Policy, reward: OutcomeReward, problems: Sequence[Problem],
                           cfg: ExpertIterationConfig, *, seed: int, phase: str,
                           log: Callable[[dict], None] | None = None, progress: bool = True) -> dict:
    """Run one round in place on `policy`; returns what it sampled, kept and trained."""
    data, stats = sample_round(policy, reward, problems, cfg, seed=seed, phase=phase)
    if log is not None:
        log(dict(stats))
    return train_round(policy, data, stats, cfg, seed=seed, phase=phase, log=log, progress=progress)


class ExpertIteration(Learner):
    """The registry's `expert_iteration`: offline, the search half samples and keeps verified solutions."""

    name = table = "expert_iteration"
    offline = True

    def search(self, policy, cfg, rnd: Round) -> tuple[list[tuple[str, str]], dict]:
        return sample_round(policy, rnd.reward, rnd.problems, self.settings(cfg), seed=rnd.seed, phase=rnd.phase)

    def learn(self, policy, cfg, rnd: Round, data=None, stats=None, checkpointing=None) -> dict:
        pairs = [tuple(x) for x in data]  # the run keeps them as JSON lists
        return train_round(policy, pairs, stats, self.settings(cfg), seed=rnd.seed, phase=rnd.phase, log=rnd.log,
                           progress=rnd.progress, checkpointing=checkpointing)


LEARNER = ExpertIteration()
