"""Losses of policy learning: pure torch functions shared by every learner.

A learner (GRPO, RLOO, PPO, DPO, ...) is one small file that composes these: an advantage from
`ponder.learn.advantages`, `policy_gradient_loss` with the clip and reduction its paper uses, and
optional per-token extras passed into it (a KL penalty to a reference model, the entropy controls
Clip-Cov and KL-Cov). Per-token inputs are (B, T) with a (B, T) mask that is 1 on real tokens, as
`Policy.logprobs` returns them; losses come back as a scalar tensor plus a dict of float statistics.
Padding is removed by multiplying with the mask, so padded positions must hold finite values (the
policies put 0 there). Advantages, old and reference log-probs are constants: they are detached here.

Reductions (how per-token losses become one number) and gradient accumulation
------------------------------------------------------------------------------
- "token": sum over all real tokens / number of real tokens (DAPO; every token weighs the same).
- "sequence": mean over sequences of each sequence's token mean (original GRPO; a long answer's
  tokens each weigh less).
- "constant": sum over all real tokens / (B * max_len), max_len a fixed constant such as the
  generation limit (Dr. GRPO; no length bias, and the same scale for every batch).

To accumulate gradients over micro-batches, compute the denominator of the whole step once with
`reduction_denominator` (summed over the micro-batches' masks) and pass it as `normalizer` to
every micro-batch: the micro-batch losses then add up to the loss of the whole batch, and so do
their gradients. Without it, each micro-batch divides by its own count and a step of 4 x 1 is not
a step of 1 x 4 (for "token", unless all micro-batches hold the same number of tokens).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Reduction = Literal["token", "sequence", "constant"]
KLKind = Literal["k1", "k2", "k3"]


# -- reductions ------------------------------------------------------------------------------------


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `x` over the positions where `mask` is nonzero (weighted by mask); 0 where there are none."""
    m = mask.to(x.dtype)
    total = (x * m).sum() if dim is None else (x * m).sum(dim)
    count = m.sum() if dim is None else m.sum(dim)
    return total / torch.where(count > 0, count, torch.ones_like(count))


def sequence_logprob(logp: Tensor, mask: Tensor) -> Tensor:
    """Log-probability of each whole completion: the sum of its real tokens' log-probs, (B, T) -> (B,)."""
    return (logp * mask.to(logp.dtype)).sum(dim=-1)


def reduction_denominator(mask: Tensor, reduction: Reduction, *, max_len: int | None = None) -> float:
    """What `reduce_tokens` divides by for this mask: real tokens ("token"), sequences ("sequence"),
    or sequences * max_len ("constant"). Sum it over the micro-batches of a step to get `normalizer`."""
    if reduction == "token":
        return float(mask.sum())
    if reduction == "sequence":
        return float(mask.shape[0])
    if reduction == "constant":
        if max_len is None or max_len < 1:
            raise ValueError(f'reduction "constant" needs max_len >= 1, got {max_len}')
        return float(mask.shape[0] * max_len)
    raise ValueError(f'unknown reduction {reduction!r}; expected "token", "sequence" or "constant"')


def reduce_tokens(values: Tensor, mask: Tensor, reduction: Reduction = "token", *, max_len: int | None = None,
                  normalizer: float | None = None) -> Tensor:
    """Per-token values (B, T) to one scalar by `reduction` (see the module docstring).

    `normalizer` replaces the batch's own denominator, for gradient accumulation. For "sequence"
    each sequence is first averaged over its own tokens (a sequence with no real token gives 0).
    """
    m = mask.to(values.dtype)
    if reduction == "sequence":
        numerator = masked_mean(values, m, dim=-1).sum()
    else:
        numerator = (values * m).sum()
    denominator = reduction_denominator(m, reduction, max_len=max_len) if normalizer is None else normalizer
    return numerator / max(float(denominator), 1e-12)


# -- KL estimators -----------------------------------------------------------------------------------


