"""Self-evolution (`ponder.learn.self_evolve`): what its search half keeps, how it judges and refits the
PRM on the updated policy's samples, its diversity figures, and its settings' errors."""

from __future__ import annotations

import math

import pytest
import torch
from scripted import StepScriptPolicy, TableReward

from ponder.learn.distill import verified_texts
from ponder.learn.dpo import DPOConfig
from ponder.learn.scoring import score_completions
from ponder.learn.self_evolve import (
    SelfEvolveConfig,
    beam_round,
    follow_policy,
    hard_problems,
    policy_entropy,
    search_half,
    step_dpo,
)
from ponder.policy import ModelConfig, TinyPolicy
from ponder.reward.model import RewardModel
from ponder.tasks import Arithmetic
from ponder.training import SFTConfig
from ponder.types import Problem, Sampling

TASK = Arithmetic(digits=1)


def test_verified_texts_keeps_the_first_distinct_verified_ones_in_order():
    p = Problem("1+1", "Q: 1+1\n", "2")
    texts = ["A: 3\n", "1+1=2\nA: 2\n", "1+1=2\nA: 2\n", "x\nA: 2\n", "A: 2\n"]
    assert verified_texts(TASK, p, texts, 5) == ["1+1=2\nA: 2\n", "x\nA: 2\n", "A: 2\n"]
    assert verified_texts(TASK, p, texts, 2) == ["1+1=2\nA: 2\n", "x\nA: 2\n"]
    assert verified_texts(TASK, p, ["A: 3\n"], 4) == []


def test_beam_round_keeps_verified_beams_chosen_first():
    # two right finishes and one wrong; the PRM prefers the right ones, "one" most
    prompt = "Q: 1+1\n"
    script = {prompt: [("one\n", 0.4), ("two\n", 0.3), ("bad\n", 0.3)],
              prompt + "one\n": [("A: 2\n", 1.0)], prompt + "two\n": [("A: 2\n", 1.0)],
              prompt + "bad\n": [("A: 5\n", 1.0)]}
    policy = StepScriptPolicy(script, seed=1)
    prm = TableReward({"one\n": 0.9, "one\nA: 2\n": 0.9, "two\n": 0.8, "two\nA: 2\n": 0.8, "bad\n": 0.7,
                       "bad\nA: 5\n": 0.1})
    cfg = SelfEvolveConfig(search="beam", width=3, expansions=6, traces_per_tree=4, max_new_tokens=10)
    data, stats = beam_round(policy, prm, TASK, [Problem("1+1", prompt, "2")], cfg, seed=3)
    assert data["traces"] == [[prompt, "one\nA: 2\n"], [prompt, "two\nA: 2\n"]]
    assert data["values"] == [] and stats["kept"] == 2 and stats["search_accuracy"] == 1.0
    assert stats["sample_tokens"] > 0
    one = SelfEvolveConfig(search="beam", width=3, expansions=6, traces_per_tree=1, max_new_tokens=10)
    data, _ = beam_round(policy, prm, TASK, [Problem("1+1", prompt, "2")], one, seed=3)
    assert data["traces"] == [[prompt, "one\nA: 2\n"]]


def test_easy_problems_are_those_a_plain_sample_solves_and_are_not_searched():
    script = {"Q: 1+1\n": [("A: 2\n", 1.0)], "Q: 2+2\n": [("A: 5\n", 1.0)],
              "Q: 3+3\n": [("A: 6\n", 0.5), ("A: 7\n", 0.5)]}
    problems = [Problem("1+1", "Q: 1+1\n", "2"), Problem("2+2", "Q: 2+2\n", "4"), Problem("3+3", "Q: 3+3\n", "6")]
    policy = StepScriptPolicy(script)
    hard, stats = hard_problems(policy, TASK, problems, SelfEvolveConfig(easy_samples=1), seed=0, progress=False)
    assert [p.id for p in hard][:1] == ["2+2"] and stats["easy"] == 3 - len(hard) >= 1
    hard, stats = hard_problems(policy, TASK, problems, SelfEvolveConfig(easy_samples=12), seed=0, progress=False)
    assert [p.id for p in hard] == ["2+2"] and stats["easy"] == 2 and stats["easy_sample_tokens"] == 12 * 3 * 5
    # nothing left to search: the round keeps nothing and spends nothing on search
    prm = TableReward({})
    data, out = beam_round(policy, prm, TASK, [], SelfEvolveConfig(search="beam"), seed=0)
    assert data["traces"] == [] and out["kept"] == 0 and out["sample_tokens"] == 0


def test_policy_entropy_of_a_uniform_policy_is_log_vocab():
    policy = TinyPolicy(ModelConfig(n_layer=1, n_head=2, d_model=16, max_seq_len=32), seed=0)
    with torch.no_grad():
        for p in policy.model.parameters():
            p.zero_()  # every logit 0: the next-token distribution is uniform
    problems = [Problem("1+2", "Q: 1+2\n", "3")]
    groups = policy.generate([p.prompt for p in problems], Sampling(n=3, temperature=1.0, max_new_tokens=6, seed=0))
    assert policy_entropy(policy, problems, groups) == pytest.approx(math.log(policy.tokenizer.vocab_size), abs=1e-4)
    assert policy_entropy(StepScriptPolicy({}), problems, [[]]) is None  # no tokens, no engine


