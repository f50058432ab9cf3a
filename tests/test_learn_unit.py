"""Unit tests of learning: the learning-rate schedule, the NLL loss, verified-sample collection,
config validation, and a few optimizer steps of SFT and one expert-iteration round on a tiny model."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import make_tiny_policy

from ponder.learn.expert_iteration import ExpertIterationConfig, collect_verified, expert_iteration_round
from ponder.learn.sft import nll_loss, train_sft
from ponder.training import SFTConfig, lr_at
from ponder.types import Cost, Problem, Sample, Sampling

# -- learning-rate schedule --------------------------------------------------------------------------


def test_lr_warmup_and_cosine_by_hand():
    cfg = SFTConfig(steps=15, lr=1.0, warmup=4, min_lr_ratio=0.1)
    assert [lr_at(s, cfg) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_at(4, cfg) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_at(9, cfg) == pytest.approx(0.55)  # half way: 0.1 + 0.9 * 0.5
    assert lr_at(14, cfg) == pytest.approx(0.1)  # the last step trained (steps - 1) is at the floor
    assert lr_at(100, cfg) == pytest.approx(0.1)  # stays at the floor
    assert lr_at(13, cfg) == pytest.approx(0.1 + 0.45 * (1 + math.cos(0.9 * math.pi)))


def test_lr_no_warmup_and_zero_floor():
    cfg = SFTConfig(steps=11, lr=2e-3, warmup=0, min_lr_ratio=0.0)
    assert lr_at(0, cfg) == pytest.approx(2e-3)
    assert lr_at(5, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(0.0, abs=1e-15)
    lrs = [lr_at(s, cfg) for s in range(11)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_lr_decays_over_a_share_of_the_steps_then_holds_the_floor():
    cfg = SFTConfig(steps=20, lr=1.0, warmup=4, min_lr_ratio=0.1, decay=0.75)  # the floor at step 14, then held
    assert lr_at(4, cfg) == pytest.approx(1.0)
    assert lr_at(9, cfg) == pytest.approx(0.55)  # half way through the decay: 0.1 + 0.9 * 0.5
    assert [lr_at(s, cfg) for s in range(14, 20)] == pytest.approx([0.1] * 6)
    assert lr_at(13, cfg) > 0.1
    assert [lr_at(s, SFTConfig(steps=15, lr=1.0, warmup=4, decay=1.0)) for s in range(15)] == \
        [lr_at(s, SFTConfig(steps=15, lr=1.0, warmup=4)) for s in range(15)]
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="decay must be in"):
            SFTConfig(decay=bad)


def test_lr_warmup_longer_than_steps():
    cfg = SFTConfig(steps=3, lr=1.0, warmup=10)
    assert [lr_at(s, cfg) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])


# -- loss --------------------------------------------------------------------------------------------


def test_nll_loss_equals_manual(tiny_policy):
    prompts, comps = ["Q: 1+2\n", "Q: 10+20+30\n"], ["A: 3\n", "1\n2"]
    loss, tokens = nll_loss(tiny_policy, prompts, comps)
    assert tokens == (len(comps[0]) + 1) + (len(comps[1]) + 1)  # completion tokens + EOS each
    tok = tiny_policy.tokenizer
    total = 0.0
    with torch.no_grad():
        for p, c in zip(prompts, comps):
            ids = [tok.bos_id] + tok.encode(p) + tok.encode(c) + [tok.eos_id]
            logp = torch.log_softmax(tiny_policy.model(torch.tensor([ids]))[0], -1)
            start = 1 + len(p)
            total += -sum(float(logp[start - 1 + j, ids[start + j]]) for j in range(len(c) + 1))
    assert loss.item() == pytest.approx(total / tokens, rel=1e-5)
    logp, mask = tiny_policy.logprobs(prompts, comps)
    assert loss.item() == pytest.approx((-(logp * mask).sum() / mask.sum()).item(), rel=1e-6)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_policy.parameters())


# -- collecting verified samples ---------------------------------------------------------------------


def smp(text: str, finish: str = "eos") -> Sample:
    return Sample(text=text, token_ids=(), logprobs=(), finish=finish)


P1 = Problem(id="1", prompt="Q: 1+2\n", answer="3")
P2 = Problem(id="2", prompt="Q: 2+2\n", answer="4")
P3 = Problem(id="3", prompt="Q: 3+3\n", answer="6")


def test_collect_verified_threshold_dedupe_keep_finish():
    groups = [
        [smp("a"), smp("a"), smp("b"), smp("c")],
        [smp("x", "length"), smp("y", "step"), smp("z")],
        [smp("q"), smp("r")],
    ]
    rewards = [[1.0, 1.0, 0.5, 0.9], [1.0, 1.0, 1.0], [0.0, 0.2]]
    assert collect_verified([P1, P2, P3], groups, rewards, threshold=0.9, keep_per_problem=3) == [
        (P1.prompt, "a"), (P1.prompt, "c"), (P2.prompt, "z")]
    assert collect_verified([P1, P2, P3], groups, rewards, threshold=0.9, keep_per_problem=1) == [
        (P1.prompt, "a"), (P2.prompt, "z")]
    assert collect_verified([P1, P2, P3], groups, rewards, threshold=0.5, keep_per_problem=5) == [
        (P1.prompt, "a"), (P1.prompt, "b"), (P1.prompt, "c"), (P2.prompt, "z")]
    assert collect_verified([P1, P2, P3], groups, rewards, threshold=0.0, keep_per_problem=5)[-2:] == [
        (P3.prompt, "q"), (P3.prompt, "r")]
    assert collect_verified([P1, P2, P3], groups, rewards, threshold=1.5, keep_per_problem=5) == []
    # skip_solved: P2's samples all reach the threshold, so it teaches nothing new and keeps nothing
    assert collect_verified([P1, P2, P3], groups, rewards, threshold=0.9, keep_per_problem=3, skip_solved=True) == [
        (P1.prompt, "a"), (P1.prompt, "c")]
    assert collect_verified([P1, P2, P3], groups, rewards, threshold=0.0, keep_per_problem=5, skip_solved=True) == []


def test_collect_verified_same_text_different_problems_kept():
    groups = [[smp("A: 4\n")], [smp("A: 4\n")]]
    assert collect_verified([P1, P2], groups, [[1.0], [1.0]], threshold=1.0, keep_per_problem=1) == [
        (P1.prompt, "A: 4\n"), (P2.prompt, "A: 4\n")]


# -- config validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": -1}, "steps must be >= 0"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"lr": float("nan")}, "lr must be > 0"),
    ({"min_lr_ratio": 1.5}, "min_lr_ratio must be in"),
    ({"min_lr_ratio": -0.1}, "min_lr_ratio must be in"),
    ({"warmup": -1}, "warmup"),
    ({"log_every": 0}, "log_every"),
    ({"grad_clip": -1.0}, "grad_clip"),
    ({"weight_decay": -0.1}, "weight_decay"),
])
def test_sft_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SFTConfig(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"samples": 0}, "samples must be >= 1"),
    ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
    ({"keep_per_problem": 0}, "keep_per_problem must be >= 1"),
    ({"temperature": 0.0}, "temperature must be > 0"),
])
def test_expert_iteration_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExpertIterationConfig(**kwargs)


def test_config_defaults_valid():
    assert SFTConfig(steps=0).steps == 0
    assert ExpertIterationConfig().sft == SFTConfig(steps=150, lr=1e-3, warmup=10)


# -- SFT and one expert-iteration round on a tiny model -----------------------------------------------

EXAMPLES = [("Q: 1+2\n", "A: 3\n"), ("Q: 2+2\n", "A: 4\n")]


def test_train_sft_lowers_loss_is_deterministic_and_logs():
    cfg = SFTConfig(steps=6, batch_size=4, lr=1e-2, warmup=2, log_every=3)
    policies, logs = [make_tiny_policy(0, std=0.1), make_tiny_policy(0, std=0.1)], [[], []]
    prompts, comps = [e[0] for e in EXAMPLES], [e[1] for e in EXAMPLES]
    with torch.no_grad():
        before = float(nll_loss(policies[0], prompts, comps)[0])
    outs = [train_sft(p, EXAMPLES, cfg, seed=1, log=lg.append, progress=False) for p, lg in zip(policies, logs)]
    with torch.no_grad():
        after = float(nll_loss(policies[0], prompts, comps)[0])
    assert after < before
    for a, b in zip(policies[0].parameters(), policies[1].parameters()):
        assert torch.equal(a, b)
    assert outs[0]["steps"] == 6 and outs[0]["tokens"] == 6 * 4 * 6  # 6 steps x 4 sequences x (5 chars + EOS)
    assert [r["step"] for r in logs[0]] == [3, 6]
    assert logs[0][0]["lr"] == pytest.approx(lr_at(2, cfg)) and logs[0][1]["tokens"] == outs[0]["tokens"]
    assert not policies[0].model.training


def test_train_sft_zero_steps_and_no_examples():
    policy = make_tiny_policy(0)
    before = [p.detach().clone() for p in policy.parameters()]
    out = train_sft(policy, EXAMPLES, SFTConfig(steps=0), seed=0, progress=False)
    assert out["tokens"] == 0 and math.isnan(out["final_loss"])
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    with pytest.raises(ValueError, match="myphase: no training examples"):
        train_sft(policy, [], SFTConfig(steps=1), seed=0, phase="myphase", progress=False)


class ScriptedSampler:
    """A tiny trainable policy whose generate returns fixed samples (to check the round's bookkeeping)."""

    def __init__(self, groups) -> None:
        self.inner = make_tiny_policy(0, std=0.1)
        self.groups = groups
        self.sampling = None

    def generate(self, prompts, sampling):
        self.sampling = sampling
        return [g[: sampling.n] for g in self.groups[: len(prompts)]]

    def logprobs(self, prompts, completions, *, eos=True):
        return self.inner.logprobs(prompts, completions, eos=eos)

    def parameters(self):
        return self.inner.parameters()

    def train(self, mode=True):
        return self.inner.train(mode)

    def save(self, path):
        self.inner.save(path)


class TableReward:
    def __init__(self, table):
        self.table, self.calls = table, 0

    def score(self, problems, texts):
        self.calls += len(texts)
        return [self.table[(p.id, t)] for p, t in zip(problems, texts)]


def test_expert_iteration_round_bookkeeping():
    def s(text, k, finish="eos"):
        return Sample(text=text, token_ids=(5,) * k, logprobs=(0.0,) * k, finish=finish,
                      cost=Cost(tokens_generated=k, flops=10.0 * k))

    groups = [[s("A: 3\n", 6), s("A: 3\n", 6), s("A: 4\n", 6)],
              [s("A: 4\n", 6, "length"), s("A: 5\n", 6), s("A: 4\n", 6)],
              [s("x", 2), s("y", 3), s("z", 4)]]
    table = {("1", "A: 3\n"): 1.0, ("1", "A: 4\n"): 0.0, ("2", "A: 4\n"): 1.0, ("2", "A: 5\n"): 0.0,
             ("3", "x"): 0.0, ("3", "y"): 0.0, ("3", "z"): 0.0}
    policy, reward = ScriptedSampler(groups), TableReward(table)
    cfg = ExpertIterationConfig(samples=3, max_new_tokens=12, temperature=0.7, keep_per_problem=2,
                                sft=SFTConfig(steps=2, batch_size=2, log_every=1))
    logs = []
    stats = expert_iteration_round(policy, reward, [P1, P2, P3], cfg, seed=9, phase="ei1", log=logs.append,
                                   progress=False)
    assert policy.sampling == Sampling(n=3, temperature=0.7, max_new_tokens=12, seed=9)
    assert reward.calls == 9
    assert stats["samples"] == 9
    assert stats["sample_pass_rate"] == pytest.approx(4 / 9)  # 2 on P1, 2 on P2 (one of them cut by length)
    assert stats["problems_solved"] == pytest.approx(2 / 3) and stats["all_solved"] == 0.0
    assert stats["kept"] == 2  # P1: "A: 3\n" once (dedupe); P2: the length-cut one is not kept, the eos one is
    assert stats["sample_tokens"] == 6 * 6 + 2 + 3 + 4 and stats["sample_flops"] == pytest.approx(10.0 * 45)
    assert stats["train_tokens"] == 2 * 2 * 6
    assert logs[0]["phase"] == "ei1" and logs[0]["kept"] == 2
    assert [r["step"] for r in logs[1:]] == [1, 2]


def test_expert_iteration_round_nothing_kept_skips_training():
    groups = [[Sample(text="x", token_ids=(5,), logprobs=(0.0,), finish="eos")]]
    policy, reward = ScriptedSampler(groups), TableReward({("1", "x"): 0.0})
    before = [p.detach().clone() for p in policy.parameters()]
    stats = expert_iteration_round(policy, reward, [P1], ExpertIterationConfig(samples=1), seed=0, phase="ei",
                                   progress=False)
    assert stats["kept"] == 0 and stats["train_tokens"] == 0 and math.isnan(stats["train_loss"])
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_steps_for_bounds_a_round_by_epochs():
    from ponder.training import steps_for

    cfg = SFTConfig(steps=200, batch_size=32)
    assert steps_for(cfg, 2.0, 400) == 25  # ceil(2 * 400 / 32)
    assert steps_for(cfg, 2.0, 10_000) == 200  # capped by cfg.steps
    assert steps_for(cfg, 2.0, 1) == 1  # at least one step
    assert steps_for(cfg, 0.0, 5) == 200  # epochs 0: the whole schedule
