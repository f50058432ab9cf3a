"""PPO with a learned value head, for outcome-reward RL on a language policy.

Papers: Schulman et al. 2017, "Proximal Policy Optimization Algorithms"; Schulman et al. 2016,
"High-Dimensional Continuous Control Using Generalized Advantage Estimation" (GAE); Ziegler et al.
2019, "Fine-Tuning Language Models from Human Preferences" (KL penalty in the reward, adaptive KL
controller); Zheng et al. 2023, "Secrets of RLHF in Large Language Models Part I: PPO" (PPO-max:
whitened advantages, clipped value loss and a KL constraint are what keep PPO stable).

Each step samples a batch exactly as GRPO does (`ponder.learn.rl`'s helpers), then:
1. log-probs of the policy (old) and of the frozen reference, and values V(s_t) from `ValueHead`, a
   linear layer over a final hidden state before token t (the policy's `model.hidden`, or a
   separate critic's own transformer);
2. per-token rewards: the outcome reward on the last real token, minus beta * (old - ref) on every
   token when there is a KL penalty (k1, the per-token log-ratio, as in Ziegler et al.);
3. GAE advantages and TD(lambda) returns (`advantages.gae`), advantages whitened over the batch;
4. `epochs_per_batch` updates of the same `losses.policy_gradient_loss` that GRPO uses (with
   per-token advantages), plus `vf_coef` times the clipped `losses.value_loss` for a shared critic;
   a detached or separate critic then fits the same value loss in its own phase.

Critic: "shared" trains the value head and, through the value loss, the policy's trunk (one model,
PPO's original setting; the values cost a second forward pass per micro-batch and epoch). "detached"
reads the batch's hidden states once, before the policy moves, and fits only the head on them.
"separate" is its own transformer, a copy of the policy at the start, with the head on top (the
usual RLHF setting: Ouyang et al. 2022 and PPO-max start the critic from a trained model): it can
learn values the policy's features do not expose linearly, at the cost of its own forward and
backward passes. The detached and separate critics are fitted in `value_epochs` passes of their own
optimizer after the policy's updates (a critic phase, as in Cobbe et al. 2020, "Phasic Policy
Gradient"), so the policy is updated by the policy loss alone. A fresh head predicts 0 everywhere, a
poor baseline, so `value_warmup` batches can fit it before the policy's first update; pass the
trained critic back in (`value_head`) to keep it across rounds, as `ponder run` does.

KL control: with `kl_target` None, beta stays `kl_coef`. With a target, after each batch beta is
multiplied by 1 + clip(KL / target - 1, -0.2, 0.2) * B / `kl_horizon`, where KL is the batch's mean
per-sequence sum of (old - ref) and B its number of samples (Ziegler et al.'s proportional
controller): beta grows while the policy drifts further than the target from the reference, shrinks
while it stays closer, and changes by at most 20% per `kl_horizon` samples.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ponder.learn import losses as L
from ponder.learn.advantages import gae, whiten
from ponder.learn.base import Learner, Round
from ponder.learn.rl import (
    Rollout,
    draw_problems,
    make_reference,
    micro_batches,
    prepare,
    round_figures,
    sample_rollout,
    step_record,
    summary,
    update,
    warmup_lr,
)
from ponder.learn.scoring import completion_states
from ponder.policy.base import Policy
from ponder.progress import bar as progress_bar
from ponder.reward.base import OutcomeReward
from ponder.reward.verifier import VerifierReward
from ponder.signals import check_stop
from ponder.tasks.base import Task
from ponder.timing import timed
from ponder.types import Problem


class ValueHead(nn.Module):
    """V(s_t) from a final hidden state (B, T, D) -> (B, T); starts at exactly 0. With `trunk` (a
    separate critic's own transformer) the states come from it, otherwise from the policy."""

    def __init__(self, d_model: int, trunk: nn.Module | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.trunk = trunk

    def forward(self, hidden: Tensor) -> Tensor:
        return self.linear(hidden).squeeze(-1)


CRITICS = ("shared", "detached", "separate")


def new_critic(policy, critic: str) -> ValueHead:
    """A fresh critic for `policy`: a zero head, on a trainable copy of its transformer if "separate"."""
    trunk = None
    if critic == "separate":
        trunk = copy.deepcopy(policy.model)
        for p in trunk.parameters():
            p.requires_grad_(True)
    return ValueHead(policy.model.cfg.d_model, trunk)


@dataclass(frozen=True)
class PPOConfig:
    """Settings of PPO with a value head."""

    steps: int = 100
    """Sampled batches; each gives `epochs_per_batch` updates."""
    prompts_per_step: int = 16
    """Problems drawn per batch."""
    samples_per_prompt: int = 4
    """Completions sampled per problem (PPO needs no groups; 1 is fine)."""
    temperature: float = 1.0
    """Sampling temperature (see `ponder.learn.rl` on temperatures other than 1)."""
    max_new_tokens: int = 96
    """Generation cap per sample; also the length constant of reduction "constant"."""
    lr: float = 1e-4
    """AdamW learning rate of the policy (constant after warm-up)."""
    value_lr_scale: float = 10.0
    """The value head's learning rate as a multiple of `lr` (it starts from zero)."""
    warmup: int = 0
    """Linear warm-up, in updates."""
    clip_eps: float | tuple[float, float] = 0.2
    """Clip range of the policy ratio (a float, or (low, high))."""
    value_clip: float | None = 0.2
    """Clip range of the value change from the values that computed the advantages; None: no clip."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    critic: str = "separate"
    """"shared" (the value loss also trains the policy's trunk), "detached" (a head on the policy's
    states; only the head learns) or "separate" (a head on its own copy of the policy's transformer)."""
    value_epochs: int = 4
    """Detached and separate critics: passes of the critic's own optimizer over each batch."""
    value_warmup: int = 0
    """Detached and separate critics: batches sampled only to fit a fresh critic before the policy's
    first update (skipped when a trained `value_head` is passed in); their tokens count as sampled."""
    epochs_per_batch: int = 4
    """Updates per sampled batch."""
    micro_batch: int = 0
    """Sequences per forward/backward pass, gradients accumulated; 0: the whole batch."""
    reduction: str = "token"
    """"token", "sequence" or "constant" (see `ponder.learn.losses`), for both losses."""
    gamma: float = 1.0
    """Discount per token."""
    lam: float = 0.95
    """GAE lambda."""
    whiten_advantages: bool = True
    """Normalise the advantages to mean 0, std 1 over the batch's real tokens."""
    kl_coef: float = 0.05
    """beta, the weight of the per-token KL penalty in the reward (initial value if adaptive); 0 and
    no `kl_target`: no reference model."""
    kl_target: float | None = None
    """Target KL per sequence of the adaptive controller; None: fixed beta."""
    kl_horizon: int = 10000
    """Samples over which the adaptive controller changes beta by at most 20%."""
    grad_clip: float = 1.0
    """Clip the global gradient norm (policy and head) to this; 0 disables."""
    log_every: int = 1
    """Pass a step's record to `log` every this many steps (every step is kept in `history`)."""

    def __post_init__(self) -> None:
        def bad(name: str, need: str) -> ValueError:
            return ValueError(f"{name} must be {need}, got {getattr(self, name)!r}")

        for name in ("prompts_per_step", "samples_per_prompt", "max_new_tokens", "epochs_per_batch", "log_every",
                     "kl_horizon", "value_epochs"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        for name in ("steps", "warmup", "micro_batch", "vf_coef", "kl_coef", "grad_clip", "value_warmup"):
            if getattr(self, name) < 0:
                raise bad(name, ">= 0")
        for name in ("temperature", "lr", "value_lr_scale"):
            if not getattr(self, name) > 0:
                raise bad(name, "> 0")
        for name in ("gamma", "lam"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "in [0, 1]")
        if self.critic not in CRITICS:
            raise bad("critic", '"shared", "detached" or "separate"')
        if self.value_warmup and self.critic == "shared":
            raise ValueError('value_warmup needs critic = "detached" or "separate" (a shared critic cannot fit '
                             'without moving the policy)')
        if self.reduction not in ("token", "sequence", "constant"):
            raise bad("reduction", '"token", "sequence" or "constant"')
        if self.value_clip is not None and self.value_clip < 0:
            raise bad("value_clip", "None or >= 0")
        if self.kl_target is not None and not (self.kl_target > 0 and self.kl_coef > 0):
            raise bad("kl_target", "None, or > 0 with kl_coef > 0 (the controller scales kl_coef)")
        low, high = (self.clip_eps, self.clip_eps) if isinstance(self.clip_eps, int | float) else self.clip_eps
        if not (0 <= low < 1 and high >= 0):
            raise bad("clip_eps", "a float in [0, 1) or (low, high)")


def adaptive_kl(beta: float, kl: float, target: float, horizon: int, n_samples: int) -> float:
    """One step of the proportional KL controller (Ziegler et al. 2019), see the module docstring."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + error * n_samples / horizon)


def pad_cat(parts: Sequence[Tensor]) -> Tensor:
    """Per-micro-batch (b, T_j) tensors to one (B, max T_j) tensor, zero-padded on the right."""
    T = max(p.shape[1] for p in parts)
    return torch.cat([F.pad(p, (0, T - p.shape[1])) for p in parts])


def token_rewards(rewards: Tensor, mask: Tensor, kl: Tensor | None = None, beta: float = 0.0) -> Tensor:
    """Per-token rewards (B, T): each outcome reward (B,) on its row's last real token, minus
    beta * kl (B, T) on every real token when `kl` is given. Rows must have a real token."""
    out = torch.zeros_like(mask)
    out[torch.arange(mask.shape[0]), mask.sum(1).long() - 1] = rewards.to(mask.dtype)
    return out - beta * kl * mask if kl is not None else out


def ppo_targets(rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float, lam: float, whiten_adv: bool = True,
                kl: Tensor | None = None, beta: float = 0.0) -> tuple[Tensor, Tensor]:
    """(advantages, returns), both (B, T), from outcome rewards (B,), old values and mask (B, T),
    and optionally the per-token KL to the reference with its weight beta; 0 on padding."""
    adv, returns = gae(token_rewards(rewards, mask, kl, beta), values, mask, gamma=gamma, lam=lam)
    return (whiten(adv, mask) if whiten_adv else adv), returns


def critic_values(policy, head: ValueHead, rollout: Rollout, r: Sequence[int], *, grad: bool) -> Tensor:
    """The critic's values on micro-batch rows `r` (b, T); gradients reach its trunk (the policy's for
    a head without one) only with `grad`."""
    with torch.set_grad_enabled(grad):
        hidden = completion_states(policy, *rollout.rows(r)[:3], hidden=True, model=head.trunk)[0]
    return head(hidden)


@timed("training")
def fit_critic(values_of: Callable[[int, list[int]], Tensor], params: list[Tensor], opt: torch.optim.Optimizer,
               rows: list[list[int]], old_values: Tensor, returns: Tensor, mask: Tensor, cfg: PPOConfig,
               normalizer: float) -> list[float]:
    """The critic's own phase: `cfg.value_epochs` updates against the batch's returns, where
    `values_of(j, rows_j)` gives micro-batch j's values with gradients; returns each update's value
    loss (the first is the critic's fit before any update on this batch)."""
    losses = []
    for _ in range(cfg.value_epochs):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for j, r in enumerate(rows):
            v = values_of(j, r)
            T = v.shape[1]
            vl, _ = L.value_loss(v, old_values[r, :T], returns[r, :T], mask[r, :T], clip_eps=cfg.value_clip,
                                 reduction=cfg.reduction, max_len=cfg.max_new_tokens, normalizer=normalizer)
            vl.backward()
            total += vl.item()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        losses.append(total)
    return losses


def train_ppo(policy: Policy, reward: OutcomeReward | None, task: Task, problems: Sequence[Problem], cfg: PPOConfig,
              *, seed: int, value_head: ValueHead | None = None, log: Callable[[dict], None] | None = None,
              progress: bool = True, phase: str = "ppo") -> dict:
    """Train `policy` (the built-in engine: it needs `.model.hidden`) and a value head in place with
    PPO; returns summary statistics like `rl.train_rl`'s, plus "value_head" (the trained head; pass it
    as `value_head` next time to keep it, which also skips `value_warmup`).

    Step records add value_loss and value_loss_end (the critic's fit to the batch before and after its
    updates), value_mean, return_mean, value_clip_frac, kl_coef (beta used), kl_seq (the batch's
    per-sequence KL to the reference, which the adaptive controller tracks) and critic_only (a
    `value_warmup` batch: the policy did not move). Batches are numbered from 1, warm-up first.
    train_tokens counts a separate critic's training tokens too (its transformer is trained as much as
    the policy); a detached head's updates cost no transformer pass and count nothing."""
    if not problems:
        raise ValueError(f"{phase}: no training problems")
    if not hasattr(getattr(policy, "model", None), "hidden"):
        raise TypeError(f"{phase}: PPO's value head needs the built-in engine's hidden states (policy.model.hidden)")
    reward = reward if reward is not None else VerifierReward(task)
    own = cfg.critic != "shared"  # the critic has its own optimizer and phase
    warm = cfg.value_warmup if value_head is None else 0
    head = value_head if value_head is not None else new_critic(policy, cfg.critic)
    if (head.trunk is not None) != (cfg.critic == "separate"):
        raise ValueError(f"{phase}: the value_head passed in does not match critic = {cfg.critic!r}")
    params = [p for p in policy.parameters() if p.requires_grad]
    head_params = list(head.parameters())
    opt = torch.optim.AdamW([{"params": params}] + ([] if own else [{"params": head_params,
                                                                      "lr_scale": cfg.value_lr_scale}]),
                            lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    head_opt = torch.optim.AdamW(head_params, lr=cfg.lr * cfg.value_lr_scale, betas=(0.9, 0.95), weight_decay=0.0)
    reference = make_reference(policy) if cfg.kl_coef > 0 or cfg.kl_target is not None else None
    gen = torch.Generator().manual_seed(seed)
    beta, max_len = cfg.kl_coef, cfg.max_new_tokens
    totals = {"sample_tokens": 0, "sample_flops": 0.0, "train_tokens": 0}
    history: list[dict] = []
    start = time.perf_counter()
    policy.train(True)
    for step in progress_bar(range(-warm, cfg.steps), desc=phase, enabled=progress):
        check_stop(f"{phase} step {step + 1}" if step >= 0 else f"{phase} critic warm-up batch {step + warm + 1}")
        batch = draw_problems(problems, cfg.prompts_per_step, gen)
        rollout = sample_rollout(policy, reward, batch, group_size=cfg.samples_per_prompt, temperature=cfg.temperature,
                                 max_new_tokens=max_len, seed=int(torch.randint(2**62, (1,), generator=gen)))
        rows = micro_batches(len(rollout.texts), cfg.micro_batch)
        prepare(policy, rollout, rows, reference, old=True)
        mask = pad_cat(rollout.masks)
        with torch.no_grad():
            hidden = [completion_states(policy, *rollout.rows(r)[:3], hidden=True, model=head.trunk)[0]
                      for r in rows]
            values = pad_cat([head(h) for h in hidden]) * mask
        kl = pad_cat(rollout.old) - pad_cat(rollout.ref) if reference is not None else None
        adv, returns = ppo_targets(rollout.rewards, values, mask, gamma=cfg.gamma, lam=cfg.lam,
                                   whiten_adv=cfg.whiten_advantages, kl=kl, beta=beta)
        normalizer = L.reduction_denominator(mask, cfg.reduction, max_len=max_len)
        value_losses: list[float] = []

        def loss_fn(j: int, r: Tensor, logp: Tensor, mask: Tensor, rollout: Rollout = rollout, adv: Tensor = adv,
                    returns: Tensor = returns, values: Tensor = values, normalizer: float = normalizer,
                    value_losses: list[float] = value_losses) -> tuple[Tensor, dict[str, float]]:
            T = mask.shape[1]
            pg, stats = L.policy_gradient_loss(logp, rollout.old[j], adv[r, :T], mask, clip_eps=cfg.clip_eps,
                                               reduction=cfg.reduction, max_len=max_len, normalizer=normalizer)
            if own:
                return pg, stats
            v = critic_values(policy, head, rollout, r.tolist(), grad=True)
            vl, vstats = L.value_loss(v, values[r, :T], returns[r, :T], mask, clip_eps=cfg.value_clip,
                                      reduction=cfg.reduction, max_len=max_len, normalizer=normalizer)
            value_losses.append(vl.item())
            return pg + cfg.vf_coef * vl, {**stats, **vstats}

        if step >= 0:
            lr = warmup_lr(step * cfg.epochs_per_batch, cfg.lr, cfg.warmup)
            stats = update(policy, opt, params + ([] if own else head_params), rollout, rows, loss_fn,
                           epochs=cfg.epochs_per_batch, grad_clip=cfg.grad_clip, lr=lr, phase=phase, step=step)
            per_epoch = [sum(value_losses[e * len(rows) : (e + 1) * len(rows)]) for e in range(cfg.epochs_per_batch)]
        else:
            lr, stats, per_epoch = 0.0, {"train_tokens": 0}, []
        if own:
            def values_of(j: int, r: list[int], hidden: list[Tensor] = hidden, rollout: Rollout = rollout) -> Tensor:
                if head.trunk is None:  # detached: the states the batch was scored with
                    return head(hidden[j])
                return critic_values(policy, head, rollout, r, grad=True)

            per_epoch = fit_critic(values_of, head_params, head_opt, rows, values, returns, mask, cfg, normalizer)
            if head.trunk is not None:  # a separate critic's transformer trains on every token, value_epochs times
                stats["train_tokens"] += int(mask.sum()) * cfg.value_epochs
        real = mask.bool()
        kl_seq = float((kl * mask).sum(1).mean()) if kl is not None else None
        stats.update(value_loss=per_epoch[0], value_loss_end=per_epoch[-1], value_mean=float(values[real].mean()),
                     return_mean=float(returns[real].mean()), kl_coef=beta, kl_seq=kl_seq, critic_only=step < 0)
        history.append(step_record(phase, step + warm, rollout, adv[real], stats, totals, lr=lr, start=start))
        if cfg.kl_target is not None and kl_seq is not None and step >= 0:
            beta = adaptive_kl(beta, kl_seq, cfg.kl_target, cfg.kl_horizon, len(rollout.texts))
        if log is not None and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps or step < 0):
            log(dict(history[-1]))
    policy.train(False)
    return {**summary(cfg.steps, cfg.steps * cfg.epochs_per_batch, totals, history, start), "kl_coef": beta,
            "value_head": head}


class PPOLearner(Learner):
    """The registry's `ppo`: on-policy; it carries its critic from round to round in the run directory
    (`checkpoints/<round>.critic.safetensors`, beside the round's checkpoint)."""

    name = table = "ppo"
    builtin_only = True
    CRITIC = "critic.safetensors"

    def learn(self, policy, cfg, rnd: Round, data=None, stats=None, checkpointing=None) -> dict:
        from safetensors.torch import load_model, save_model

        settings = self.settings(cfg)
        head, previous = None, rnd.store.previous(self.CRITIC)
        if previous is not None:  # the critic the previous round trained; the first round starts a fresh one
            head = new_critic(getattr(policy, "local", policy), settings.critic)
            load_model(head, str(previous))
        out = train_ppo(policy, rnd.reward, rnd.task, rnd.problems, settings, seed=rnd.seed, log=rnd.log,
                        progress=rnd.progress, phase=rnd.phase, value_head=head)
        path = rnd.store.path(self.CRITIC)
        tmp = path.with_name(path.name + ".tmp")
        save_model(out.pop("value_head"), str(tmp))  # safetensors (tied weights stored once), written atomically
        tmp.replace(path)
        return round_figures(out)


LEARNER = PPOLearner()