def test_follow_policy_judges_the_prm_before_refitting_it():
    torch.manual_seed(0)
    policy = TinyPolicy(ModelConfig(n_layer=1, n_head=2, d_model=32, max_seq_len=48), seed=0)
    prm = RewardModel.from_policy(policy, kind="process")
    before = [t.clone() for t in prm.parameters()]
    cfg = SelfEvolveConfig(prm_problems=6, prm_samples=3, prm_max_new_tokens=20, prm_steps=3, prm_lr=1e-3)
    out = follow_policy(policy, prm, TASK, cfg, {"values": []}, seed=5, phase="round1", progress=False)
    assert out["prm_samples"] == 18 and out["prm_examples"] <= 18 and out["prm_train_tokens"] > 0
    assert 0 <= out["verified_share"] <= out["pass@3"] <= 1 and out["entropy"] > 0
    assert "prm_before_auroc" in out and "prm_before_first_error_f1" in out
    assert any(not torch.equal(a, b) for a, b in zip(before, prm.parameters()))  # refitted in place
    # the same seed samples the same problems and solutions: the judgement is reproducible
    prm2 = RewardModel.from_policy(policy, kind="process")
    again = follow_policy(policy, prm2, TASK, cfg, {"values": []}, seed=5, phase="round1", progress=False)
    assert again["verified_share"] == out["verified_share"] and again["entropy"] == out["entropy"]
    frozen = follow_policy(policy, prm2, TASK, SelfEvolveConfig(prm_problems=6, prm_samples=3, prm_max_new_tokens=20,
                                                                prm_steps=0), {"values": []}, seed=5, phase="r",
                           progress=False)
    assert "prm_train_tokens" not in frozen


def _dpo(steps):
    return DPOConfig(beta=0.1, train=SFTConfig(steps=steps, batch_size=4, lr=3e-3, warmup=0, min_lr_ratio=1.0))


def test_mcts_search_half_keeps_step_pairs_only_when_the_round_trains_dpo():
    problem = Problem("m", "Q: 1+1\n", "2")
    spec = {"": [("1+1=2\n", 0.5), ("1+1=3\n", 0.5)], "1+1=2\n": [("A: 2\n", 1.0)], "1+1=3\n": [("A: 3\n", 1.0)]}
    policy = StepScriptPolicy({problem.prompt + k: v for k, v in spec.items()}, seed=0)
    prm = TableReward({"1+1=2\n": 1.0, "1+1=2\nA: 2\n": 1.0, "1+1=3\n": 0.0, "1+1=3\nA: 3\n": 0.0})
    cfg = SelfEvolveConfig(search="mcts", simulations=12, expansions=4, max_new_tokens=8, min_visits=1,
                           pair_gap=0.5, dpo=_dpo(2))
    data, stats = search_half(policy, prm, TASK, [problem], cfg, seed=0, progress=False)
    assert [problem.prompt, "1+1=2\n", "1+1=3\n"] in data["pairs"] and stats["pairs"] == len(data["pairs"])
    assert all(prompt.startswith(problem.prompt) and chosen != rejected for prompt, chosen, rejected in data["pairs"])
    plain, plain_stats = search_half(policy, prm, TASK, [problem], SelfEvolveConfig(
        search="mcts", simulations=12, expansions=4, max_new_tokens=8, min_visits=1), seed=0, progress=False)
    assert "pairs" not in plain and "pairs" not in plain_stats


def test_step_dpo_raises_the_chosen_steps_likelihood_over_the_rejected():
    policy = TinyPolicy(ModelConfig(n_layer=1, n_head=2, d_model=32, max_seq_len=48), seed=0)
    pairs = [[f"Q: {i}+{i}\n", f"{i}+{i}={2 * i}\n", f"{i}+{i}={2 * i + 1}\n"] for i in range(1, 5)]

    @torch.no_grad()
    def margin() -> float:
        prompts, chosen, rejected = zip(*pairs)
        c = score_completions(policy, prompts, chosen, [False] * 4)[0].sum(1)
        r = score_completions(policy, prompts, rejected, [False] * 4)[0].sum(1)
        return float((c - r).mean())

    before = margin()
    cfg = SelfEvolveConfig(dpo=_dpo(15))
    out = step_dpo(policy, cfg, {"pairs": pairs}, seed=0, phase="round1", progress=False)
    assert margin() > before + 1.0 and out["dpo_pairs"] == 4 and out["dpo_steps"] == 15 and out["dpo_train_tokens"] > 0
    assert out["dpo_reward_accuracy"] == 1.0
    # no DPO steps: nothing trained and nothing reported; steps but no pairs: the count says so
    assert step_dpo(policy, SelfEvolveConfig(), {"pairs": pairs}, seed=0, phase="r", progress=False) == {}
    assert step_dpo(policy, cfg, {"traces": []}, seed=0, phase="r", progress=False) == {"dpo_pairs": 0}


def test_step_pairs_need_mcts():
    with pytest.raises(ValueError, match='dpo.train.steps > 0 needs search = "mcts"'):
        SelfEvolveConfig(search="beam", dpo=_dpo(5))


@pytest.mark.parametrize("kwargs, key", [
    ({"pair_gap": 0.0}, "pair_gap"), ({"pair_gap": 1.5}, "pair_gap"),
    ({"search": "dfs"}, "search"), ({"labels": "orm"}, "labels"), ({"simulations": 0}, "simulations"),
    ({"easy_samples": -1}, "easy_samples"), ({"prm_samples": 0}, "prm_samples"), ({"prm_max_new_tokens": 0}, "prm_max_new_tokens"), ({"prm_steps": -1}, "prm_steps"), ({"prm_lr": 0.0}, "prm_lr"),
])
def test_bad_settings_name_their_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        SelfEvolveConfig(**kwargs)
