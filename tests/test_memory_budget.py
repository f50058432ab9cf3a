"""Micro-batches chosen from a memory budget (`learn.<rl>.memory_mb`, ponder.learn.memory): the
grouping, the refusal of a budget one sequence cannot fit, and, on a tiny random Llama and on the
built-in model, the same update with and without the split."""

from __future__ import annotations

import itertools
import os

import pytest
import torch
from conftest import make_tiny_policy

from ponder.learn import rl
from ponder.learn.memory import MIB, ModelShape, activation_bytes, budget_micro_batches, model_shape, row_lengths
from ponder.learn.rl import RLConfig, train_rl
from ponder.tasks import Arithmetic
from ponder.types import Problem

SHAPE = ModelShape(n_layer=2, d_model=64, n_head=4, vocab=100, value_bytes=4)
PROBLEMS = [Problem(f"p{i}", f"{i}+{i}{i}=", str(i + 11 * i)) for i in range(6)]
RL = {"steps": 1, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 12, "lr": 1e-3, "grad_clip": 0.0,
      "reduction": "token"}


class TextReward:
    """A text-dependent reward, so a group's samples get different advantages."""

    calls = 0

    def score(self, problems, texts):
        return [float(sum(map(ord, t)) % 3) for t in texts]


@pytest.fixture
def splits(monkeypatch):
    """The micro-batches each budgeted step was split into."""
    seen: list[list[list[int]]] = []

    def record(*args, **kwargs):
        seen.append(budget_micro_batches(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(rl, "budget_micro_batches", record)
    return seen


def weights(policy) -> list[torch.Tensor]:
    return [p.detach().clone() for p in policy.parameters() if p.requires_grad]


def test_activation_estimate_grows_with_rows_length_and_precision():
    one = activation_bytes(SHAPE, 1, 10)
    assert one == 10 * (2 * (17 * 64 + 2.5 * 4 * 10) + 2 * 100) * 4
    assert activation_bytes(SHAPE, 3, 10) == 3 * one
    assert activation_bytes(SHAPE, 1, 20) > 2 * one  # attention grows with the square of the length
    assert activation_bytes(ModelShape(2, 64, 4, 100, 2), 1, 10) == one / 2


def test_rows_are_grouped_in_order_under_the_budget():
    lengths = [10, 12, 30, 8, 8, 8, 40]
    budget = activation_bytes(SHAPE, 2, 30) / MIB  # two rows of 30 tokens
    groups = budget_micro_batches(lengths, SHAPE, budget)
    assert [i for g in groups for i in g] == list(range(len(lengths)))  # every row once, in order
    for g in groups:
        assert activation_bytes(SHAPE, len(g), max(lengths[i] for i in g)) <= budget * MIB
    for a, b in itertools.pairwise(groups):  # a group ends only when the next row would not fit
        assert activation_bytes(SHAPE, len(a) + 1, max(lengths[i] for i in [*a, b[0]])) > budget * MIB
    assert max(len(g) for g in budget_micro_batches(lengths, SHAPE, 1e9, max_rows=3)) == 3
    assert budget_micro_batches(lengths, SHAPE, 1e9) == [list(range(len(lengths)))]
    with pytest.raises(ValueError, match="one sequence of 40 tokens needs about"):
        budget_micro_batches(lengths, SHAPE, activation_bytes(SHAPE, 1, 39) / MIB)


def test_the_built_in_models_shape_and_prompt_lengths():
    policy = make_tiny_policy(0)
    shape = model_shape(policy)
    cfg = policy.config
    assert shape == ModelShape(cfg.n_layer, cfg.d_model, cfg.n_head, policy.tokenizer.vocab_size, 4)
    assert row_lengths(policy, ["1+11=", "1+11=", "22+2="], [3, 5, 0]) == [9, 11, 6]  # BOS + 5 characters + n


def test_a_budget_split_gives_the_same_update_on_the_built_in_model(splits):
    policies = [make_tiny_policy(0), make_tiny_policy(0)]
    small = activation_bytes(model_shape(policies[0]), 2, 24) / MIB  # about two rows a micro-batch
    outs = [train_rl(p, TextReward(), Arithmetic(), PROBLEMS, RLConfig(memory_mb=m, **RL), seed=3, progress=False)
            for p, m in zip(policies, (small, 0.0))]
    assert len(splits) == 1 and len(splits[0]) >= 3  # the 8 rows went through in several micro-batches
    assert outs[0]["history"][0]["zero_adv_frac"] < 1.0 and outs[0]["train_tokens"] == outs[1]["train_tokens"]
    assert outs[0]["history"][0]["loss"] == pytest.approx(outs[1]["history"][0]["loss"], abs=1e-6)
    assert max(float((a - b).abs().max()) for a, b in zip(weights(policies[0]), weights(policies[1]))) < 1e-6
    assert max(float((a - b).abs().max()) for a, b in zip(weights(policies[0]), weights(make_tiny_policy(0)))) > 1e-4


def test_a_budget_too_small_for_one_sequence_is_refused_before_sampling():
    policy = make_tiny_policy(0)
    need = activation_bytes(model_shape(policy), 1, 1 + len("5+55=") + RL["max_new_tokens"] + 1) / MIB
    before = weights(policy)
    with pytest.raises(ValueError, match=r"rl: memory_mb = .* is too small: one sequence of up to 19 tokens"):
        train_rl(policy, TextReward(), Arithmetic(), PROBLEMS, RLConfig(memory_mb=need * 0.9, **RL), seed=0,
                 progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(policy)))
    with pytest.raises(ValueError, match="memory_mb must be >= 0"):
        RLConfig(memory_mb=-1)


def test_a_budget_split_gives_the_same_update_on_a_pretrained_model(tmp_path, splits):
    os.environ["HF_HUB_OFFLINE"] = "1"
    pytest.importorskip("transformers")
    import transformers
    from test_hf_policy import llama_config, make_tokenizer

    from ponder.policy.hf import HFConfig, HFPolicy

    torch.manual_seed(0)
    transformers.LlamaForCausalLM(llama_config()).save_pretrained(tmp_path)
    make_tokenizer().save_pretrained(tmp_path)
    policies = [HFPolicy(HFConfig(str(tmp_path)), seed=0) for _ in range(2)]
    shape = model_shape(policies[0])
    assert (shape.n_layer, shape.d_model, shape.n_head, shape.value_bytes) == (2, 32, 4, 4)
    assert row_lengths(policies[0], ["1+11="], [4]) == [len(policies[0].prompt_ids("1+11=")) + 4]
    small = activation_bytes(shape, 2, 20) / MIB
    outs = [train_rl(p, TextReward(), Arithmetic(), PROBLEMS, RLConfig(memory_mb=m, **RL), seed=3, progress=False)
            for p, m in zip(policies, (small, 0.0))]
    assert len(splits) == 1 and len(splits[0]) >= 3
    assert outs[0]["history"][0]["zero_adv_frac"] < 1.0 and outs[0]["train_tokens"] == outs[1]["train_tokens"]
    assert outs[0]["history"][0]["loss"] == pytest.approx(outs[1]["history"][0]["loss"], abs=1e-5)
    assert max(float((a - b).abs().max()) for a, b in zip(weights(policies[0]), weights(policies[1]))) < 1e-5


def test_the_run_refuses_a_budget_too_small_for_one_row_before_training_the_built_in_model(tmp_path, capsys):
    import json

    from ponder.cli import main

    args = ["run", "addition", "--quiet", "--runs-dir", str(tmp_path), "--name", "m"]
    for s in ("learn.learner=rloo", "learn.rl.memory_mb=0.0001", "init.sft.steps=2000"):
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "learn.rl.memory_mb = 0.0001 is too small" in err and "Traceback" not in err
    assert json.loads((tmp_path / "m" / "state.json").read_text())["done"] == []  # the SFT never started
