"""Advantage estimators: how much better a sample (or a token) was than expected.

Pure torch functions shared by every learner; a learner picks one (GRPO, Dr. GRPO, RLOO, REINFORCE
with a baseline, PPO's GAE) and hands its output to `ponder.learn.losses.policy_gradient_loss`.
GRPO and RLOO differ by the function called here, nothing else.

Group estimators take the rewards of the K samples drawn for each of G prompts, either as a (G, K)
tensor or flat (G * K,) with `group_size=K` (samples of one prompt adjacent), and return the same
shape. A group whose rewards are all equal carries no learning signal; its advantages are exactly
zero, not rounding noise of the mean divided by a tiny standard deviation.

Advantages are constants of the loss: the functions here return tensors that carry no gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _as_groups(rewards: Tensor, group_size: int | None) -> Tensor:
    """View `rewards` as (G, K): (G, K) as given, or flat (G * K,) split into groups of `group_size`."""
    if not rewards.is_floating_point():
        rewards = rewards.float()
    rewards = rewards.detach()
    if group_size is None:
        if rewards.dim() != 2:
            raise ValueError(f"rewards must be (G, K), or flat with group_size; got shape {tuple(rewards.shape)}")
        return rewards
    if rewards.dim() != 1:
        raise ValueError(f"with group_size, rewards must be flat (G * K,); got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.view(-1, group_size)


def _uniform_groups(groups: Tensor) -> Tensor:
    """(G, 1) bool: the groups whose rewards are all equal."""
    return (groups.amax(dim=1, keepdim=True) == groups.amin(dim=1, keepdim=True))


def group_normalized(rewards: Tensor, group_size: int | None = None, *, eps: float = 1e-6,
                     scale: bool = True) -> Tensor:
    """GRPO's advantage (DeepSeekMath): (r - group mean) / (group std + eps), one value per sample.

    The std is the sample standard deviation (Bessel-corrected), so groups need K >= 2.
    `scale=False` is Dr. GRPO ("Understanding R1-Zero-Like Training"): mean-centred only, since
    dividing by the std up-weights prompts that are nearly always solved or nearly never.
    """
    groups = _as_groups(rewards, group_size)  # (G, K)
    if scale and groups.shape[1] < 2:
        raise ValueError(f"group-normalized advantages need at least 2 samples per group, got {groups.shape[1]}")
    adv = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        adv = adv / (groups.std(dim=1, keepdim=True) + eps)
    adv = adv.masked_fill(_uniform_groups(groups), 0.0)
    return adv.reshape(rewards.shape)


def leave_one_out(rewards: Tensor, group_size: int | None = None) -> Tensor:
    """RLOO's advantage ("Back to Basics", Ahmadian et al. 2024): r_i minus the mean of the other
    K - 1 rewards of its group, an unbiased baseline that does not depend on the sample itself.

    Equals K / (K - 1) * (r_i - group mean), so it is Dr. GRPO's advantage rescaled.
    """
    groups = _as_groups(rewards, group_size)  # (G, K)
    k = groups.shape[1]
    if k < 2:
        raise ValueError(f"leave-one-out advantages need at least 2 samples per group, got {k}")
    others = (groups.sum(dim=1, keepdim=True) - groups) / (k - 1)
    adv = (groups - others).masked_fill(_uniform_groups(groups), 0.0)
    return adv.reshape(rewards.shape)


def baseline_advantage(rewards: Tensor, baseline: float | Tensor) -> Tensor:
    """REINFORCE with a baseline (Williams 1992): r - b, with b e.g. a `RunningMean` of past rewards
    (taken before this batch is added, so a sample's own reward does not bias its baseline)."""
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if isinstance(baseline, Tensor):
        baseline = baseline.detach()
    return rewards.detach() - baseline


class RunningMean:
    """A scalar mean of everything seen so far (`momentum=None`) or an exponential moving average:
    value <- momentum * value + (1 - momentum) * batch mean, started at the first batch's mean."""

    def __init__(self, momentum: float | None = None, initial: float = 0.0) -> None:
        if momentum is not None and not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1) or None, got {momentum}")
        self.momentum = momentum
        self.value = float(initial)
        self.count = 0

    def update(self, values: Tensor | Sequence[float] | float) -> float:
        """Fold a batch of values in; returns the new mean."""
        x = torch.as_tensor(values, dtype=torch.float64).detach().flatten()
        n = x.numel()
        if n == 0:
            return self.value
        batch = float(x.mean())
        if self.count == 0:
            self.value = batch
        elif self.momentum is None:
            self.value += (batch - self.value) * n / (self.count + n)
        else:
            self.value = self.momentum * self.value + (1.0 - self.momentum) * batch
        self.count += n
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.count = float(state["value"]), int(state["count"])


def gae(rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016), per token; returns (advantages, returns).

    rewards, values, mask: (B, T). Rewards are per token (an outcome reward sits at the last real
    token, a process or KL reward anywhere). delta_t = r_t + gamma * V_{t+1} - V_t and
    A_t = delta_t + gamma * lam * A_{t+1}, with V and A taken as 0 after a row's last real token.
    Each row's real tokens must be contiguous (left or right padding); padding gets 0 in both outputs.
    returns = advantages + values: the value head's regression target (TD(lam) return).
    """
    if not (rewards.shape == values.shape == mask.shape) or rewards.dim() != 2:
        raise ValueError(f"rewards, values and mask must share one (B, T) shape, got {tuple(rewards.shape)}, "
                         f"{tuple(values.shape)} and {tuple(mask.shape)}")
    m = mask.detach().to(values.dtype)
    r = rewards.detach().to(values.dtype) * m
    v = values.detach() * m
    adv = torch.zeros_like(v)
    next_adv = torch.zeros_like(v[:, 0])  # (B,)
    next_value = torch.zeros_like(v[:, 0])
    next_real = torch.zeros_like(v[:, 0])  # 1 where column t + 1 is a real token
    for t in range(v.shape[1] - 1, -1, -1):
        delta = r[:, t] + gamma * next_value * next_real - v[:, t]
        next_adv = (delta + gamma * lam * next_real * next_adv) * m[:, t]
        adv[:, t] = next_adv
        next_value, next_real = v[:, t], m[:, t]
    return adv, (adv + v) * m


def whiten(x: Tensor, mask: Tensor, *, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over the real tokens (population std); padding comes back as 0.

    `shift_mean=False` only rescales (keeps the mean), as used for whitening rewards rather than
    advantages. Used by PPO on GAE advantages.
    """
    m = mask.to(x.dtype)
    n = m.sum().clamp_min(1.0)
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / n
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * m


def token_broadcast(seq_adv: Tensor, mask: Tensor) -> Tensor:
    """A sequence-level advantage (B,) given to each of its real tokens: (B, T), 0 on padding."""
    if seq_adv.dim() != 1 or seq_adv.shape[0] != mask.shape[0]:
        raise ValueError(f"seq_adv must be (B,) with B = {mask.shape[0]}, got shape {tuple(seq_adv.shape)}")
    return seq_adv.detach()[:, None] * mask.to(seq_adv.dtype)
