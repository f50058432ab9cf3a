"""Unit tests of the learning maths (`ponder.learn.advantages`, `ponder.learn.losses`) against values
worked out by hand in each test with plain Python arithmetic, plus invariants: identical rewards
give no gradient, RLOO and GRPO differ only by their advantage, gradient accumulation matches one
big batch, the PPO clip cuts the gradient, the KL estimators converge to the true KL."""

from __future__ import annotations

import math

import pytest
import torch

from ponder.learn.advantages import (
    RunningMean,
    baseline_advantage,
    gae,
    group_normalized,
    leave_one_out,
    token_broadcast,
    whiten,
)
from ponder.learn.losses import (
    clip_cov_mask,
    dpo_loss,
    entropy_from_logits,
    kl_cov_penalty,
    kl_penalty,
    masked_mean,
    policy_gradient_loss,
    reduce_tokens,
    reduction_denominator,
    sequence_logprob,
    token_covariance,
    value_loss,
)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def approx(x: torch.Tensor, expected, **kw) -> bool:
    return torch.allclose(x.double(), t(expected), **{"rtol": 1e-9, "atol": 1e-12, **kw})


# -- group advantages -----------------------------------------------------------------------------------


def test_group_normalized_by_hand():
    rewards = t([[1.0, 0.0, 0.0, 1.0], [2.0, 4.0, 9.0, 5.0]])
    s1 = math.sqrt((4 * 0.25) / 3)  # sample std of 1, 0, 0, 1 around 0.5
    s2 = math.sqrt((9 + 1 + 16 + 0) / 3)  # around 5
    expected = [[0.5 / s1, -0.5 / s1, -0.5 / s1, 0.5 / s1], [-3 / s2, -1 / s2, 4 / s2, 0.0]]
    assert approx(group_normalized(rewards, eps=0.0), expected)
    eps = 0.1
    assert approx(group_normalized(rewards, eps=eps)[1], [-3 / (s2 + eps), -1 / (s2 + eps), 4 / (s2 + eps), 0.0])
    # flat rewards with a group size: the same numbers, flat
    assert approx(group_normalized(rewards.flatten(), 4, eps=0.0), [x for row in expected for x in row])


def test_dr_grpo_is_mean_centred_only():
    rewards = t([[1.0, 0.0, 0.0, 1.0], [2.0, 4.0, 9.0, 5.0]])
    assert approx(group_normalized(rewards, scale=False), [[0.5, -0.5, -0.5, 0.5], [-3.0, -1.0, 4.0, 0.0]])
    assert approx(group_normalized(t([3.0]), 1, scale=False), [0.0])  # one sample: no signal, but allowed


def test_identical_rewards_give_exact_zero_advantages():
    # 0.7 * 3 / 3 != 0.7 in floating point; without the guard, (r - mean) / (0 + eps) would be ~0.01
    for dtype in (torch.float32, torch.float64):
        rewards = torch.tensor([[0.7, 0.7, 0.7], [0.1, 0.1, 0.1], [1.0, 0.0, 1.0]], dtype=dtype)
        for adv in (group_normalized(rewards), group_normalized(rewards, scale=False), leave_one_out(rewards)):
            assert (adv[:2] == 0).all()
            assert (adv[2] != 0).all()


def test_leave_one_out_by_hand():
    rewards = t([[1.0, 0.0, 0.0, 1.0], [2.0, 4.0, 9.0, 5.0]])
    row2 = [2 - (4 + 9 + 5) / 3, 4 - (2 + 9 + 5) / 3, 9 - (2 + 4 + 5) / 3, 5 - (2 + 4 + 9) / 3]
    assert approx(leave_one_out(rewards), [[2 / 3, -2 / 3, -2 / 3, 2 / 3], row2])
    assert approx(leave_one_out(rewards.flatten(), 4), [2 / 3, -2 / 3, -2 / 3, 2 / 3, *row2])
    # RLOO = K / (K - 1) * Dr. GRPO
    assert torch.allclose(leave_one_out(rewards), 4 / 3 * group_normalized(rewards, scale=False))


