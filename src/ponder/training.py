"""The optimisation loop every supervised trainer shares: the policy's SFT and the reward models.

It sits below both `ponder.reward` and `ponder.learn` (it knows nothing of policies, rewards or
learners: a model with `parameters()` and a loss over a batch of example indices), so reward models
train without importing the learners. What it owns: AdamW with linear warm-up then cosine decay,
gradient clipping, a guard that names the phase, step and term of a non-finite loss or gradient,
seeded batch draws, and mid-phase checkpoints that resume to the same weights as a run never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from ponder.progress import bar as progress_bar
from ponder.signals import Interrupted, stop_requested
from ponder.timing import activity


@dataclass(frozen=True)
class SFTConfig:
    """Settings of one supervised fine-tuning phase."""

    steps: int = 300
    """Optimizer steps."""
    batch_size: int = 64
    """Sequences per step."""
    lr: float = 3e-3
    """Peak learning rate."""
    warmup: int = 20
    """Linear warm-up steps."""
    min_lr_ratio: float = 0.1
    """Learning rate at the end of the cosine decay, as a fraction of `lr`."""
    decay: float = 1.0
    """Share of the steps by whose end the cosine has decayed to its floor; the steps after train at the
    floor. Below 1, the last steps run at a constant low rate, so how far they move the policy says
    whether it had settled rather than how much the last of the decay sharpened it (init's convergence
    check compares greedy accuracy after 80% of the steps with the end)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 disables."""
    log_every: int = 10
    """Write a metrics line every this many steps."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {self.decay}")
        if self.warmup < 0 or self.log_every < 1 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("warmup, grad_clip and weight_decay must be >= 0 and log_every >= 1")


def steps_for(cfg: SFTConfig, epochs: float, examples: int) -> int:
    """Steps of a round that trains `epochs` passes over `examples` at `cfg.batch_size`, at least 1
    and at most `cfg.steps` (epochs 0: always `cfg.steps`): a round that kept little data does not
    overfit it."""
    if epochs == 0:
        return cfg.steps
    return max(1, min(cfg.steps, math.ceil(epochs * examples / cfg.batch_size)))


def lr_at(step: int, cfg: SFTConfig) -> float:
    """Learning rate at `step` (0-based): linear warm-up, then cosine down to min_lr_ratio * lr, reached at
    the last step (decay 1) or after `decay` of the steps, then held."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    end = cfg.steps if cfg.decay == 1 else round(cfg.decay * cfg.steps)
    span = max(1, end - 1 - cfg.warmup)  # step end - 1 (the last step, with decay 1) reaches the floor
    progress = min(1.0, (step - cfg.warmup) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class TrainingDiverged(FloatingPointError):
    """A non-finite loss or gradient; the message names the phase, step and term."""


@dataclass
class Checkpointing:
    """How a training loop saves and resumes its own progress (optimizer, batch order, step).

    `save(tensors, meta)` persists the loop's state together with the policy's weights (the caller
    knows where); `resume` is what `save` last wrote, to continue from, with the policy's weights
    already restored by the caller. `every` is the step interval (0: only when stopping)."""

    save: Callable[[dict[str, torch.Tensor], dict], None]
    every: int = 0
    resume: tuple[dict[str, torch.Tensor], dict] | None = None
    should_stop: Callable[[], bool] = stop_requested


def _loop_state(opt: torch.optim.Optimizer, gen: torch.Generator, step: int, tokens: int,
                losses: list[float]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"generator": gen.get_state()}
    for idx, st in opt.state_dict()["state"].items():
        for name, value in st.items():
            tensors[f"opt.{idx}.{name}"] = value.detach().clone().contiguous()
    return tensors, {"step": step, "tokens": tokens, "losses": losses}


def _restore_loop_state(opt: torch.optim.Optimizer, gen: torch.Generator, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    gen.set_state(tensors["generator"])


def train_steps(model, batch_loss: Callable[[list[int]], tuple[torch.Tensor, int]], n_examples: int,
                cfg: SFTConfig, *, seed: int, log: Callable[[dict], None] | None = None, phase: str = "sft",
                term: str = "loss", progress: bool = True, checkpointing: Checkpointing | None = None,
                probes: Mapping[int, Callable[[], None]] | None = None) -> dict:
    """The optimisation loop every supervised learner shares (SFT, reward models).

    Each step draws `cfg.batch_size` example indices with a seeded generator and minimises
    `batch_loss(indices) -> (loss, tokens)` with AdamW, the warm-up + cosine schedule, gradient
    clipping and a guard that names `phase`, step and `term` on a non-finite loss or gradient.
    `model` needs `parameters()` and `train(mode)`. `probes[k]()` runs after the k-th step, with the
    model in eval mode (a measurement part-way, such as init's convergence check); it must not touch
    the training state. A run resumed past step k does not call it again.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    first, total_tokens, losses = 0, 0, []
    if checkpointing is not None and checkpointing.resume is not None:
        tensors, meta = checkpointing.resume
        _restore_loop_state(opt, gen, tensors)
        first, total_tokens, losses = meta["step"], meta["tokens"], list(meta["losses"])
    model.train(True)
    start = time.perf_counter()
    bar = progress_bar(range(first, cfg.steps), desc=phase, enabled=progress, initial=first, total=cfg.steps)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with activity("training"):
            idx = torch.randint(n_examples, (cfg.batch_size,), generator=gen).tolist()
            loss, tokens = batch_loss(idx)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{phase}: non-finite loss ({term} = {loss.item()}) at step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            if not torch.isfinite(norm):
                raise TrainingDiverged(f"{phase}: non-finite gradient of the {term} loss (norm = {norm.item()}) "
                                       f"at step {step + 1}")
            opt.step()
        total_tokens += tokens
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if log is not None and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
            elapsed = time.perf_counter() - start
            recent = losses[-cfg.log_every :]
            log({"phase": phase, "step": step + 1, "loss": sum(recent) / len(recent), "lr": lr_at(step, cfg),
                 "tokens": total_tokens, "tokens_per_s": total_tokens / max(elapsed, 1e-9)})
        if probes and step + 1 in probes:
            model.train(False)
            probes[step + 1]()
            model.train(True)
        if checkpointing is not None and step + 1 < cfg.steps:
            stop = checkpointing.should_stop()
            if stop or (checkpointing.every and (step + 1) % checkpointing.every == 0):
                checkpointing.save(*_loop_state(opt, gen, step + 1, total_tokens, losses))
            if stop:
                raise Interrupted(f"{phase} at step {step + 1}")
    model.train(False)
    elapsed = time.perf_counter() - start
    return {"steps": cfg.steps, "tokens": total_tokens, "seconds": elapsed,
            "final_loss": sum(losses[-10:]) / max(1, len(losses[-10:])) if losses else float("nan")}