def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: KLKind = "k3") -> Tensor:
    """Per-token estimators of KL(pi || ref) from tokens sampled from pi (Schulman, "Approximating KL
    divergence", 2020), with log r = ref_logp - logp:

    - k1 = -log r = logp - ref_logp: unbiased, high variance, can be negative.
    - k2 = 0.5 * (log r)^2: biased (low bias when pi and ref are close), always >= 0.
    - k3 = r - 1 - log r: unbiased and always >= 0 (GRPO's KL term, DeepSeekMath).
    Masking is the caller's: reduce with `masked_mean` or pass as `penalty` to `policy_gradient_loss`.
    """
    log_r = ref_logp - logp
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r.square()
    if kind == "k3":
        return torch.expm1(log_r) - log_r
    raise ValueError(f'unknown KL estimator {kind!r}; expected "k1", "k2" or "k3"')


# -- policy gradient ---------------------------------------------------------------------------------


def _clip_range(clip_eps: float | tuple[float, float]) -> tuple[float, float]:
    low, high = (clip_eps, clip_eps) if isinstance(clip_eps, int | float) else clip_eps
    if not (0.0 <= low < 1.0 and high >= 0.0):
        raise ValueError(f"clip_eps needs 0 <= low < 1 and high >= 0, got {clip_eps}")
    return float(low), float(high)


def _token_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    """(B,) sequence advantages broadcast to (B, T); (B, T) passed through; always detached."""
    adv = advantages.detach().to(like.dtype)
    if adv.dim() == 1 and adv.shape[0] == like.shape[0]:
        adv = adv[:, None].expand_as(like)
    if adv.shape != like.shape:
        raise ValueError(f"advantages must be (B,) or (B, T) = {tuple(like.shape)}, got {tuple(advantages.shape)}")
    return adv


def policy_gradient_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
                         clip_eps: float | tuple[float, float] | None = None, reduction: Reduction = "token",
                         max_len: int | None = None, normalizer: float | None = None, keep: Tensor | None = None,
                         penalty: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """The policy-gradient surrogate of REINFORCE/RLOO/GRPO/PPO; returns (loss, stats).

    ratio = exp(logp - old_logp) per token (old_logp is a constant: the policy that sampled).
    Without `clip_eps` the per-token loss is -ratio * A, whose gradient at old_logp = logp.detach()
    is that of -logp * A (REINFORCE). With `clip_eps` it is PPO's (Schulman et al. 2017)
    max(-ratio * A, -clip(ratio, 1 - low, 1 + high) * A): a float for a symmetric range, or
    (low, high) for DAPO's asymmetric clip-higher. A token whose ratio has left the range in the
    direction its advantage pushes gets no gradient.

    advantages: (B,) per sequence or (B, T) per token. keep: optional (B, T) bool, False where the
    token's gradient is cut (its loss still counts, detached), e.g. from `clip_cov_mask`.
    penalty: optional (B, T) per-token term added to the loss before reduction, e.g.
    beta * kl_penalty(logp, ref_logp) or `kl_cov_penalty`. reduction, max_len, normalizer: see the
    module docstring. Stats: clip_frac (real tokens whose clipped branch is active), approx_kl
    (k3 estimate of KL(old || new) per token), ratio_mean.
    """
    if not (logp.shape == old_logp.shape == mask.shape) or logp.dim() != 2:
        raise ValueError(f"logp, old_logp and mask must share one (B, T) shape, got {tuple(logp.shape)}, "
                         f"{tuple(old_logp.shape)} and {tuple(mask.shape)}")
    if logp.dtype in (torch.float16, torch.bfloat16):
        logp = logp.float()  # exp of a half-precision log-ratio is too coarse near 1 for the clip test
    adv = _token_advantages(advantages, logp)
    log_ratio = logp - old_logp.detach().to(logp.dtype)
    ratio = torch.exp(log_ratio)
    per_token = -ratio * adv
    clipped_active = torch.zeros_like(mask, dtype=torch.bool)
    if clip_eps is not None:
        low, high = _clip_range(clip_eps)
        clipped = -torch.clamp(ratio, 1.0 - low, 1.0 + high) * adv
        clipped_active = clipped > per_token
        per_token = torch.maximum(per_token, clipped)
    if keep is not None:
        per_token = torch.where(keep.bool(), per_token, per_token.detach())
    if penalty is not None:
        per_token = per_token + penalty
    loss = reduce_tokens(per_token, mask, reduction, max_len=max_len, normalizer=normalizer)
    with torch.no_grad():
        real = mask.to(logp.dtype)
        stats = {"clip_frac": float(masked_mean(clipped_active.to(logp.dtype), real)),
                 "approx_kl": float(masked_mean(torch.expm1(log_ratio) - log_ratio, real)),
                 "ratio_mean": float(masked_mean(ratio, real))}
    return loss, stats


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, *, clip_eps: float | None = None,
               reduction: Reduction = "token", max_len: int | None = None, normalizer: float | None = None
               ) -> tuple[Tensor, dict[str, float]]:
    """PPO's value loss: 0.5 * (V - R)^2 per token; with `clip_eps`, 0.5 * max((V - R)^2, (V_clip - R)^2)
    where V_clip = old_V + clip(V - old_V, -eps, eps) keeps the value head near the one that
    computed the advantages. Stats: clip_frac (tokens where the clipped branch is active)."""
    old_values, returns = old_values.detach(), returns.detach()
    err = (values - returns).square()
    clipped_active = torch.zeros_like(mask, dtype=torch.bool)
    if clip_eps is not None:
        if clip_eps < 0:
            raise ValueError(f"clip_eps must be >= 0, got {clip_eps}")
        v_clip = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
        err_clip = (v_clip - returns).square()
        clipped_active = err_clip > err
        err = torch.maximum(err, err_clip)
    loss = reduce_tokens(0.5 * err, mask, reduction, max_len=max_len, normalizer=normalizer)
    with torch.no_grad():
        stats = {"value_clip_frac": float(masked_mean(clipped_active.to(values.dtype), mask.to(values.dtype)))}
    return loss, stats