def test_group_shapes_and_sizes_are_checked():
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out(t([[1.0], [0.0]]))
    with pytest.raises(ValueError, match="at least 2"):
        group_normalized(t([1.0, 0.0]), 1)
    with pytest.raises(ValueError, match="groups of 3"):
        group_normalized(t([1.0, 0.0, 1.0, 1.0]), 3)
    with pytest.raises(ValueError, match="group_size"):
        group_normalized(t([1.0, 0.0, 1.0, 1.0]))
    # integer rewards (verifier 0/1) are accepted
    assert approx(leave_one_out(torch.tensor([[1, 0]])), [[1.0, -1.0]])


def test_baseline_and_running_mean():
    assert approx(baseline_advantage(t([1.0, 0.0, 0.5]), 0.25), [0.75, -0.25, 0.25])
    assert approx(baseline_advantage(t([1.0, 0.0]), t([0.5, 0.25])), [0.5, -0.25])
    mean = RunningMean()
    assert mean.value == 0.0
    assert mean.update([1.0, 2.0, 3.0]) == pytest.approx(2.0)
    assert mean.update(torch.tensor([6.0])) == pytest.approx((1 + 2 + 3 + 6) / 4)
    ema = RunningMean(momentum=0.9)
    assert ema.update([1.0, 3.0]) == pytest.approx(2.0)  # the first batch sets it
    assert ema.update([4.0]) == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)
    copy = RunningMean(momentum=0.9)
    copy.load_state_dict(ema.state_dict())
    assert copy.update([0.0]) == ema.update([0.0])
    with pytest.raises(ValueError):
        RunningMean(momentum=1.0)


# -- GAE, whitening, broadcast -----------------------------------------------------------------------------

# row 0: three real tokens, outcome reward 1 at the end; row 1: two real tokens then padding, reward 2
# on its last real token; row 2: left padding. Padding values (9.0) must be ignored.
GAE_REWARDS = [[0.0, 0.0, 1.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]]
GAE_VALUES = [[0.5, 0.6, 0.8], [0.3, 0.4, 9.0], [9.0, 0.5, 0.8]]
GAE_MASK = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]


def test_gae_lambda_one_is_returns_to_go_minus_values():
    adv, ret = gae(t(GAE_REWARDS), t(GAE_VALUES), t(GAE_MASK), gamma=1.0, lam=1.0)
    to_go = [[1.0, 1.0, 1.0], [2.0, 2.0, 0.0], [0.0, 1.0, 1.0]]
    assert approx(adv, [[1 - 0.5, 1 - 0.6, 1 - 0.8], [2 - 0.3, 2 - 0.4, 0.0], [0.0, 1 - 0.5, 1 - 0.8]])
    assert approx(ret, to_go)


def test_gae_lambda_zero_is_one_step_td_error():
    adv, ret = gae(t(GAE_REWARDS), t(GAE_VALUES), t(GAE_MASK), gamma=1.0, lam=0.0)
    td = [[0 + 0.6 - 0.5, 0 + 0.8 - 0.6, 1 + 0 - 0.8], [0 + 0.4 - 0.3, 2 + 0 - 0.4, 0.0], [0.0, 0.8 - 0.5, 1 - 0.8]]
    assert approx(adv, td)
    assert approx(ret, [[td[0][0] + 0.5, td[0][1] + 0.6, td[0][2] + 0.8], [td[1][0] + 0.3, td[1][1] + 0.4, 0.0],
                        [0.0, td[2][1] + 0.5, td[2][2] + 0.8]])


def test_gae_general_gamma_lambda_by_hand():
    g, lam = 0.9, 0.5
    adv, _ = gae(t(GAE_REWARDS[:1]), t(GAE_VALUES[:1]), t(GAE_MASK[:1]), gamma=g, lam=lam)
    d2 = 1.0 - 0.8
    d1 = g * 0.8 - 0.6
    d0 = g * 0.6 - 0.5
    a2 = d2
    a1 = d1 + g * lam * a2
    a0 = d0 + g * lam * a1
    assert approx(adv, [[a0, a1, a2]])


