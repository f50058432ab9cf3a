"""The recipe's `[learn]` table and one learning round of whichever learner it names.

`ponder run` iterates rounds of: draw `problems` fresh training problems, let the learner make its
training data from the current policy (sampling, tree search or on-policy rollouts) and learn from
it, then evaluate. Every learner reports the same compute figures, so runs with different learners
can be compared at equal training compute: `sample_tokens` (tokens the policy generated to make
training data, search included) and `train_tokens` (tokens trained on; a token trained in k epochs
counts k times).

Two kinds of round:
- offline (expert_iteration, distill): a search half whose result the run saves, then SFT on it with
  mid-phase checkpoints, so a stopped round resumes where it was without searching again;
- online (reinforce, rloo, grpo, dr_grpo, ppo, dpo): sampling and updates interleave, and a stopped
  round restarts from the previous round's checkpoint (same seed, so the same result).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ponder.learn import distill, expert_iteration
from ponder.learn.distill import DistillConfig
from ponder.learn.dpo import DPOConfig, iterative_dpo
from ponder.learn.expert_iteration import ExpertIterationConfig
from ponder.learn.ppo import PPOConfig, train_ppo
from ponder.learn.rl import ADVANTAGES, RLConfig, train_rl
from ponder.learn.sft import Checkpointing
from ponder.reward.verifier import VerifierReward
from ponder.tasks.base import Task

OFFLINE = ("expert_iteration", "distill")
ONLINE = (*ADVANTAGES, "ppo", "dpo")
LEARNERS = OFFLINE + ONLINE
_SETTINGS = {**{a: "rl" for a in ADVANTAGES}, "expert_iteration": "expert_iteration", "distill": "distill",
             "ppo": "ppo", "dpo": "dpo"}


def learner_settings(learner: str) -> str:
    """The `[learn.X]` table that holds a learner's settings (`rl` for the policy-gradient family)."""
    return _SETTINGS[learner]


@dataclass(frozen=True)
class LearnConfig:
    """Learning rounds after initialization: which learner, how many rounds, on how many problems."""

    learner: str = "expert_iteration"
    """expert_iteration (sample, keep verified, SFT), distill (MCTS with the PRM, SFT on verified traces),
    reinforce, rloo, grpo, dr_grpo (policy gradient; they differ only in the advantage), ppo, or dpo
    (iterative DPO on best-versus-worst sampled pairs)."""
    rounds: int = 2
    """Learn-then-evaluate rounds."""
    problems: int = 1000
    """Fresh training problems drawn per round (the pool on-policy learners draw their batches from)."""
    expert_iteration: ExpertIterationConfig = ExpertIterationConfig()
    """Settings of learner expert_iteration."""
    distill: DistillConfig = DistillConfig()
    """Settings of learner distill (needs "prm" in reward.models)."""
    rl: RLConfig = RLConfig(steps=40, prompts_per_step=32, group_size=8, temperature=0.7, max_new_tokens=64,
                            lr=1e-4)
    """Settings of learners reinforce, rloo, grpo and dr_grpo, per round (`advantage` is set by `learner`)."""
    ppo: PPOConfig = PPOConfig(steps=15, prompts_per_step=64, samples_per_prompt=8, temperature=0.7,
                               max_new_tokens=64, lr=1e-4, warmup=5, epochs_per_batch=2, kl_coef=0.02,
                               value_warmup=5, value_epochs=2, lam=1.0)
    """Settings of learner ppo, per round."""
    dpo: DPOConfig = DPOConfig(max_new_tokens=64, temperature=0.7)
    """Settings of learner dpo."""
    dpo_iterations: int = 10
    """dpo: sample-pair-train iterations per round."""

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {', '.join(LEARNERS)}, got {self.learner!r}")
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        if self.problems < 1 or self.dpo_iterations < 1:
            raise ValueError(f"problems and dpo_iterations must be >= 1, got {self.problems}, {self.dpo_iterations}")

    @property
    def offline(self) -> bool:
        return self.learner in OFFLINE


def search_half(policy, task: Task, problems, cfg: LearnConfig, *, seed: int, phase: str, prm=None, reward=None
                ) -> tuple[object, dict]:
    """What an offline learner's round learns from: (data to save in the run, stats). `reward` scores
    samples (None: the task's verifier)."""
    if cfg.learner == "distill":
        data, stats = distill.search_round(policy, prm, task, problems, cfg.distill, seed=seed)
        return data, {"phase": phase, **stats}
    return expert_iteration.sample_round(policy, reward or VerifierReward(task), problems, cfg.expert_iteration,
                                         seed=seed, phase=phase)


def learn_half(policy, data, stats: dict, cfg: LearnConfig, *, seed: int, phase: str, prm=None,
               log: Callable[[dict], None] | None = None, progress: bool = True,
               checkpointing: Checkpointing | None = None) -> dict:
    """An offline learner's training on what `search_half` found; returns the round's figures."""
    if cfg.learner == "distill":
        return distill.train_round(policy, prm, data, stats, cfg.distill, seed=seed, phase=phase, log=log,
                                   progress=progress, checkpointing=checkpointing)
    pairs = [tuple(x) for x in data]
    return expert_iteration.train_round(policy, pairs, stats, cfg.expert_iteration, seed=seed, phase=phase, log=log,
                                        progress=progress, checkpointing=checkpointing)


def online_round(policy, task: Task, problems, cfg: LearnConfig, *, seed: int, phase: str,
                 log: Callable[[dict], None] | None = None, progress: bool = True, reward=None,
                 carry: dict | None = None) -> dict:
    """One round of an on-policy learner, in place; returns its figures (no per-step history: the
    steps are in the run's metrics log). `reward` scores samples (None: the task's verifier). `carry`
    holds what a learner keeps between rounds besides the policy: PPO reads its value head from
    carry["value_head"] (None or absent: a fresh one) and writes the trained head back."""
    if cfg.learner == "dpo":
        out = iterative_dpo(policy, reward, task, problems, cfg.dpo, cfg.dpo_iterations, seed=seed, log=log,
                            progress=progress, phase=phase)
        hist = out["history"]
        return {"iterations": cfg.dpo_iterations, "pairs": sum(h["pairs"] for h in hist),
                "reward_mean": sum(h["reward_mean"] for h in hist) / len(hist), "sample_tokens": out["sample_tokens"],
                "sample_flops": out["sample_flops"], "train_tokens": out["train_tokens"],
                "train_steps": sum(h.get("steps", 0) for h in hist)}
    if cfg.learner == "ppo":
        carry = {} if carry is None else carry
        out = train_ppo(policy, reward, task, problems, cfg.ppo, seed=seed, log=log, progress=progress, phase=phase,
                        value_head=carry.get("value_head"))
        carry["value_head"] = out.pop("value_head")
    else:
        out = train_rl(policy, reward, task, problems, replace(cfg.rl, advantage=cfg.learner), seed=seed, log=log,
                       progress=progress, phase=phase)
    hist = out["history"]
    entropy = [h["entropy"] for h in hist if h.get("entropy") is not None]
    result = {k: out[k] for k in ("steps", "updates", "sample_tokens", "sample_flops", "train_tokens", "final_reward")}
    result.update(train_steps=out["updates"], reward_first=hist[0]["reward_mean"] if hist else float("nan"),
                  entropy_first=entropy[0] if entropy else None, entropy_last=entropy[-1] if entropy else None)
    return result