# -- preference learning ----------------------------------------------------------------------------


def dpo_loss(policy_chosen_logp: Tensor, policy_rejected_logp: Tensor, ref_chosen_logp: Tensor,
             ref_rejected_logp: Tensor, *, beta: float, label_smoothing: float = 0.0
             ) -> tuple[Tensor, dict[str, float]]:
    """DPO (Rafailov et al. 2023) on sequence log-probs (B,): mean of -logsigmoid(beta * h) with
    h = (pc - rc) - (pr - rr), the implicit reward margin of chosen over rejected.

    `label_smoothing` = eps assumes a fraction eps of the labels are flipped (conservative DPO):
    -(1 - eps) * logsigmoid(beta * h) - eps * logsigmoid(-beta * h).
    Stats: reward_accuracy (pairs whose chosen implicit reward beta * (pc - rc) is the higher),
    margin, chosen_reward and rejected_reward (means).
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen = policy_chosen_logp - ref_chosen_logp.detach()  # (B,)
    rejected = policy_rejected_logp - ref_rejected_logp.detach()
    logits = beta * (chosen - rejected)
    losses = -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    with torch.no_grad():
        chosen_reward, rejected_reward = beta * chosen, beta * rejected
        stats = {"reward_accuracy": float((chosen_reward > rejected_reward).float().mean()),
                 "margin": float((chosen_reward - rejected_reward).mean()),
                 "chosen_reward": float(chosen_reward.mean()),
                 "rejected_reward": float(rejected_reward.mean())}
    return losses.mean(), stats


# -- entropy -------------------------------------------------------------------------------------------


def entropy_from_logits(logits: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token entropy of the next-token distribution, (B, T, V) -> (B, T), and its mean over real
    tokens. Computed in float32; vocabulary entries with logit -inf contribute 0."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    ent = -(p * logp.masked_fill(p == 0, 0.0)).sum(dim=-1)  # the fill keeps 0 * -inf out, gradient too
    return ent, masked_mean(ent, mask.to(ent.dtype))


def token_covariance(logp: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """Each token's term of the covariance between log-prob and advantage over the batch's real tokens:
    (logp - mean logp) * (A - mean A), (B, T), 0 on padding, no gradient. "The Entropy Mechanism of
    RL for Reasoning LMs" shows entropy falls by this covariance under policy gradient."""
    m = mask.to(logp.dtype)
    lp = logp.detach()
    adv = _token_advantages(advantages, lp)
    return (lp - masked_mean(lp, m)) * (adv - masked_mean(adv, m)) * m