def test_gae_carries_no_gradient():
    values = t(GAE_VALUES).requires_grad_()
    adv, ret = gae(t(GAE_REWARDS), values, t(GAE_MASK), gamma=1.0, lam=0.95)
    assert not adv.requires_grad and not ret.requires_grad


def test_whiten_by_hand():
    x = t([[1.0, 2.0, 3.0], [4.0, 7.0, 7.0]])
    mask = t([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    mean = (1 + 2 + 3 + 4) / 4
    std = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (3 - mean) ** 2 + (4 - mean) ** 2) / 4)
    expected = [[(1 - mean) / std, (2 - mean) / std, (3 - mean) / std], [(4 - mean) / std, 0.0, 0.0]]
    assert approx(whiten(x, mask, eps=0.0), expected)
    kept = [[v + mean for v in expected[0]], [expected[1][0] + mean, 0.0, 0.0]]
    assert approx(whiten(x, mask, shift_mean=False, eps=0.0), kept)


def test_token_broadcast():
    mask = t([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert approx(token_broadcast(t([2.0, -1.0]), mask), [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]])
    with pytest.raises(ValueError):
        token_broadcast(t([1.0, 2.0, 3.0]), mask)


# -- reductions ------------------------------------------------------------------------------------------


def test_masked_mean_and_sequence_logprob():
    x = t([[1.0, 2.0, 100.0], [4.0, 100.0, 100.0]])
    mask = t([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert masked_mean(x, mask).item() == pytest.approx((1 + 2 + 4) / 3)
    assert approx(masked_mean(x, mask, dim=-1), [1.5, 4.0])
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0
    assert approx(sequence_logprob(-x, mask), [-3.0, -4.0])


def test_reductions_by_hand():
    x = t([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])
    mask = t([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert reduce_tokens(x, mask, "token").item() == pytest.approx(15 / 5)
    assert reduce_tokens(x, mask, "sequence").item() == pytest.approx((6 / 3 + 9 / 2) / 2)
    assert reduce_tokens(x, mask, "constant", max_len=10).item() == pytest.approx(15 / (2 * 10))
    assert reduce_tokens(x, mask, "token", normalizer=30.0).item() == pytest.approx(15 / 30)
    assert reduction_denominator(mask, "token") == 5.0
    assert reduction_denominator(mask, "sequence") == 2.0
    assert reduction_denominator(mask, "constant", max_len=10) == 20.0
    with pytest.raises(ValueError, match="max_len"):
        reduce_tokens(x, mask, "constant")
    with pytest.raises(ValueError, match="unknown reduction"):
        reduce_tokens(x, mask, "mean")  # type: ignore[arg-type]


# -- KL estimators ---------------------------------------------------------------------------------------


def test_kl_estimators_known_values():
    logp, ref = t([math.log(0.5), math.log(0.2)]), t([math.log(0.25), math.log(0.6)])
    # log r = ref - logp: log(0.5) and log(3)
    assert approx(kl_penalty(logp, ref, "k1"), [math.log(2), -math.log(3)])
    assert approx(kl_penalty(logp, ref, "k2"), [0.5 * math.log(2) ** 2, 0.5 * math.log(3) ** 2])
    assert approx(kl_penalty(logp, ref, "k3"), [0.5 - 1 - math.log(0.5), 3 - 1 - math.log(3)])
    assert approx(kl_penalty(logp, logp, "k3"), [0.0, 0.0])
    with pytest.raises(ValueError, match="k4"):
        kl_penalty(logp, ref, "k4")  # type: ignore[arg-type]


def test_k3_is_never_negative():
    g = torch.Generator().manual_seed(0)
    logp, ref = -5 * torch.rand(1000, generator=g), -5 * torch.rand(1000, generator=g)
    assert (kl_penalty(logp, ref, "k3") >= 0).all()
    assert (kl_penalty(logp, ref, "k1") < 0).any()  # k1 is unbiased but not pointwise non-negative


def test_k1_and_k3_converge_to_the_true_kl():
    p, q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    true_kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    g = torch.Generator().manual_seed(0)
    x = torch.multinomial(t(p), 200_000, replacement=True, generator=g)
    logp, ref = t(p).log()[x], t(q).log()[x]
    assert kl_penalty(logp, ref, "k1").mean().item() == pytest.approx(true_kl, abs=0.01)
    assert kl_penalty(logp, ref, "k3").mean().item() == pytest.approx(true_kl, abs=0.01)


# -- policy gradient -------------------------------------------------------------------------------------


def test_unclipped_pg_equals_reinforce_by_hand():
    logp = t([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]]).requires_grad_()
    mask = t([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv = t([1.0, -2.0])  # per sequence
    cases = {
        "token": (-(1 * 3 - 2 * 2) / 5, [[-1 / 5] * 3, [2 / 5, 2 / 5, 0.0]], {}),
        "sequence": ((-1 + 2) / 2, [[-1 / 3 / 2] * 3, [2 / 2 / 2, 2 / 2 / 2, 0.0]], {}),
        "constant": (-(1 * 3 - 2 * 2) / (2 * 4), [[-1 / 8] * 3, [2 / 8, 2 / 8, 0.0]], {"max_len": 4}),
    }
    for reduction, (value, grad, kw) in cases.items():
        logp.grad = None
        loss, stats = policy_gradient_loss(logp, logp.detach(), adv, mask, reduction=reduction, **kw)
        loss.backward()
        assert loss.item() == pytest.approx(value), reduction
        assert approx(logp.grad, grad), reduction
        assert stats == {"clip_frac": 0.0, "approx_kl": 0.0, "ratio_mean": 1.0}
    # the same per-token advantages as a (B, T) tensor give the same loss
    per_token = t([[1.0, 1.0, 1.0], [-2.0, -2.0, 0.0]])
    loss, _ = policy_gradient_loss(logp, logp.detach(), per_token, mask)
    assert loss.item() == pytest.approx(cases["token"][0])


def test_pg_shapes_are_checked():
    logp, mask = torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.raises(ValueError, match="advantages"):
        policy_gradient_loss(logp, logp, torch.zeros(3), mask)
    with pytest.raises(ValueError, match="share one"):
        policy_gradient_loss(logp, logp[:, :2], torch.zeros(2), mask)


def _ratio_case(ratios, advs):
    old = t([[-1.0] * len(ratios)])
    logp = (old + t([[math.log(r) for r in ratios]])).requires_grad_()
    return logp, old, t([advs]), torch.ones_like(old)


def test_ppo_clip_by_hand_and_zero_gradient_outside_the_range():
    ratios, advs = [1.5, 0.7, 0.7, 1.5, 1.1], [1.0, 1.0, -1.0, -1.0, 2.0]
    logp, old, adv, mask = _ratio_case(ratios, advs)
    loss, stats = policy_gradient_loss(logp, old, adv, mask, clip_eps=0.2)
    loss.backward()
    # per token: max(-r A, -clip(r, 0.8, 1.2) A)
    #   r 1.5 A+1: max(-1.5, -1.2) = -1.2 clipped | r 0.7 A+1: max(-0.7, -0.8) = -0.7
    #   r 0.7 A-1: max(0.7, 0.8) = 0.8 clipped     | r 1.5 A-1: max(1.5, 1.2) = 1.5 | r 1.1 A+2: -2.2
    assert loss.item() == pytest.approx((-1.2 - 0.7 + 0.8 + 1.5 - 2.2) / 5)
    # d(-r A)/dlogp = -r A on unclipped tokens; exactly 0 where the clip is active
    assert approx(logp.grad, [[0.0, -0.7 / 5, 0.0, 1.5 / 5, -2.2 / 5]])
    assert logp.grad[0, 0].item() == 0.0 and logp.grad[0, 2].item() == 0.0
    assert stats["clip_frac"] == pytest.approx(2 / 5)
    assert stats["ratio_mean"] == pytest.approx(sum(ratios) / 5)
    assert stats["approx_kl"] == pytest.approx(sum(r - 1 - math.log(r) for r in ratios) / 5)


def test_clip_higher_is_asymmetric():
    # DAPO's clip-higher: (low, high) = (0.2, 0.28); r = 1.25 with A > 0 is inside, r = 0.75 with A < 0 is cut
    logp, old, adv, mask = _ratio_case([1.25, 0.75], [1.0, -1.0])
    loss, stats = policy_gradient_loss(logp, old, adv, mask, clip_eps=(0.2, 0.28))
    loss.backward()
    assert loss.item() == pytest.approx((-1.25 + 0.8) / 2)
    assert approx(logp.grad, [[-1.25 / 2, 0.0]])
    assert stats["clip_frac"] == pytest.approx(0.5)
    logp.grad = None
    loss, _ = policy_gradient_loss(logp, old, adv, mask, clip_eps=0.2)  # symmetric: both are cut
    loss.backward()
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert (logp.grad == 0).all()
    with pytest.raises(ValueError, match="clip_eps"):
        policy_gradient_loss(logp, old, adv, mask, clip_eps=(1.0, 0.2))


def test_keep_and_penalty():
    logp = t([[-1.0, -2.0, -0.5]]).requires_grad_()
    mask = t([[1.0, 1.0, 1.0]])
    adv = t([[1.0, 2.0, 3.0]])
    keep = torch.tensor([[True, False, True]])
    penalty = t([[0.0, 0.3, 0.0]])
    loss, _ = policy_gradient_loss(logp, logp.detach(), adv, mask, keep=keep, penalty=penalty)
    loss.backward()
    assert loss.item() == pytest.approx((-1 - 2 - 3 + 0.3) / 3)  # a cut token still counts in the value
    assert approx(logp.grad, [[-1 / 3, 0.0, -3 / 3]])


class ToyPolicy(torch.nn.Module):
    """Per-token log-probs from a linear layer over fixed features: logp[b, t] = log softmax(W x[b, t])[y[b, t]]."""

    def __init__(self, seed: int = 0, d: int = 4, vocab: int = 5) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.head = torch.nn.Linear(d, vocab, dtype=torch.float64)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.head(x), dim=-1).gather(-1, y[..., None]).squeeze(-1)


def _toy_batch(b: int = 4, t_len: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t_len, 4, generator=g, dtype=torch.float64)
    y = torch.randint(5, (b, t_len), generator=g)
    lengths = [5, 2, 4, 1][:b]
    mask = t([[1.0 if j < n else 0.0 for j in range(t_len)] for n in lengths])
    return x, y, mask


def _grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def test_identical_rewards_give_exactly_zero_gradient():
    model = ToyPolicy()
    x, y, mask = _toy_batch()
    rewards = torch.tensor([0.7, 0.7, 0.3, 0.3])  # two groups of two, each all equal
    for adv in (group_normalized(rewards, 2), group_normalized(rewards, 2, scale=False), leave_one_out(rewards, 2)):
        for clip in (None, 0.2):
            model.zero_grad()
            logp = model(x, y)
            loss, _ = policy_gradient_loss(logp, logp.detach() - 0.1, adv, mask, clip_eps=clip)
            loss.backward()
            assert all((g == 0).all() for g in _grads(model))


def test_rloo_and_grpo_differ_only_by_the_advantage():
    model = ToyPolicy()
    x, y, mask = _toy_batch()
    rewards = t([[1.0, 0.0, 0.0, 1.0]])  # one prompt, K = 4 samples (the 4 rows)

    def grads_for(adv: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        logp = model(x, y)
        loss, _ = policy_gradient_loss(logp, logp.detach(), adv.flatten(), mask)
        loss.backward()
        return _grads(model)

    rloo, dr_grpo, grpo = leave_one_out(rewards), group_normalized(rewards, scale=False), group_normalized(rewards)
    assert approx(rloo, [[2 / 3, -2 / 3, -2 / 3, 2 / 3]]) and approx(dr_grpo, [[0.5, -0.5, -0.5, 0.5]])
    # the loss is linear in the advantage: RLOO's gradient is 4/3 of Dr. GRPO's, GRPO's is 1/(std + eps) of it
    std = math.sqrt(4 * 0.25 / 3)
    for ga, gb, gc in zip(grads_for(rloo), grads_for(dr_grpo), grads_for(grpo), strict=True):
        assert torch.allclose(ga, 4 / 3 * gb)
        assert torch.allclose(gc, gb / (std + 1e-6))


@pytest.mark.parametrize("reduction", ["token", "sequence", "constant"])
def test_gradient_accumulation_matches_one_batch(reduction):
    x, y, mask = _toy_batch()
    adv = t([1.0, -0.5, 2.0, -1.0])
    kw = {"reduction": reduction, "max_len": 5, "clip_eps": 0.2}
    old_model = ToyPolicy(seed=3)  # the sampling policy differs, so ratios are not 1 and the clip matters
    with torch.no_grad():
        old = old_model(x, y)

    big = ToyPolicy()
    loss, stats = policy_gradient_loss(big(x, y), old, adv, mask, **kw)
    loss.backward()
    assert 0.0 < stats["clip_frac"] < 1.0  # both branches of the clip are exercised

    small = ToyPolicy()
    normalizer = sum(reduction_denominator(mask[i : i + 1], reduction, max_len=5) for i in range(4))
    total = 0.0
    for i in range(4):  # 4 micro-batches of 1
        part, _ = policy_gradient_loss(small(x[i : i + 1], y[i : i + 1]), old[i : i + 1], adv[i : i + 1],
                                       mask[i : i + 1], normalizer=normalizer, **kw)
        part.backward()
        total += part.item()
    assert total == pytest.approx(loss.item())
    for ga, gb in zip(_grads(big), _grads(small), strict=True):
        assert torch.allclose(ga, gb, rtol=1e-10, atol=1e-12)
    if reduction == "token":  # without the normalizer, micro-batches of unequal length disagree
        naive = ToyPolicy()
        for i in range(4):
            part, _ = policy_gradient_loss(naive(x[i : i + 1], y[i : i + 1]), old[i : i + 1], adv[i : i + 1],
                                           mask[i : i + 1], **kw)
            (part / 4).backward()
        assert not all(torch.allclose(ga, gb) for ga, gb in zip(_grads(big), _grads(naive), strict=True))


# -- value loss ------------------------------------------------------------------------------------------


def test_value_loss_by_hand():
    values = t([[1.0, 2.0, 1.0, 50.0]]).requires_grad_()
    old = t([[0.5, 2.0, 0.5, 0.0]])
    returns = t([[0.0, 3.0, 2.0, 0.0]])
    mask = t([[1.0, 1.0, 1.0, 0.0]])
    loss, _ = value_loss(values, old, returns, mask)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * (1 + 1 + 1) / 3)
    assert approx(values.grad, [[1 / 3, -1 / 3, -1 / 3, 0.0]])
    values.grad = None
    # clip 0.2: token 0: max((1-0)^2, (0.7-0)^2) = 1 | token 1: 1 | token 2: max((1-2)^2, (0.7-2)^2) = 1.69 clipped
    loss, stats = value_loss(values, old, returns, mask, clip_eps=0.2)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * (1 + 1 + 1.69) / 3)
    assert approx(values.grad, [[1 / 3, -1 / 3, 0.0, 0.0]])
    assert stats["value_clip_frac"] == pytest.approx(1 / 3)


# -- DPO -------------------------------------------------------------------------------------------------


def test_dpo_loss_by_hand():
    pc, pr = t([-1.0, -4.0]), t([-3.0, -2.0])
    rc, rr = t([-2.0, -3.0]), t([-2.5, -2.5])
    beta = 0.1
    margins = [(-1 + 2) - (-3 + 2.5), (-4 + 3) - (-2 + 2.5)]  # 1.5 and -1.5
    loss, stats = dpo_loss(pc, pr, rc, rr, beta=beta)
    expected = sum(math.log(1 + math.exp(-beta * m)) for m in margins) / 2
    assert loss.item() == pytest.approx(expected)
    assert stats["reward_accuracy"] == pytest.approx(0.5)
    assert stats["margin"] == pytest.approx(beta * sum(margins) / 2)
    assert stats["chosen_reward"] == pytest.approx(beta * ((-1 + 2) + (-4 + 3)) / 2)
    assert stats["rejected_reward"] == pytest.approx(beta * ((-3 + 2.5) + (-2 + 2.5)) / 2)
    # one pair alone: log(1 + exp(-beta * margin))
    loss, stats = dpo_loss(pc[:1], pr[:1], rc[:1], rr[:1], beta=beta)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.15)))
    assert stats["reward_accuracy"] == 1.0


def test_dpo_label_smoothing_and_gradient():
    pc, pr = t([-1.0]).requires_grad_(), t([-3.0]).requires_grad_()
    rc, rr = t([-2.0]), t([-2.5])
    beta, eps, z = 0.5, 0.1, 0.5 * 1.5
    loss, _ = dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps)
    loss.backward()
    assert loss.item() == pytest.approx((1 - eps) * math.log(1 + math.exp(-z)) + eps * math.log(1 + math.exp(z)))
    sig = 1 / (1 + math.exp(-z))
    # d/dz [(1-eps) log(1+e^-z) + eps log(1+e^z)] = -(1-eps)(1-sig) + eps sig; dz/dpc = beta = -dz/dpr
    dz = -(1 - eps) * (1 - sig) + eps * sig
    assert pc.grad.item() == pytest.approx(beta * dz)
    assert pr.grad.item() == pytest.approx(-beta * dz)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=0.5)


