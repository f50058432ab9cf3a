"""On-policy policy-gradient learning from outcome rewards: REINFORCE, RLOO, GRPO and Dr. GRPO in one loop.

Papers: Williams 1992 (REINFORCE with a baseline); Ahmadian et al. 2024, "Back to Basics" (RLOO); Shao et
al. 2024, "DeepSeekMath" (GRPO); Liu et al. 2025, "Understanding R1-Zero-Like Training" (Dr. GRPO); Cui
et al. 2025, "The Entropy Mechanism of RL for Reasoning LMs" (Clip-Cov, KL-Cov).

Each step samples `group_size` completions of `prompts_per_step` problems, scores them, turns rewards
into one advantage per sample and makes `epochs_per_batch` updates of `losses.policy_gradient_loss`.
The algorithms differ only in the advantage function, looked up in `ADVANTAGES`. `reduction=None`
takes each paper's own: "sequence" for GRPO, "constant" (sum / (B * max_new_tokens)) for Dr. GRPO,
"token" for REINFORCE and RLOO.

`old_logp`: `Sample.logprobs` are the untempered policy's, but with `temperature != 1` the samples
come from the tempered one, so neither is the behaviour policy's probability. The ratio's denominator
is the current policy's untempered log-probs, taken without gradient in the first epoch before any
update (that epoch's ratio is exactly 1, its gradient REINFORCE's; later epochs see how far the
updates moved). With temperature != 1 this is the untempered policy's gradient on tempered samples:
biased, but with fewer junk samples (temperature 1 is unbiased). The logged `logp_gap` (mean
|recomputed - sampled| log-prob, 0 up to rounding) catches a sampler and learner that disagree.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from ponder.learn import losses as L
from ponder.learn.advantages import RunningMean, baseline_advantage, group_normalized, leave_one_out
from ponder.learn.base import Learner, Round
from ponder.learn.memory import ModelShape, budget_micro_batches, longest_row, model_shape, row_lengths
from ponder.learn.scoring import score_completions
from ponder.policy.base import Policy
from ponder.progress import bar as progress_bar
from ponder.reward.base import OutcomeReward
from ponder.reward.verifier import VerifierReward
from ponder.signals import check_stop
from ponder.tasks.base import Task
from ponder.timing import timed
from ponder.training import TrainingDiverged
from ponder.types import Cost, Problem, Sampling


def _reinforce(rewards: Tensor, group_size: int, baseline: RunningMean) -> Tensor:
    adv = baseline_advantage(rewards, baseline.value)  # the baseline has seen earlier batches only
    baseline.update(rewards)
    return adv


AdvantageFn = Callable[[Tensor, int, RunningMean], Tensor]  # (flat rewards (B,), group_size, baseline) -> (B,)
ADVANTAGES: dict[str, AdvantageFn] = {
    "reinforce": _reinforce,
    "rloo": lambda rewards, k, baseline: leave_one_out(rewards, k),
    "grpo": lambda rewards, k, baseline: group_normalized(rewards, k),
    "dr_grpo": lambda rewards, k, baseline: group_normalized(rewards, k, scale=False),
}
PAPER_REDUCTION = {"reinforce": "token", "rloo": "token", "grpo": "sequence", "dr_grpo": "constant"}
PAPER_COV_RATIO = {"clip_cov": 2e-4, "kl_cov": 2e-3}


@dataclass(frozen=True)
class RLConfig:
    """Settings of on-policy policy-gradient learning (REINFORCE / RLOO / GRPO / Dr. GRPO)."""

    advantage: str = "grpo"
    """Advantage estimator, a key of `ADVANTAGES`: "reinforce", "rloo", "grpo" or "dr_grpo"."""
    steps: int = 100
    """Sampled batches; each gives `epochs_per_batch` policy updates."""
    prompts_per_step: int = 16
    """Problems drawn per batch."""
    group_size: int = 8
    """Completions sampled per problem (group-relative advantages need >= 2)."""
    temperature: float = 1.0
    """Sampling temperature (see the module docstring for what != 1 means for the gradient)."""
    max_new_tokens: int = 96
    """Generation cap per sample; also the length constant of reduction "constant"."""
    lr: float = 1e-4
    """AdamW learning rate (constant after warm-up)."""
    warmup: int = 0
    """Linear warm-up, in policy updates."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    clip_eps: float | tuple[float, float] | None = 0.2
    """PPO clip range of the ratio (a float, or (low, high) for clip-higher); None: no clip."""
    epochs_per_batch: int = 1
    """Updates per sampled batch (PPO-style reuse; > 1 makes the ratio and the clip matter)."""
    micro_batch: int = 0
    """Sequences per forward/backward pass, gradients accumulated to one update; 0: the whole batch."""
    memory_mb: float = 0.0
    """Most estimated activation memory (MiB) of one forward/backward pass: each step's rows are split
    into the micro-batches that fit (`ponder.learn.memory`; with `micro_batch` too, at most that many
    rows each); 0: `micro_batch` alone decides."""
    reduction: str | None = None
    """"token", "sequence" or "constant" (see `ponder.learn.losses`); None: the advantage's paper's."""
    kl_coef: float = 0.0
    """Weight of the per-token KL penalty to a frozen copy of the starting policy; 0: no reference."""
    kl_kind: str = "k3"
    """KL estimator of the penalty: "k1", "k2" or "k3"."""
    entropy_control: str = "none"
    """"none", "clip_cov" (cut the gradient of a few high-covariance tokens) or "kl_cov" (penalise them)."""
    cov_ratio: float | None = None
    """Fraction of real tokens Clip-Cov cuts (covariance in [1, 5]) or KL-Cov penalises (the highest
    covariance); None: the paper's, 2e-4 and 2e-3."""
    kl_cov_coef: float = 1.0
    """KL-Cov: weight of its penalty."""
    baseline_momentum: float | None = 0.9
    """REINFORCE: EMA momentum of the running-mean reward baseline (None: mean of all rewards so far)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 disables."""
    log_every: int = 1
    """Pass a step's record to `log` every this many steps (every step is kept in `history`)."""

    def __post_init__(self) -> None:
        def bad(name: str, need: str) -> ValueError:
            return ValueError(f"{name} must be {need}, got {getattr(self, name)!r}")

        for name, allowed in (("advantage", tuple(ADVANTAGES)), ("reduction", (None, "token", "sequence", "constant")),
                              ("kl_kind", ("k1", "k2", "k3")), ("entropy_control", ("none", "clip_cov", "kl_cov"))):
            if getattr(self, name) not in allowed:
                raise bad(name, f"one of {allowed}")
        for name in ("prompts_per_step", "max_new_tokens", "epochs_per_batch", "log_every", "group_size"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        if self.group_size < 2 and self.advantage != "reinforce":
            raise bad("group_size", f">= 2 for advantage {self.advantage!r}")
        for name in ("steps", "warmup", "micro_batch", "memory_mb", "weight_decay", "grad_clip", "kl_coef",
                     "kl_cov_coef"):
            if getattr(self, name) < 0:
                raise bad(name, ">= 0")
        if not (self.temperature > 0 and self.lr > 0):
            raise bad("temperature" if self.temperature <= 0 else "lr", "> 0")
        if self.clip_eps is not None:
            low, high = (self.clip_eps, self.clip_eps) if isinstance(self.clip_eps, int | float) else self.clip_eps
            if not (0 <= low < 1 and high >= 0):
                raise bad("clip_eps", "None, a float in [0, 1) or (low, high)")
        if self.entropy_control == "kl_cov" and self.epochs_per_batch < 2:
            raise ValueError("entropy_control 'kl_cov' needs epochs_per_batch >= 2: its penalty is zero, with zero "
                             "gradient, on the first update of a batch, so with one update it does nothing")
        if self.cov_ratio is not None and not 0 <= self.cov_ratio <= 1:
            raise bad("cov_ratio", "None or in [0, 1]")
        if self.baseline_momentum is not None and not 0 <= self.baseline_momentum < 1:
            raise bad("baseline_momentum", "None or in [0, 1)")


@dataclass
class Rollout:
    """One batch of samples, flat: B = problems * group_size rows, the samples of a problem adjacent.
    `lengths` are the sampled token counts (EOS included). Per micro-batch j (filled by `prepare` or
    by the first epoch of `update`): old[j] the policy's log-probs before any update, masks[j], and
    ref[j] the reference's; means over tokens of the entropy (None if not computable), `kl_ref`, `gap`."""

    prompts: list[str]
    texts: list[str]
    eos: list[bool]
    lengths: list[int]
    sample_logp: list[tuple[float, ...]]
    rewards: Tensor
    cost: Cost
    token_ids: list[tuple[int, ...]] = field(default_factory=list)
    """The sampled ids (end token included), for policies that score ids (`logprobs_of_ids`)."""
    old: list[Tensor] = field(default_factory=list)
    masks: list[Tensor] = field(default_factory=list)
    ref: list[Tensor] = field(default_factory=list)
    entropy: float | None = None
    kl_ref: float | None = None
    gap: float = 0.0

    def rows(self, r: Sequence[int]) -> tuple[list[str], list[str], list[bool], list[tuple[int, ...]] | None]:
        ids = [self.token_ids[i] for i in r] if self.token_ids else None
        return [self.prompts[i] for i in r], [self.texts[i] for i in r], [self.eos[i] for i in r], ids

    def length_mask(self) -> Tensor:
        return (torch.arange(max(self.lengths))[None, :] < torch.tensor(self.lengths)[:, None]).float()


def draw_problems(problems: Sequence[Problem], n: int, gen: torch.Generator) -> list[Problem]:
    """`n` problems, without repeats when there are enough."""
    n_all = len(problems)
    idx = torch.randperm(n_all, generator=gen)[:n] if n <= n_all else torch.randint(n_all, (n,), generator=gen)
    return [problems[i] for i in idx.tolist()]


def sample_rollout(policy: Policy, reward: OutcomeReward, problems: Sequence[Problem], *, group_size: int,
                   temperature: float, max_new_tokens: int, seed: int) -> Rollout:
    """Sample `group_size` completions per problem and score them all in one reward call."""
    sampling = Sampling(n=group_size, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    groups = policy.generate([p.prompt for p in problems], sampling)
    flat = [(p, s) for p, g in zip(problems, groups) for s in g]
    rewards = torch.tensor(reward.score([p for p, _ in flat], [s.text for _, s in flat]), dtype=torch.float32)
    return Rollout([p.prompt for p, _ in flat], [s.text for _, s in flat], [s.finish == "eos" for _, s in flat],
                   [len(s.token_ids) for _, s in flat], [s.logprobs for _, s in flat], rewards,
                   Cost.total(s.cost for _, s in flat), token_ids=[tuple(s.token_ids) for _, s in flat])


def check_memory_budget(policy: Policy, problems: Sequence[Problem], cfg, phase: str) -> ModelShape:
    """The model's shape for `budget_micro_batches`, once the longest possible row (the longest prompt,
    `max_new_tokens` and EOS) is known to fit `cfg.memory_mb` alone: else ValueError naming the setting,
    before anything is sampled."""
    longest, need = longest_row(policy, [p.prompt for p in problems], cfg.max_new_tokens)
    if need > cfg.memory_mb:
        raise ValueError(f"{phase}: memory_mb = {cfg.memory_mb:g} is too small: one sequence of up to {longest} "
                         f"tokens (the longest prompt + max_new_tokens + EOS) needs about {need:.1f} MiB of "
                         f"activations; raise memory_mb to at least {need:.1f} or lower max_new_tokens")
    return model_shape(policy)


def micro_batches(n: int, size: int) -> list[list[int]]:
    """Row indices of each micro-batch (`size` 0: one batch of all n)."""
    return [list(range(i, min(i + (size or n), n))) for i in range(0, n, size or n)]


def _record_old(rollout: Rollout, r: Sequence[int], logp: Tensor, mask: Tensor, ent: Tensor | None) -> None:
    """Keep a micro-batch's pre-update log-probs, mask, entropy and logp_gap; check the token counts."""
    if [int(n) for n in mask.sum(1).tolist()] != [rollout.lengths[i] for i in r]:
        raise ValueError("the policy scores a different number of tokens than it sampled: its tokenizer does "
                         "not round-trip its own samples, so the learner cannot score them")
    rollout.old.append(logp.detach())
    rollout.masks.append(mask)
    total = sum(rollout.lengths)
    for b, i in enumerate(r):
        sampled = torch.tensor(rollout.sample_logp[i][: rollout.lengths[i]])
        rollout.gap += float((logp.detach()[b, : len(sampled)] - sampled).abs().sum()) / total
    if ent is not None:
        rollout.entropy = (rollout.entropy or 0.0) + float((ent * mask).sum()) / total
    if len(rollout.ref) >= len(rollout.old):  # k3 estimate of KL(policy || reference)
        kl = L.kl_penalty(logp.detach(), rollout.ref[len(rollout.old) - 1], "k3")
        rollout.kl_ref = (rollout.kl_ref or 0.0) + float((kl * mask).sum()) / total


def prepare(policy: Policy, rollout: Rollout, rows: list[list[int]], reference: Policy | None, *,
            old: bool = False) -> Rollout:
    """No-gradient passes before the updates: the reference's log-probs, and with `old` the policy's
    own (otherwise `update` takes them from its first epoch, before the weights move)."""
    with torch.no_grad():
        for r in rows:
            if reference is not None:
                rollout.ref.append(score_completions(reference, *rollout.rows(r))[0])
            if old:
                _record_old(rollout, r, *score_completions(policy, *rollout.rows(r), entropy=True))
    return rollout


def make_reference(policy: Policy) -> Policy:
    """A frozen copy of `policy` as it is now (the KL anchor)."""
    ref = copy.deepcopy(policy)
    for p in ref.parameters():
        p.requires_grad_(False)
    ref.train(False)
    return ref


# (micro-batch j, its rows (b,), logp (b, T), mask (b, T)) -> (its share of the batch's loss, stats)
LossFn = Callable[[int, Tensor, Tensor, Tensor], tuple[Tensor, dict[str, float]]]


@timed("training")
def update(policy: Policy, opt: torch.optim.Optimizer, params: list[Tensor], rollout: Rollout, rows: list[list[int]],
           loss_fn: LossFn, *, epochs: int, grad_clip: float, lr: float, phase: str, step: int) -> dict[str, float]:
    """`epochs` optimizer updates on one rollout, each accumulating the gradients of all micro-batches
    (`loss_fn` divides by the whole batch's normalizer); the first epoch records the pre-update
    log-probs if `prepare` did not. Raises TrainingDiverged on a non-finite loss or gradient. Returns
    token-weighted means of the loss stats, mean loss and gradient norm, and the tokens trained."""
    sums: dict[str, float] = {}
    tokens, norms, losses = 0.0, [], []
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    for epoch in range(epochs):
        opt.zero_grad(set_to_none=True)
        loss_total = 0.0
        for j, r in enumerate(rows):
            logp, mask, ent = score_completions(policy, *rollout.rows(r), entropy=len(rollout.old) <= j)
            if len(rollout.old) <= j:
                _record_old(rollout, r, logp, mask, ent)
            loss, stats = loss_fn(j, torch.tensor(r), logp, mask)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{phase}: non-finite loss {loss.item()} at step {step + 1}, epoch {epoch + 1}")
            loss.backward()
            n = float(mask.sum())
            tokens, loss_total = tokens + n, loss_total + loss.item()
            sums = {k: sums.get(k, 0.0) + v * n for k, v in stats.items()}
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
        if not torch.isfinite(norm):
            raise TrainingDiverged(f"{phase}: non-finite gradient (norm = {norm.item()}) at step {step + 1}, "
                                   f"epoch {epoch + 1}")
        opt.step()
        getattr(policy, "weights_changed", lambda: None)()  # the prefix cache holds stale keys/values
        norms, losses = norms + [float(norm)], losses + [loss_total]
    return {**{k: v / max(tokens, 1.0) for k, v in sums.items()}, "loss": sum(losses) / epochs,
            "grad_norm": sum(norms) / epochs, "train_tokens": int(tokens)}


def warmup_lr(update_index: int, lr: float, warmup: int) -> float:
    """Linear warm-up over `warmup` updates, then constant."""
    return lr * min(1.0, (update_index + 1) / warmup) if warmup else lr


def train_rl(policy: Policy, reward: OutcomeReward | None, task: Task, problems: Sequence[Problem], cfg: RLConfig, *,
             seed: int, log: Callable[[dict], None] | None = None, progress: bool = True, phase: str = "rl") -> dict:
    """Train `policy` in place with on-policy policy gradient; returns summary statistics.

    `reward` scores completions (None: the task's verifier). Each step's record (also passed to
    `log` every `cfg.log_every` steps) holds reward_mean, zero_adv_frac (samples with advantage 0),
    entropy, kl_ref (k3 estimate of KL(policy || reference) on the batch, None without reference),
    clip_frac, approx_kl, loss, grad_norm, lr, logp_gap, and this step's and the cumulative tokens
    sampled and trained (a trained token counts once per epoch). The summary has the totals,
    `sample_flops`, the mean reward of the last 10 steps and the list of step records (`history`).
    """
    if not problems:
        raise ValueError(f"{phase}: no training problems")
    reward = reward if reward is not None else VerifierReward(task)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    reference = make_reference(policy) if cfg.kl_coef > 0 else None
    gen = torch.Generator().manual_seed(seed)
    cov_gen = torch.Generator().manual_seed(seed + 1)
    baseline = RunningMean(cfg.baseline_momentum)
    advantage_fn = ADVANTAGES[cfg.advantage]  # looked up once per run; the only per-algorithm code
    reduction, max_len = cfg.reduction or PAPER_REDUCTION[cfg.advantage], cfg.max_new_tokens
    cov_ratio = PAPER_COV_RATIO.get(cfg.entropy_control) if cfg.cov_ratio is None else cfg.cov_ratio
    shape = check_memory_budget(policy, problems, cfg, phase) if cfg.memory_mb else None
    totals = {"sample_tokens": 0, "sample_flops": 0.0, "train_tokens": 0}
    history: list[dict] = []
    start = time.perf_counter()
    policy.train(True)
    for step in progress_bar(range(cfg.steps), desc=phase, enabled=progress):
        check_stop(f"{phase} step {step + 1}")
        batch = draw_problems(problems, cfg.prompts_per_step, gen)
        rollout = sample_rollout(policy, reward, batch, group_size=cfg.group_size, temperature=cfg.temperature,
                                 max_new_tokens=cfg.max_new_tokens, seed=int(torch.randint(2**62, (1,), generator=gen)))
        adv = advantage_fn(rollout.rewards, cfg.group_size, baseline)
        rows = micro_batches(len(rollout.texts), cfg.micro_batch) if not cfg.memory_mb else \
            budget_micro_batches(row_lengths(policy, rollout.prompts, rollout.lengths), shape, cfg.memory_mb,
                                 max_rows=cfg.micro_batch)
        prepare(policy, rollout, rows, reference)
        normalizer = L.reduction_denominator(rollout.length_mask(), reduction, max_len=max_len)

        def loss_fn(j: int, r: Tensor, logp: Tensor, mask: Tensor, rollout: Rollout = rollout, adv: Tensor = adv,
                    normalizer: float = normalizer) -> tuple[Tensor, dict[str, float]]:
            old, a = rollout.old[j], adv[r]
            keep, penalty, extra = None, None, {}
            if cfg.entropy_control == "clip_cov":
                keep, extra = L.clip_cov_mask(logp, old, a, mask, clip_ratio=cov_ratio, generator=cov_gen,
                                              clip_eps=cfg.clip_eps)
            elif cfg.entropy_control == "kl_cov":
                penalty, extra = L.kl_cov_penalty(logp, old, a, mask, ratio=cov_ratio, coef=cfg.kl_cov_coef)
            if reference is not None:
                kl = cfg.kl_coef * L.kl_penalty(logp, rollout.ref[j], cfg.kl_kind)
                penalty = kl if penalty is None else penalty + kl
            loss, stats = L.policy_gradient_loss(logp, old, a, mask, clip_eps=cfg.clip_eps, reduction=reduction,
                                               max_len=max_len, normalizer=normalizer, keep=keep, penalty=penalty)
            return loss, {**stats, **extra}

        lr = warmup_lr(step * cfg.epochs_per_batch, cfg.lr, cfg.warmup)
        stats = update(policy, opt, params, rollout, rows, loss_fn, epochs=cfg.epochs_per_batch,
                       grad_clip=cfg.grad_clip, lr=lr, phase=phase, step=step)
        history.append(step_record(phase, step, rollout, adv, stats, totals, lr=lr, start=start))
        if log is not None and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
            log(dict(history[-1]))
    policy.train(False)
    return summary(cfg.steps, cfg.steps * cfg.epochs_per_batch, totals, history, start)


def step_record(phase: str, step: int, rollout: Rollout, adv: Tensor, stats: dict, totals: dict, *, lr: float,
                start: float) -> dict:
    """One step's log record; adds its tokens and FLOPs to `totals` in place."""
    totals["sample_tokens"] += rollout.cost.tokens_generated
    totals["sample_flops"] += rollout.cost.flops
    totals["train_tokens"] += stats["train_tokens"]
    return {"phase": phase, "step": step + 1, "reward_mean": float(rollout.rewards.mean()),
            "zero_adv_frac": float((adv == 0).float().mean()), "entropy": rollout.entropy, "kl_ref": rollout.kl_ref,
            **stats, "lr": lr, "logp_gap": rollout.gap, "sample_tokens": rollout.cost.tokens_generated,
            "cum_sample_tokens": totals["sample_tokens"], "cum_train_tokens": totals["train_tokens"],
            "seconds": time.perf_counter() - start}


def summary(steps: int, updates: int, totals: dict, history: list[dict], start: float) -> dict:
    """The learner's return value: totals, seconds, mean reward of the last 10 steps, the step records."""
    recent = [h["reward_mean"] for h in history[-10:]]
    return {"steps": steps, "updates": updates, **totals, "seconds": time.perf_counter() - start,
            "final_reward": sum(recent) / len(recent) if recent else float("nan"), "history": history}


def round_figures(out: dict) -> dict:
    """A round's figures from an on-policy learner's return value (no per-step history: the steps are
    in the run's metrics log)."""
    hist = out["history"]
    entropy = [h["entropy"] for h in hist if h.get("entropy") is not None]
    result = {k: out[k] for k in ("steps", "updates", "sample_tokens", "sample_flops", "train_tokens", "final_reward")}
    result.update(train_steps=out["updates"], reward_first=hist[0]["reward_mean"] if hist else float("nan"),
                  entropy_first=entropy[0] if entropy else None, entropy_last=entropy[-1] if entropy else None)
    return result


class PolicyGradient(Learner):
    """The registry's reinforce, rloo, grpo and dr_grpo: on-policy, `[learn.rl]` settings, the advantage
    function named by the learner."""

    table = "rl"

    def __init__(self, advantage: str) -> None:
        if advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {', '.join(ADVANTAGES)}, got {advantage!r}")
        self.name = advantage

    def learn(self, policy, cfg, rnd: Round, data=None, stats=None, checkpointing=None) -> dict:
        out = train_rl(policy, rnd.reward, rnd.task, rnd.problems, replace(self.settings(cfg), advantage=self.name),
                       seed=rnd.seed, log=rnd.log, progress=rnd.progress, phase=rnd.phase)
        return round_figures(out)


LEARNERS = tuple(PolicyGradient(a) for a in ADVANTAGES)