def clip_cov_mask(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, clip_ratio: float = 2e-4,
                  bounds: tuple[float, float] = (1.0, 5.0), generator: torch.Generator,
                  clip_eps: float | tuple[float, float] | None = None) -> tuple[Tensor, dict[str, float]]:
    """Clip-Cov ("The Entropy Mechanism of RL for Reasoning LMs", Cui et al. 2025): a (B, T) bool
    `keep` mask for `policy_gradient_loss`, False on the tokens whose gradient is cut.

    Candidates are real tokens whose `token_covariance` lies in [low, high] = `bounds` (raw values,
    so they depend on the scale of the advantages); with `clip_eps`, tokens that PPO's clip already
    cuts (judged by logp against old_logp) are not candidates. max(1, int(clip_ratio * real tokens))
    of them, at most all, are drawn uniformly with `generator` (a CPU generator; the draw happens
    on the CPU whatever the tensors' device). clip_ratio = 0 cuts nothing.
    Stats: clip_cov_frac (cut tokens / real tokens), clip_cov_candidates, cov_mean.
    """
    low, high = bounds
    if not 0.0 <= clip_ratio <= 1.0 or low > high:
        raise ValueError(f"clip_ratio must be in [0, 1] and bounds low <= high, got {clip_ratio} and {bounds}")
    real = mask.bool()
    cov = token_covariance(logp, advantages, mask)
    candidates = real & (cov >= low) & (cov <= high)
    if clip_eps is not None:
        lo, hi = _clip_range(clip_eps)
        with torch.no_grad():
            ratio = torch.exp(logp.detach() - old_logp.detach())
            adv = _token_advantages(advantages, ratio)
            already = -torch.clamp(ratio, 1.0 - lo, 1.0 + hi) * adv > -ratio * adv
        candidates = candidates & ~already
    n_real = int(real.sum())
    idx = torch.nonzero(candidates.flatten()).squeeze(1).cpu()
    n_cut = 0 if clip_ratio == 0 or n_real == 0 else min(max(1, int(clip_ratio * n_real)), idx.numel())
    keep = torch.ones(real.shape, dtype=torch.bool, device=real.device)  # contiguous, for view(-1)
    if n_cut:
        chosen = idx[torch.randperm(idx.numel(), generator=generator)[:n_cut]]
        keep.view(-1)[chosen.to(keep.device)] = False
    stats = {"clip_cov_frac": n_cut / max(n_real, 1), "clip_cov_candidates": float(idx.numel()),
             "cov_mean": float(masked_mean(cov, mask.to(cov.dtype)))}
    return keep, stats


def kl_cov_penalty(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, ratio: float = 2e-3,
                   coef: float = 1.0, kind: Literal["abs", "k2", "k3"] = "abs") -> tuple[Tensor, dict[str, float]]:
    """KL-Cov ("The Entropy Mechanism of RL for Reasoning LMs", Cui et al. 2025): a (B, T) per-token
    `penalty` for `policy_gradient_loss`, coef * KL(old || new) on the top max(1, int(ratio * real
    tokens)) real tokens by `token_covariance`, 0 elsewhere (ratio = 0: no penalty). The paper uses
    it in place of PPO's clip (call `policy_gradient_loss` without `clip_eps`).

    The token-level KL is estimated from the sampled token as in the paper's released code by
    default, |logp - old_logp| ("abs"); "k2" and "k3" are `kl_penalty(old_logp, logp, kind)`, the
    same estimators with the sampling policy (old) as the first argument. All three are 0 with zero
    gradient at logp = old_logp, so the penalty acts from the second update on a batch onwards.
    Stats: kl_cov_frac (penalised / real tokens), kl_cov_mean (mean penalty over penalised tokens).
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    if kind == "abs":
        kl = (logp - old_logp.detach()).abs()
    elif kind in ("k2", "k3"):
        kl = kl_penalty(old_logp.detach(), logp, kind)
    else:
        raise ValueError(f'unknown KL-Cov estimator {kind!r}; expected "abs", "k2" or "k3"')
    real = mask.bool()
    n_real = int(real.sum())
    k = 0 if ratio == 0 or n_real == 0 else max(1, int(ratio * n_real))
    selected = torch.zeros(real.shape, dtype=torch.bool, device=real.device)
    if k:
        cov = token_covariance(logp, advantages, mask).masked_fill(~real, float("-inf"))
        selected.view(-1)[torch.topk(cov.flatten(), k).indices] = True
    penalty = torch.where(selected, coef * kl, torch.zeros_like(kl))
    with torch.no_grad():
        stats = {"kl_cov_frac": k / max(n_real, 1), "kl_cov_mean": float(penalty.sum()) / max(k, 1)}
    return penalty, stats