# -- entropy and the entropy controls ---------------------------------------------------------------------


def test_entropy_from_logits_by_hand():
    inf = float("inf")
    logits = t([[[0.0, 0.0, 0.0, 0.0], [math.log(1), math.log(3), -inf, -inf], [5.0, -inf, -inf, -inf]]])
    logits.requires_grad_()
    mask = t([[1.0, 1.0, 0.0]])
    ent, mean = entropy_from_logits(logits, mask)
    h1 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert approx(ent, [[math.log(4), h1, 0.0]], rtol=1e-6)
    assert mean.item() == pytest.approx((math.log(4) + h1) / 2, rel=1e-6)
    mean.backward()
    assert torch.isfinite(logits.grad).all()


def test_token_covariance_by_hand():
    logp = t([[-1.0, -3.0], [-2.5, 7.0]])
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    adv = t([1.0, -2.0])  # per sequence: tokens get 1, 1, -2
    ml, ma = (-1 - 3 - 2.5) / 3, (1 + 1 - 2) / 3
    expected = [[(-1 - ml) * (1 - ma), (-3 - ml) * (1 - ma)], [(-2.5 - ml) * (-2 - ma), 0.0]]
    assert approx(token_covariance(logp, adv, mask), expected)


def _cov_batch():
    # 8 real tokens, mean logp = -1 and mean advantage 0, so cov = (logp + 1) * A:
    #   3.0, 2.0, 1.5, 1.0, 0.5, -0.5, 0.0, 17.0  (and a padding token)
    logp = t([[2.0, 1.0, 0.5, 0.0, -0.5, -0.5, -1.0, -9.5, 99.0]])
    adv = t([[1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -2.0, -2.0, 5.0]])
    mask = t([[1.0] * 8 + [0.0]])
    return logp, adv, mask


