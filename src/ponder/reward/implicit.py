"""Implicit process reward: a PRM learned from outcome labels only ("Free Process Rewards without
Process Labels", Yuan et al. 2024).

A copy of the policy, pi, is trained against a frozen reference, pi_ref, so that the outcome logit
of a solution is beta * sum_t log(pi(y_t)/pi_ref(y_t)) over its tokens, with binary cross-entropy
against the verifier. The running sum up to the end of step k, q_k, is then a process value for
free: the step reward is r_k = q_k - q_{k-1}, and `step_scores` reports sigmoid(q_k), the model's
chance that the solution is still right after step k, like every other `ProcessReward`.

Token positions are read as character positions, so this needs the built-in character tokenizer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ponder.policy.tiny import TinyPolicy
from ponder.policy.tokenizer import CharTokenizer
from ponder.reward.base import AGGREGATIONS, aggregate, check_pairs
from ponder.reward.model import RewardExample, step_end_positions
from ponder.training import Checkpointing, SFTConfig, train_steps
from ponder.types import Problem


class ImplicitPRM:
    """pi (trainable) and pi_ref (frozen) as a process reward: q_k = beta * sum log ratio to step k."""

    def __init__(self, policy: TinyPolicy, reference: TinyPolicy, *, beta: float = 0.1, aggregation: str = "min",
                 batch_size: int = 256) -> None:
        if not isinstance(policy.tokenizer, CharTokenizer):
            raise TypeError("the implicit PRM reads token positions as characters: it needs the built-in tokenizer")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
        self.policy, self.reference = policy, reference
        for p in reference.parameters():
            p.requires_grad_(False)
        self.beta, self.aggregation, self.batch_size = beta, aggregation, batch_size
        self.calls = 0

    @classmethod
    def from_policy(cls, policy: TinyPolicy, **kwargs) -> ImplicitPRM:
        """Both pi and pi_ref start as copies of `policy` (which is left untouched)."""
        return cls(copy.deepcopy(policy), copy.deepcopy(policy), **kwargs)

    def parameters(self):
        return self.policy.parameters()

    def train(self, mode: bool = True) -> ImplicitPRM:
        self.policy.train(mode)
        return self

    def q_values(self, prompts: Sequence[str], texts: Sequence[str]) -> list[Tensor]:
        """Differentiable q_k at the end of each step of each text (one 1-D tensor per text)."""
        logp, mask = self.policy.logprobs(prompts, texts, eos=False)
        with torch.no_grad():
            ref, _ = self.reference.logprobs(prompts, texts, eos=False)
        q = (self.beta * (logp - ref) * mask).cumsum(-1)  # (B, T)
        return [q[b, step_end_positions(t)] if t else q[b, :0] for b, t in enumerate(texts)]

    @torch.no_grad()
    def step_scores(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]:
        check_pairs(problems, texts)
        self.calls += len(texts)
        out: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i : i + self.batch_size]
            nonempty = [j for j, t in enumerate(chunk) if t]
            rows: list[list[float]] = [[] for _ in chunk]
            if nonempty:
                qs = self.q_values([problems[i + j].prompt for j in nonempty], [chunk[j] for j in nonempty])
                for j, q in zip(nonempty, qs):
                    rows[j] = torch.sigmoid(q.float()).tolist()
            out.extend(rows)
        return out

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]:
        return [aggregate(row, self.aggregation) for row in self.step_scores(problems, texts)]

    def save(self, path: str | Path) -> None:
        """pi under `path/policy`, pi_ref under `path/reference`, settings in `path/implicit.json`."""
        import json

        path = Path(path)
        self.policy.save(path / "policy")
        self.reference.save(path / "reference")
        tmp = path / "implicit.json.tmp"
        tmp.write_text(json.dumps({"format": "ponder-implicit-prm/1", "beta": self.beta,
                                   "aggregation": self.aggregation}))
        tmp.replace(path / "implicit.json")

    @classmethod
    def load(cls, path: str | Path) -> ImplicitPRM:
        import json

        path = Path(path)
        meta_file = path / "implicit.json"
        if not meta_file.is_file():
            raise ValueError(f"{path}: not an implicit PRM directory (needs implicit.json)")
        meta = json.loads(meta_file.read_text())
        return cls(TinyPolicy.load(path / "policy"), TinyPolicy.load(path / "reference"), beta=meta["beta"],
                   aggregation=meta["aggregation"])


def implicit_outcome_loss(prm: ImplicitPRM, examples: Sequence[RewardExample]) -> tuple[Tensor, int]:
    """BCE between sigmoid(q_T) (the whole solution's implicit logit) and the outcome label."""
    qs = prm.q_values([e.prompt for e in examples], [e.text for e in examples])
    logits = torch.stack([q[-1] if len(q) else q.new_zeros(()) for q in qs]).float()
    targets = torch.tensor([e.targets[-1] for e in examples])
    return F.binary_cross_entropy_with_logits(logits, targets), len(examples)


def train_implicit_prm(prm: ImplicitPRM, examples: Sequence[RewardExample], cfg: SFTConfig, *, seed: int,
                       log: Callable[[dict], None] | None = None, phase: str = "implicit_prm", progress: bool = True,
                       checkpointing: Checkpointing | None = None) -> dict:
    """Train pi on outcome labels (each example's last target); pi_ref stays frozen."""
    if not examples:
        raise ValueError(f"{phase}: no training data")

    def batch_loss(idx: list[int]) -> tuple[Tensor, int]:
        return implicit_outcome_loss(prm, [examples[i] for i in idx])

    return train_steps(prm, batch_loss, len(examples), cfg, seed=seed, log=log, phase=phase, term="bce",
                       progress=progress, checkpointing=checkpointing)
