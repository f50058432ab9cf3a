"""Learning tests: a tiny model must actually learn, within a bounded number of steps."""

from __future__ import annotations

import pytest

from ponder.eval import greedy_accuracy
from ponder.learn.expert_iteration import ExpertIterationConfig, expert_iteration_round
from ponder.learn.sft import SFTConfig, train_sft
from ponder.policy import ModelConfig, TinyPolicy
from ponder.reward import VerifierReward
from ponder.tasks import Arithmetic, ArithmeticConfig


@pytest.mark.slow
def test_sft_learns_one_digit_addition():
    task = Arithmetic(ArithmeticConfig(digits=1))
    train = task.problems("train", 80, seed=0)
    test = task.problems("test", 10, seed=0)
    policy = TinyPolicy(ModelConfig(n_layer=2, n_head=2, d_model=64, max_seq_len=32), seed=0)
    before, _, _ = greedy_accuracy(policy, task, test, max_new_tokens=24, progress=False)
    demos = [(p.prompt, task.demonstration(p)) for p in train]
    train_sft(policy, demos, SFTConfig(steps=250, batch_size=32, lr=3e-3), seed=0, progress=False)
    after, _, _ = greedy_accuracy(policy, task, test + train[:40], max_new_tokens=24, progress=False)
    assert before == 0.0
    assert after >= 0.9


@pytest.mark.slow
def test_expert_iteration_raises_greedy_accuracy():
    task = Arithmetic(ArithmeticConfig(digits=3))
    policy = TinyPolicy(ModelConfig(n_layer=2, n_head=4, d_model=96, max_seq_len=96), seed=0)
    demos = [(p.prompt, task.demonstration(p)) for p in task.problems("train", 1000, seed=0)]
    train_sft(policy, demos, SFTConfig(steps=400, batch_size=32, lr=3e-3), seed=0, progress=False)
    test = task.problems("test", 200, seed=0)
    before, _, _ = greedy_accuracy(policy, task, test, max_new_tokens=64, progress=False)
    cfg = ExpertIterationConfig(problems=1000, samples=4, max_new_tokens=64, temperature=1.0, epochs=2.0,
                                sft=SFTConfig(steps=200, batch_size=32, lr=1e-3, warmup=5))
    reward = VerifierReward(task)
    for r in range(2):
        stats = expert_iteration_round(policy, reward, task.problems("train", 1000, seed=10 + r), cfg, seed=r,
                                       phase=f"round{r}", progress=False)
        assert stats["kept"] > 100
        assert stats["train_steps"] == min(200, -(-2 * stats["kept"] // 32))  # epochs bound the steps
    after, _, _ = greedy_accuracy(policy, task, test, max_new_tokens=64, progress=False)
    assert 0.2 < before < 0.8, before  # calibrated to leave room
    assert after >= before + 0.04, (before, after)
