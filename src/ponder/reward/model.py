"""Learned reward models on the policy architecture: outcome (ORM), process (PRM) and preference (Bradley-Terry).

A `RewardModel` is the built-in transformer body with a scalar head. It reads the prompt and a
(possibly partial) solution and emits one logit at each scored position:

- process: at the end of every step (the newline that closes it, or the last character of an
  unfinished last step), trained with binary cross-entropy against soft or hard step labels;
  `step_scores` are the sigmoids, and `score` aggregates them (last, min, product or mean);
- outcome: at the last character of the solution, trained with BCE against the verifier;
- preference: at the last character too, trained with the Bradley-Terry loss on chosen/rejected
  pairs; its `score` is the raw logit (only differences mean anything).

The body usually starts from the policy's weights (it already reads the task), which matters when
labels are few. Weights are safetensors, settings JSON: loading never runs code.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ponder.policy.tokenizer import CharTokenizer
from ponder.policy.transformer import ModelConfig, Transformer
from ponder.reward.base import AGGREGATIONS, aggregate, check_pairs
from ponder.timing import timed
from ponder.training import Checkpointing, SFTConfig, train_steps
from ponder.types import Problem

KINDS = ("outcome", "process", "preference")


class RewardModelLoadError(ValueError):
    """A reward-model directory that cannot be loaded, with the path and the reason."""


@dataclass(frozen=True)
class RewardExample:
    """One labelled solution: `targets` holds one label in [0, 1] per step (process) or a single
    label for the whole solution (outcome)."""

    prompt: str
    text: str
    targets: tuple[float, ...]


@dataclass(frozen=True)
class PreferencePair:
    """Two solutions to one prompt, the first preferred."""

    prompt: str
    chosen: str
    rejected: str


def step_end_positions(text: str) -> list[int]:
    """Character index of the end of each step of `text`, matching `split_steps`: the newline that
    closes a non-blank line, or the last character of an unfinished last line."""
    ends, start = [], 0
    for i, ch in enumerate(text):
        if ch == "\n":
            if text[start:i].strip():
                ends.append(i)
            start = i + 1
    if text[start:].strip():
        ends.append(len(text) - 1)
    return ends


class RewardModel(nn.Module):
    """A transformer body plus a scalar head, behind the OutcomeReward / ProcessReward protocols."""

    def __init__(self, model_config: ModelConfig, *, tokenizer: CharTokenizer | None = None, kind: str = "process",
                 aggregation: str = "min", seed: int = 0, batch_size: int = 256, likelihood: bool = False) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"reward model kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
        self.tokenizer = tokenizer or CharTokenizer()
        self.config = model_config
        self.kind, self.aggregation, self.batch_size = kind, aggregation, batch_size
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.body = Transformer(model_config, self.tokenizer.vocab_size)
            self.head = nn.Linear(model_config.d_model, 1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.likelihood = likelihood
        if likelihood:  # weight of the solution's log-likelihood so far, read through the tied LM head
            self.likelihood_scale = nn.Parameter(torch.tensor(0.1))
        self.calls = 0
        self.train(False)

    @classmethod
    def from_policy(cls, policy, *, kind: str = "process", aggregation: str = "min", batch_size: int = 256,
                    likelihood: bool = False) -> RewardModel:
        """A reward model whose body starts as a copy of a built-in policy's transformer."""
        rm = cls(policy.config, tokenizer=policy.tokenizer, kind=kind, aggregation=aggregation, batch_size=batch_size,
                 likelihood=likelihood)
        rm.body.load_state_dict(copy.deepcopy(policy.model.state_dict()))
        return rm

    # -- scoring -----------------------------------------------------------------------------------

    def positions(self, text: str) -> list[int]:
        """Character indices of `text` where this model emits a logit."""
        if self.kind == "process":
            return step_end_positions(text)
        return [len(text) - 1] if text else [-1]

    def logits(self, prompts: Sequence[str], texts: Sequence[str]) -> list[Tensor]:
        """Differentiable logits, one 1-D tensor per text with one entry per scored position."""
        tok = self.tokenizer
        rows, spots = [], []
        for prompt, text in zip(prompts, texts):
            head = [tok.bos_id] + tok.encode(prompt)
            ids = head + tok.encode(text)
            if len(ids) > self.config.max_seq_len:
                raise ValueError(f"a prompt + solution of {len(ids)} tokens exceeds the reward model's "
                                 f"max_seq_len={self.config.max_seq_len}")
            rows.append(ids)
            spots.append([len(head) + p for p in self.positions(text)])
        T = max(len(r) for r in rows)
        batch = torch.full((len(rows), T), tok.pad_id, dtype=torch.long)
        for b, r in enumerate(rows):
            batch[b, : len(r)] = torch.tensor(r)
        hidden = self.body.hidden(batch)
        values = self.head(hidden).squeeze(-1)  # (B, T)
        if self.likelihood:
            # log-probability of each token under the body's language-model head, summed from the first
            # solution token: the model's own surprise at the solution so far, added to the head's logit
            logp = torch.log_softmax(F.linear(hidden[:, :-1], self.body.embed.weight).float(), -1)
            logp = logp.gather(-1, batch[:, 1:, None]).squeeze(-1)  # (B, T-1): token t+1 given the prefix
            starts = torch.tensor([len(r) - len(t) for r, t in zip(rows, texts)])[:, None]  # first solution token
            cols = torch.arange(1, T)[None, :]
            logp = torch.where(cols >= starts, logp, torch.zeros_like(logp))
            cum = torch.cat([logp.new_zeros(len(rows), 1), logp.cumsum(-1)], dim=1)  # (B, T)
            values = values + self.likelihood_scale * cum
        return [values[b, spots[b]] for b in range(len(rows))]

    @timed("scoring")
    @torch.no_grad()
    def _all_logits(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]:
        check_pairs(problems, texts)
        self.calls += len(texts)
        was = self.training
        self.train(False)
        out: list[list[float]] = []
        try:
            for i in range(0, len(texts), self.batch_size):
                chunk = self.logits([p.prompt for p in problems[i : i + self.batch_size]], texts[i : i + self.batch_size])
                out.extend(x.float().tolist() for x in chunk)
        finally:
            self.train(was)
        return out

    def step_scores(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]:
        """Per step, the estimated chance the solution is still right (process models only)."""
        if self.kind != "process":
            raise ValueError(f"step_scores needs a process reward model, this one is {self.kind!r}")
        return [[float(torch.sigmoid(torch.tensor(x))) for x in row] for row in self._all_logits(problems, texts)]

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]:
        """One score per solution: aggregated step scores (process), P(correct) (outcome), or the
        Bradley-Terry logit (preference)."""
        rows = self._all_logits(problems, texts)
        if self.kind == "process":
            return [aggregate([float(torch.sigmoid(torch.tensor(x))) for x in row], self.aggregation) for row in rows]
        if self.kind == "outcome":
            return [float(torch.sigmoid(torch.tensor(row[-1]))) for row in rows]
        return [row[-1] for row in rows]

    # -- persistence -------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        tmp = path / "model.safetensors.tmp"
        save_file(state, str(tmp))
        tmp.replace(path / "model.safetensors")
        meta = {"format": "ponder-reward/1", "kind": self.kind, "aggregation": self.aggregation,
                "likelihood": self.likelihood,
                "model": self.config.to_dict(), "tokenizer": self.tokenizer.to_dict()}
        tmp = path / "config.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(path / "config.json")

    @classmethod
    def load(cls, path: str | Path, *, aggregation: str | None = None, batch_size: int = 256) -> RewardModel:
        path = Path(path)
        cfg_file, weights = path / "config.json", path / "model.safetensors"
        if not cfg_file.is_file() or not weights.is_file():
            raise RewardModelLoadError(f"{path}: not a ponder reward model (needs config.json and model.safetensors)")
        try:
            meta = json.loads(cfg_file.read_text())
            if meta.get("format") != "ponder-reward/1":
                raise ValueError(f"format is {meta.get('format')!r}, expected 'ponder-reward/1'")
            rm = cls(ModelConfig(**meta["model"]), tokenizer=CharTokenizer.from_dict(meta["tokenizer"]),
                     kind=meta["kind"], aggregation=aggregation or meta["aggregation"], batch_size=batch_size,
                     likelihood=bool(meta.get("likelihood", False)))
        except (ValueError, KeyError, TypeError) as e:
            raise RewardModelLoadError(f"{cfg_file}: {e}") from None
        try:
            rm.load_state_dict(load_file(str(weights)))
        except RuntimeError as e:
            raise RewardModelLoadError(f"{weights}: weights do not fit config.json ({str(e).splitlines()[0]})") from None
        return rm


