"""Supervised fine-tuning (behaviour cloning) on (prompt, completion) pairs.

Used for policy initialization (demonstration traces that reason step by step) and as the inner
step of expert iteration (the policy's own verified samples). The loss is the mean negative
log-likelihood of completion tokens (prompt tokens are context, never targets), with AdamW, linear
warm-up then cosine decay, and gradient clipping. Batches are drawn with a seeded generator, so the
same examples and seed give the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from ponder.policy.base import Policy
from ponder.training import Checkpointing, SFTConfig, train_steps


def nll_loss(policy: Policy, prompts: Sequence[str], completions: Sequence[str]) -> tuple[torch.Tensor, int]:
    """Mean negative log-likelihood per completion token, and the number of tokens it averaged."""
    logp, mask = policy.logprobs(prompts, completions)
    tokens = int(mask.sum())
    return -(logp * mask).sum() / max(tokens, 1), tokens


def train_sft(policy: Policy, examples: Sequence[tuple[str, str]], cfg: SFTConfig, *, seed: int,
              log: Callable[[dict], None] | None = None, phase: str = "sft", progress: bool = True,
              checkpointing: Checkpointing | None = None, probes: Mapping[int, Callable[[], None]] | None = None
              ) -> dict:
    """Fine-tune `policy` in place on (prompt, completion) pairs; returns summary statistics.

    With `checkpointing`, the loop saves its state every `every` steps and when a stop is requested
    (then raises `Interrupted`), and continues from `resume` if given: a resumed run takes the same
    batches with the same optimizer state, so it ends with the same weights as one never stopped.
    """
    if not examples:
        raise ValueError(f"{phase}: no training examples")

    def batch_loss(idx: list[int]) -> tuple[torch.Tensor, int]:
        return nll_loss(policy, [examples[i][0] for i in idx], [examples[i][1] for i in idx])

    return train_steps(policy, batch_loss, len(examples), cfg, seed=seed, log=log, phase=phase, term="nll",
                       progress=progress, checkpointing=checkpointing, probes=probes)