def test_cov_batch_is_what_it_says():
    logp, adv, mask = _cov_batch()
    assert approx(token_covariance(logp, adv, mask), [[3.0, 2.0, 1.5, 1.0, 0.5, -0.5, 0.0, 17.0, 0.0]])


def test_clip_cov_cuts_random_tokens_within_the_bounds():
    logp, adv, mask = _cov_batch()
    candidates = {1, 2, 3}  # cov in [1, 2.5]
    picks = set()
    for seed in range(20):
        keep, stats = clip_cov_mask(logp, logp, adv, mask, clip_ratio=0.25, bounds=(1.0, 2.5),
                                    generator=torch.Generator().manual_seed(seed))
        cut = {j for j in range(9) if not keep[0, j]}
        assert len(cut) == 2 and cut <= candidates  # int(0.25 * 8) = 2 tokens
        picks |= cut
        assert stats["clip_cov_frac"] == pytest.approx(2 / 8) and stats["clip_cov_candidates"] == 3
        again, _ = clip_cov_mask(logp, logp, adv, mask, clip_ratio=0.25, bounds=(1.0, 2.5),
                                 generator=torch.Generator().manual_seed(seed))
        assert torch.equal(keep, again)  # same generator seed, same choice
    assert picks == candidates
    # at least one token when the ratio rounds down; none with ratio 0 or no candidate
    keep, _ = clip_cov_mask(logp, logp, adv, mask, clip_ratio=1e-4, bounds=(10.0, 20.0),
                            generator=torch.Generator().manual_seed(0))
    assert [j for j in range(9) if not keep[0, j]] == [7]
    keep, _ = clip_cov_mask(logp, logp, adv, mask, clip_ratio=0.0, bounds=(0.0, 9.0),
                            generator=torch.Generator().manual_seed(0))
    assert keep.all()
    keep, _ = clip_cov_mask(logp, logp, adv, mask, clip_ratio=0.5, bounds=(30.0, 40.0),
                            generator=torch.Generator().manual_seed(0))
    assert keep.all()