def bce_loss(rm: RewardModel, examples: Sequence[RewardExample]) -> tuple[Tensor, int]:
    """Mean binary cross-entropy over every scored position of the examples (soft targets allowed)."""
    logits = rm.logits([e.prompt for e in examples], [e.text for e in examples])
    flat, targets = [], []
    for e, x in zip(examples, logits):
        if len(x) != len(e.targets):
            raise ValueError(f"{len(e.targets)} labels for {len(x)} scored positions in {e.text!r}")
        flat.append(x)
        targets.extend(e.targets)
    z = torch.cat(flat)
    return F.binary_cross_entropy_with_logits(z.float(), torch.tensor(targets)), len(targets)


def bradley_terry_loss(rm: RewardModel, pairs: Sequence[PreferencePair]) -> tuple[Tensor, int]:
    """-log sigmoid(r(chosen) - r(rejected)), averaged over pairs."""
    logits = rm.logits([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    last = torch.stack([x[-1] for x in logits]).float()
    chosen, rejected = last[: len(pairs)], last[len(pairs) :]
    return -F.logsigmoid(chosen - rejected).mean(), len(pairs)


def train_reward_model(rm: RewardModel, data: Sequence[RewardExample] | Sequence[PreferencePair], cfg: SFTConfig, *,
                       seed: int, log: Callable[[dict], None] | None = None, phase: str = "reward",
                       progress: bool = True, checkpointing: Checkpointing | None = None) -> dict:
    """Train `rm` in place: BCE on labelled examples (outcome, process) or the Bradley-Terry loss on
    preference pairs (preference). Returns the loop's summary statistics."""
    if not data:
        raise ValueError(f"{phase}: no training data")
    if rm.kind == "preference":
        if not isinstance(data[0], PreferencePair):
            raise ValueError(f"{phase}: a preference reward model trains on PreferencePair data")

        def batch_loss(idx: list[int]) -> tuple[Tensor, int]:
            return bradley_terry_loss(rm, [data[i] for i in idx])
        term = "bradley_terry"
    else:
        if not isinstance(data[0], RewardExample):
            raise ValueError(f"{phase}: a {rm.kind} reward model trains on RewardExample data")

        def batch_loss(idx: list[int]) -> tuple[Tensor, int]:
            return bce_loss(rm, [data[i] for i in idx])
        term = "bce"
    return train_steps(rm, batch_loss, len(data), cfg, seed=seed, log=log, phase=phase, term=term,
                       progress=progress, checkpointing=checkpointing)
