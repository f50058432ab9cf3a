"""Direct Preference Optimization (DPO) and iterative (online) DPO on the policy's own samples.

Papers: Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a
Reward Model"; Pang et al. 2024, "Iterative Reasoning Preference Optimization" (pairs of the current
policy's correct and incorrect solutions, re-sampled every round, with an NLL term on the chosen);
Tajwar et al. 2024, "Preference Fine-Tuning of LLMs Should Leverage Suboptimal, On-Policy Data";
Xie et al. 2024, "Monte Carlo Tree Search Boosts Reasoning via Iterative Preference Learning" (step
pairs from MCTS, as `ponder.search.mcts.Tree.preference_pairs` gives them).

Pairs are `PreferencePair(prompt, chosen, rejected)` from any of three sources: a group of samples
scored by a reward (`make_pairs_from_samples`: the best against the worst when their rewards differ),
MCTS trees (step texts continuing prompt + prefix: train those with `eos=False`, since a step does
not end the solution), or a JSONL file of {"prompt", "chosen", "rejected"} lines (`ponder.reward.pairs.load_pairs_jsonl`).

The loss is `losses.dpo_loss` on sequence log-probs against a frozen reference, the policy as it was
when `train_dpo` started unless another is given. The reference is fixed, so its log-probs are
computed once, before the first step (the same numbers a frozen deep copy would give, without the
copy); the optimisation loop is SFT's (`training.train_steps`: AdamW, warm-up + cosine, clipping, a
divergence guard). `iterative_dpo` re-samples pairs from the current policy every round; its
reference is the policy at the start of each round (Pang et al.), or the initial one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from ponder.eval import score_groups
from ponder.learn import losses as L
from ponder.learn.base import Learner, Round
from ponder.learn.rl import draw_problems
from ponder.learn.scoring import score_completions
from ponder.policy.base import Policy
from ponder.reward.base import OutcomeReward
from ponder.reward.model import PreferencePair
from ponder.reward.verifier import VerifierReward
from ponder.tasks.base import Task
from ponder.training import Checkpointing, SFTConfig, steps_for, train_steps
from ponder.types import Cost, Problem, Sample, Sampling


@dataclass(frozen=True)
class DPOConfig:
    """Settings of DPO and iterative DPO."""

    beta: float = 0.1
    """Strength of the implicit KL constraint: larger keeps the policy closer to the reference."""
    label_smoothing: float = 0.0
    """Assumed fraction of flipped labels (conservative DPO); 0: plain DPO."""
    nll_coef: float = 0.0
    """Weight of the chosen completions' mean NLL per token added to the loss (Pang et al.); 0: none."""
    train: SFTConfig = SFTConfig(steps=100, batch_size=16, lr=3e-5, warmup=3, min_lr_ratio=1.0)
    """The optimisation loop: steps (the most per `train_dpo` call), pairs per step, schedule. On the
    tiny models, several passes over a round's pairs or lr >= 1e-4 pushed both completions' likelihoods
    down and wrecked greedy decoding; one pass at 3e-5 per round learned."""
    epochs: float = 1.0
    """iterative_dpo: a round trains min(train.steps, epochs * pairs / batch_size) steps (0: train.steps)."""
    prompts_per_round: int = 64
    """iterative_dpo: problems sampled per round."""
    samples: int = 8
    """iterative_dpo: completions per problem, from which the best and the worst make a pair."""
    temperature: float = 1.0
    """iterative_dpo: sampling temperature."""
    max_new_tokens: int = 96
    """iterative_dpo: generation cap per sample."""
    reference: str = "round"
    """iterative_dpo: "round" (the policy at each round's start) or "initial" (the policy before round 1)."""

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        for name in ("nll_coef", "epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("prompts_per_round", "samples", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.samples < 2:
            raise ValueError(f"samples must be >= 2 to make pairs, got {self.samples}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.reference not in ("round", "initial"):
            raise ValueError(f'reference must be "round" or "initial", got {self.reference!r}')


# -- pairs -------------------------------------------------------------------------------------------


def pairs_from_scores(problems: Sequence[Problem], groups: Sequence[Sequence[Sample]],
                      scores: Sequence[Sequence[float]]) -> list[PreferencePair]:
    """For each problem, a sample with the highest score over one with the lowest, when the two
    scores differ. Ties go to the sample the policy finds most likely (the largest summed
    `Sample.logprobs`): the most likely good solution over the most likely bad one, the mistake that
    greedy decoding would make. Only samples that finished with EOS take part: a truncated sample is
    not a whole completion, and DPO scores completions with their EOS."""
    pairs = []
    for problem, samples, group_scores in zip(problems, groups, scores, strict=True):
        done = [(r, sum(s.logprobs), s.text) for s, r in zip(samples, group_scores, strict=True) if s.finish == "eos"]
        if len(done) < 2:
            continue
        best = max(done, key=lambda x: (x[0], x[1]))
        worst = min(done, key=lambda x: (x[0], -x[1]))
        if best[0] > worst[0]:
            pairs.append(PreferencePair(prompt=problem.prompt, chosen=best[2], rejected=worst[2]))
    return pairs


def make_pairs_from_samples(problems: Sequence[Problem], groups: Sequence[Sequence[Sample]],
                            reward: OutcomeReward) -> list[PreferencePair]:
    """Score every sample of `groups` with `reward`, then pair each group's best against its worst."""
    return pairs_from_scores(problems, groups, score_groups(reward, problems, groups))


# -- training ----------------------------------------------------------------------------------------


def pair_logprobs(policy: Policy, pairs: Sequence[PreferencePair], *, eos: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequence log-probs (B,) of the chosen and of the rejected completions, and the token counts
    (2B,) of both (chosen first); differentiable. One forward pass over both."""
    prompts = [p.prompt for p in pairs] * 2
    texts = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    logp, mask, _ = score_completions(policy, prompts, texts, [eos] * len(texts))
    seq = L.sequence_logprob(logp, mask)
    return seq[: len(pairs)], seq[len(pairs) :], mask.sum(-1)


def train_dpo(policy: Policy, pairs: Sequence[PreferencePair], cfg: DPOConfig, *, seed: int,
              reference: Policy | None = None, eos: bool = True, steps: int | None = None,
              log: Callable[[dict], None] | None = None, progress: bool = True, phase: str = "dpo",
              checkpointing: Checkpointing | None = None) -> dict:
    """Fine-tune `policy` in place with DPO on `pairs`; returns summary statistics.

    `reference`: the frozen reference (None: `policy` as it is now). `eos`: whether each completion
    ends the solution (True for whole completions, False for MCTS step pairs). `steps` overrides
    `cfg.train.steps`; `checkpointing` works as in `training.train_steps`. Logged records add the DPO statistics (reward_accuracy, margin, chosen_reward,
    rejected_reward) averaged since the last record; the summary has their means over the last 10
    steps, with the SFT loop's steps, tokens (both completions of every pair), seconds, final_loss."""
    if not pairs:
        raise ValueError(f"{phase}: no preference pairs")
    if checkpointing is not None and checkpointing.resume is not None and reference is None:
        raise ValueError(f"{phase}: resuming needs the reference the run started with (the policy has moved)")
    chunk = max(1, cfg.train.batch_size)
    with torch.no_grad():  # the reference is frozen: score every pair once
        ref = [pair_logprobs(reference if reference is not None else policy, pairs[i : i + chunk], eos=eos)
               for i in range(0, len(pairs), chunk)]
    ref_chosen, ref_rejected = torch.cat([r[0] for r in ref]), torch.cat([r[1] for r in ref])
    seen: list[dict[str, float]] = []

    def batch_loss(idx: list[int]) -> tuple[torch.Tensor, int]:
        chosen, rejected, counts = pair_logprobs(policy, [pairs[i] for i in idx], eos=eos)
        loss, stats = L.dpo_loss(chosen, rejected, ref_chosen[idx], ref_rejected[idx], beta=cfg.beta,
                                 label_smoothing=cfg.label_smoothing)
        if cfg.nll_coef > 0:  # mean NLL per chosen token
            loss = loss + cfg.nll_coef * (-chosen.sum() / counts[: len(idx)].sum().clamp_min(1.0))
        seen.append(stats)
        return loss, int(counts.sum())

    def mean_stats(recent: list[dict[str, float]]) -> dict[str, float]:
        return {k: sum(s[k] for s in recent) / len(recent) for k in recent[0]} if recent else {}

    def log_with_stats(record: dict) -> None:
        log({**record, **mean_stats(seen[-cfg.train.log_every :])})

    train_cfg = cfg.train if steps is None else replace(cfg.train, steps=steps)
    out = train_steps(policy, batch_loss, len(pairs), train_cfg, seed=seed, log=log_with_stats if log else None,
                      phase=phase, term="dpo", progress=progress, checkpointing=checkpointing)
    if hasattr(policy, "weights_changed"):
        policy.weights_changed()
    return {**out, "pairs": len(pairs), **mean_stats(seen[-10:])}


def iterative_dpo(policy: Policy, reward: OutcomeReward | None, task: Task, problems: Sequence[Problem],
                  cfg: DPOConfig, rounds: int, *, seed: int, log: Callable[[dict], None] | None = None,
                  progress: bool = True, phase: str = "dpo") -> dict:
    """`rounds` rounds of: draw `cfg.prompts_per_round` problems, sample `cfg.samples` completions of
    each from the current policy, pair best against worst by `reward` (None: the task's verifier),
    and train DPO on those pairs. Returns per-round records (`history`: sample reward, pairs, steps,
    DPO statistics) and the total sample and train tokens."""
    if not problems:
        raise ValueError(f"{phase}: no training problems")
    reward = reward if reward is not None else VerifierReward(task)
    initial = copy.deepcopy(policy) if cfg.reference == "initial" else None
    gen = torch.Generator().manual_seed(seed)
    history, sample_cost, train_tokens = [], Cost(), 0
    for k in range(rounds):
        batch = draw_problems(problems, cfg.prompts_per_round, gen)
        sampling = Sampling(n=cfg.samples, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                            seed=int(torch.randint(2**62, (1,), generator=gen)))
        groups = policy.generate([p.prompt for p in batch], sampling)
        scores = score_groups(reward, batch, groups)
        pairs = pairs_from_scores(batch, groups, scores)
        cost = Cost.total(s.cost for g in groups for s in g)
        sample_cost = sample_cost + cost
        flat_scores = [r for rs in scores for r in rs]
        record = {"phase": phase, "round": k + 1, "reward_mean": sum(flat_scores) / len(flat_scores),
                  "pairs": len(pairs), "sample_tokens": cost.tokens_generated}
        if pairs:
            n_steps = steps_for(cfg.train, cfg.epochs, len(pairs))
            stats = train_dpo(policy, pairs, cfg, seed=seed + k + 1, reference=initial, steps=n_steps, log=log,
                              progress=progress, phase=f"{phase}_round{k + 1}")
            train_tokens += stats["tokens"]
            record.update({key: v for key, v in stats.items() if key != "pairs"})
        history.append(record)
        if log is not None:
            log(dict(record))
    return {"rounds": rounds, "sample_tokens": sample_cost.tokens_generated, "sample_flops": sample_cost.flops,
            "train_tokens": train_tokens, "history": history}


class IterativeDPO(Learner):
    """The registry's `dpo`: on-policy, `learn.dpo_iterations` sample-pair-train iterations a round."""

    name = table = "dpo"

    def learn(self, policy, cfg, rnd: Round, data=None, stats=None, checkpointing=None) -> dict:
        out = iterative_dpo(policy, rnd.reward, rnd.task, rnd.problems, self.settings(cfg), cfg.dpo_iterations,
                            seed=rnd.seed, log=rnd.log, progress=rnd.progress, phase=rnd.phase)
        hist = out["history"]
        return {"iterations": cfg.dpo_iterations, "pairs": sum(h["pairs"] for h in hist),
                "reward_mean": sum(h["reward_mean"] for h in hist) / len(hist), "sample_tokens": out["sample_tokens"],
                "sample_flops": out["sample_flops"], "train_tokens": out["train_tokens"],
                "train_steps": sum(h.get("steps", 0) for h in hist)}


LEARNER = IterativeDPO()