def test_clip_cov_skips_tokens_ppo_already_clips_and_feeds_the_pg_loss():
    logp, adv, mask = _cov_batch()
    old = logp.clone()
    old[0, 7] = logp[0, 7] + 1.0  # ratio e^-1 with A = -2: PPO's clip already cuts token 7
    keep, _ = clip_cov_mask(logp, old, adv, mask, clip_ratio=1.0, bounds=(0.0, 20.0), clip_eps=0.2,
                            generator=torch.Generator().manual_seed(0))
    assert [j for j in range(9) if not keep[0, j]] == [0, 1, 2, 3, 4, 6]  # cov in [0, 20], token 7 excluded
    lp = logp.clone().requires_grad_()
    loss, _ = policy_gradient_loss(lp, old, adv, mask, clip_eps=0.2, keep=keep)
    loss.backward()
    assert (lp.grad[0, :7][keep[0, :7].logical_not()] == 0).all()
    assert lp.grad[0, 5].item() == pytest.approx(1.0 / 8)  # kept: -A / n at ratio 1
    assert lp.grad[0, 7].item() == 0.0  # cut by the PPO clip


def test_kl_cov_penalises_the_top_covariance_tokens():
    logp, adv, mask = _cov_batch()
    old = logp - t([[0.1, -0.2, 0.3, 0.4, 0.5, 0.6, 0.7, -0.8, 0.9]])
    lp = logp.clone().requires_grad_()
    # int(0.25 * 8) = 2 tokens: the top two covariances are tokens 7 (17.0) and 0 (3.0)
    penalty, stats = kl_cov_penalty(lp, old, adv, mask, ratio=0.25, coef=2.0)
    assert approx(penalty.detach(), [[2 * 0.1, 0, 0, 0, 0, 0, 0, 2 * 0.8, 0]])
    assert stats["kl_cov_frac"] == pytest.approx(0.25)
    assert stats["kl_cov_mean"] == pytest.approx((0.2 + 1.6) / 2)
    penalty.sum().backward()
    assert approx(lp.grad, [[2.0, 0, 0, 0, 0, 0, 0, -2.0, 0]])  # coef * sign(logp - old)
    k3, _ = kl_cov_penalty(logp, old, adv, mask, ratio=0.25, coef=1.0, kind="k3")
    # k3 of KL(old || new) with samples from old: r = pi/old, r - 1 - log r
    assert k3[0, 0].item() == pytest.approx(math.exp(0.1) - 1 - 0.1)
    assert k3[0, 7].item() == pytest.approx(math.exp(-0.8) - 1 + 0.8)
    none, _ = kl_cov_penalty(logp, old, adv, mask, ratio=0.0)
    assert (none == 0).all()
    one, _ = kl_cov_penalty(logp, old, adv, mask, ratio=1e-4)
    assert [j for j in range(9) if one[0, j] != 0] == [7]
    # passed into the loss as the per-token penalty
    loss, _ = policy_gradient_loss(logp, logp, adv, mask, penalty=penalty.detach())
    assert loss.item() == pytest.approx((-float(adv[0, :8].sum()) + 0.2 + 1.6) / 8)
