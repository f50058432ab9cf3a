"""Reward models and step labels: positions, the losses on hand examples, Monte-Carlo labels from a
scripted policy with known continuations, persistence, and that training moves scores the right way."""

from __future__ import annotations

import math

import pytest
import torch

from ponder.reward import GoldStepReward, VerifierReward, aggregate
from ponder.reward.labels import gold_labels, label_examples, mc_labels, outcome_labels
from ponder.reward.model import (
    PreferencePair,
    RewardExample,
    RewardModel,
    RewardModelLoadError,
    bce_loss,
    bradley_terry_loss,
    step_end_positions,
    train_reward_model,
)
from ponder.tasks.arithmetic import Arithmetic
from ponder.training import SFTConfig
from ponder.types import Problem, Sampling
from tests.conftest import TINY, make_tiny_policy
from tests.scripted import StepScriptPolicy

P = Problem(id="1+2", prompt="Q: 1+2\n", answer="3", meta={"a": 1, "b": 2, "op": "+"})


@pytest.mark.parametrize("text, ends", [
    ("", []),
    ("ab\n", [2]),
    ("ab\ncd\n", [2, 5]),
    ("ab\ncd", [2, 4]),
    ("ab\n\n  \ncd\n", [2, 9]),  # blank lines are not steps, as in split_steps
    ("\nab", [2]),
])
def test_step_end_positions_match_split_steps(text, ends):
    assert step_end_positions(text) == ends
    assert [text[: e + 1].rstrip("\n").split("\n")[-1] for e in ends] == [s for s in text.split("\n") if s.strip()]


def test_aggregations_by_hand():
    s = [0.9, 0.5, 0.8]
    assert aggregate(s, "last") == 0.8
    assert aggregate(s, "min") == 0.5
    assert aggregate(s, "product") == pytest.approx(0.36)
    assert aggregate(s, "mean") == pytest.approx(2.2 / 3)
    assert aggregate([], "min") == 0.0
    with pytest.raises(ValueError, match="unknown aggregation 'max'"):
        aggregate(s, "max")


def test_gold_step_reward_is_monotone_and_outcome_is_verifier():
    task = Arithmetic(digits=3, op="+", styles=["column"])
    p = task.problems("test", 1, seed=0)[0]
    good = task.demonstration(p)
    steps = good.split("\n")
    bad = "\n".join(["9+9+0=18 c1"] + steps[1:])
    gold = GoldStepReward(task)
    assert gold.step_scores([p, p], [good, bad]) == [[1.0] * 4, [0.0] * 4]
    assert gold.score([p, p], [good, bad]) == VerifierReward(task).score([p, p], [good, bad])
    assert gold_labels(task, [p], [bad]) == [[0.0, 0.0, 0.0, 0.0]]
    assert outcome_labels(task, [p], [good]) == [[1.0] * 4]


# -- Monte-Carlo labels against a scripted policy ------------------------------------------------------

SCRIPT = {
    P.prompt: [("x\n", 0.5), ("y\n", 0.5)],
    P.prompt + "x\n": [("A: 3\n", 1.0)],  # from x every rollout is right: MC value 1
    P.prompt + "y\n": [("A: 4\n", 1.0)],  # from y every rollout is wrong: MC value 0
    P.prompt + "z\n": [("A: 3\n", 0.25), ("A: 5\n", 0.75)],  # from z a quarter are right
    P.prompt + "z\nw\n": [("A: 5\n", 1.0)],
}


def test_mc_labels_known_values():
    policy = StepScriptPolicy(SCRIPT, seed=0)
    task = Arithmetic(digits=1, op="+")
    texts = ["x\nA: 3\n", "y\nA: 4\n", "z\nA: 3\n", "x\nA: 4\n", "z\nw\nA: 5\n"]
    soft, cost = mc_labels(task, policy, [P] * 5, texts, rollouts=400, sampling=Sampling(temperature=1.0, seed=1))
    assert soft[0] == [1.0, 1.0]
    assert soft[1] == [0.0, 0.0]
    assert soft[2][0] == pytest.approx(0.25, abs=0.07) and soft[2][1] == 1.0  # the answer line is verified
    assert soft[3] == [1.0, 0.0]  # a right prefix followed by a wrong answer
    assert soft[4][0] == soft[2][0]  # the shared prefix "z\n" is rolled out once
    assert soft[4][1:] == [0.0, 0.0]
    # one rollout pass over the distinct unfinished prefixes x, y, z, z+w: 4 prompts x 400 samples
    prompts, used = policy.calls[0]
    assert len(policy.calls) == 1 and len(prompts) == 4 and used.n == 400
    assert cost.tokens_generated == 400 * 3 * len("A: 3\n") + 400 * len("A: 5\n")
    hard, _ = mc_labels(task, policy, [P] * 3, texts[:3], rollouts=40, sampling=Sampling(seed=2), hard=True)
    assert hard == [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]


def test_label_examples_kinds():
    task = Arithmetic(digits=1, op="+")
    ex = label_examples(task, [P, P, P], ["x\nA: 3\n", "", "y\nA: 4\n"], [[1.0, 1.0], [], [0.0, 0.0]])
    assert ex == [RewardExample(P.prompt, "x\nA: 3\n", (1.0, 1.0)), RewardExample(P.prompt, "y\nA: 4\n", (0.0, 0.0))]
    ex = label_examples(task, [P, P], ["x\nA: 3\n", "y\nA: 4\n"], [[0.5, 1.0], [0.5, 0.0]], kind="outcome")
    assert [e.targets for e in ex] == [(1.0,), (0.0,)]


# -- the model ---------------------------------------------------------------------------------------


def test_reward_model_positions_and_scores():
    rm = RewardModel.from_policy(make_tiny_policy(0), kind="process", aggregation="min")
    texts = ["1+2=3\nA: 3\n", "1+2=3\nA: 3", "7\n"]
    logits = rm.logits([P.prompt] * 3, texts)
    assert [len(x) for x in logits] == [2, 2, 1]
    steps = rm.step_scores([P] * 3, texts)
    assert steps[0] == pytest.approx(steps[1], abs=1e-5)  # a trailing newline or not: same step ends
    scores = rm.score([P] * 3, texts)
    assert scores == [pytest.approx(min(s)) for s in steps]
    assert rm.calls == 6
    orm = RewardModel.from_policy(make_tiny_policy(0), kind="outcome")
    assert [len(x) for x in orm.logits([P.prompt] * 3, texts)] == [1, 1, 1]
    with pytest.raises(ValueError, match="needs a process reward model"):
        orm.step_scores([P], ["x"])
    with pytest.raises(ValueError, match="3 problems but 1 texts"):
        rm.score([P] * 3, ["x"])


def test_padding_does_not_change_scores():
    rm = RewardModel.from_policy(make_tiny_policy(1), kind="process")
    short, long = "1\n", "12345678\n9\n"
    alone = rm.step_scores([P], [short])[0]
    together = rm.step_scores([P, P], [long, short])[1]
    assert together == pytest.approx(alone, abs=1e-5)


def test_bradley_terry_loss_hand_example(monkeypatch):
    rm = RewardModel(TINY, kind="preference")
    fixed = {"good": 2.0, "bad": 0.5, "meh": 1.0, "worse": 3.0}
    monkeypatch.setattr(rm, "logits", lambda prompts, texts: [torch.tensor([fixed[t]]) for t in texts])
    pairs = [PreferencePair("q", "good", "bad"), PreferencePair("q", "meh", "worse")]
    loss, n = bradley_terry_loss(rm, pairs)
    expected = (math.log1p(math.exp(-1.5)) + math.log1p(math.exp(2.0))) / 2
    assert n == 2 and loss.item() == pytest.approx(expected, rel=1e-6)


def test_bce_loss_hand_example(monkeypatch):
    rm = RewardModel(TINY, kind="process")
    monkeypatch.setattr(rm, "logits", lambda prompts, texts: [torch.tensor([0.0, 2.0]), torch.tensor([-1.0])])
    loss, n = bce_loss(rm, [RewardExample("q", "a\nb\n", (0.5, 1.0)), RewardExample("q", "c\n", (0.0,))])
    expected = (math.log(2) + math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 3
    assert n == 3 and loss.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="1 labels for 2 scored positions"):
        bce_loss(rm, [RewardExample("q", "a\nb\n", (0.5,)), RewardExample("q", "c\n", (0.0,))])


def test_save_load_roundtrip(tmp_path):
    rm = RewardModel.from_policy(make_tiny_policy(2), kind="process", aggregation="product")
    with torch.no_grad():
        rm.head.weight.normal_()
    rm.save(tmp_path / "rm")
    back = RewardModel.load(tmp_path / "rm")
    assert back.kind == "process" and back.aggregation == "product"
    assert back.score([P], ["1\n2\n"]) == pytest.approx(rm.score([P], ["1\n2\n"]))
    assert RewardModel.load(tmp_path / "rm", aggregation="last").aggregation == "last"
    with pytest.raises(RewardModelLoadError, match="not a ponder reward model"):
        RewardModel.load(tmp_path / "nothing")
    (tmp_path / "rm" / "config.json").write_text('{"format": "other"}')
    with pytest.raises(RewardModelLoadError, match="config.json: format is 'other'"):
        RewardModel.load(tmp_path / "rm")


def test_training_separates_labels():
    """A few dozen steps of BCE on two step patterns move their scores to opposite sides."""
    rm = RewardModel(TINY, kind="process", seed=3)
    data = [RewardExample("Q\n", "ok\nok\n", (1.0, 1.0)), RewardExample("Q\n", "ok\nno\n", (1.0, 0.0)),
            RewardExample("Q\n", "no\nok\n", (0.0, 0.0))]
    stats = train_reward_model(rm, data, SFTConfig(steps=60, batch_size=6, lr=3e-3, warmup=5), seed=0, progress=False)
    assert stats["final_loss"] < 0.1
    s = rm.step_scores([P] * 3, ["ok\nok\n", "ok\nno\n", "no\nok\n"])
    assert min(s[0]) > 0.8 and s[1][1] < 0.2 and s[2][0] < 0.2
    with pytest.raises(ValueError, match="trains on RewardExample"):
        train_reward_model(rm, [PreferencePair("q", "a", "b")], SFTConfig(steps=1), seed=0, progress=False)


# -- implicit PRM ------------------------------------------------------------------------------------


def test_implicit_prm_q_values_by_hand():
    from ponder.reward.implicit import ImplicitPRM

    pi, ref = make_tiny_policy(4), make_tiny_policy(5)
    prm = ImplicitPRM(pi, ref, beta=0.5, aggregation="last")
    text = "ab\ncd\n"
    q = prm.q_values([P.prompt], [text])[0]
    lp, _ = pi.logprobs([P.prompt], [text], eos=False)
    lr, _ = ref.logprobs([P.prompt], [text], eos=False)
    diff = 0.5 * (lp - lr)[0]
    assert q.tolist() == pytest.approx([diff[:3].sum().item(), diff[:6].sum().item()], abs=1e-5)
    scores = prm.step_scores([P, P], [text, ""])
    assert scores[0] == pytest.approx(torch.sigmoid(q).tolist(), abs=1e-6) and scores[1] == []
    assert prm.score([P], [text]) == pytest.approx([torch.sigmoid(q[-1]).item()], abs=1e-6)
    # from one policy, pi == pi_ref: every step is a coin flip
    same = ImplicitPRM.from_policy(make_tiny_policy(4))
    assert same.step_scores([P], [text])[0] == pytest.approx([0.5, 0.5])


def test_implicit_prm_learns_from_outcomes_only(tmp_path):
    from ponder.reward.implicit import ImplicitPRM, train_implicit_prm

    prm = ImplicitPRM.from_policy(make_tiny_policy(6), beta=0.5)
    data = [RewardExample("Q\n", "ok\nok\n", (1.0,)), RewardExample("Q\n", "ok\nno\n", (0.0,)),
            RewardExample("Q\n", "no\nok\n", (0.0,))]
    stats = train_implicit_prm(prm, data, SFTConfig(steps=60, batch_size=6, lr=3e-3, warmup=5), seed=0,
                               progress=False)
    assert stats["final_loss"] < 0.2
    good, bad_last, bad_first = prm.step_scores([P] * 3, ["ok\nok\n", "ok\nno\n", "no\nok\n"])
    assert good[-1] > 0.8 and bad_last[-1] < 0.2 and bad_first[-1] < 0.2
    assert bad_first[0] < good[0]  # the process signal: the wrong first step already scores lower
    prm.save(tmp_path / "implicit")
    back = ImplicitPRM.load(tmp_path / "implicit")
    assert back.step_scores([P], ["no\nok\n"])[0] == pytest.approx(bad_first, abs=1e-5)


def test_expected_max_by_enumeration():
    import itertools

    from ponder.reward.overopt import expected_max

    scores = [0.3, 0.9, 0.1, 0.5, 0.7]
    for n in range(1, 6):
        combos = list(itertools.combinations(scores, n))
        assert expected_max(scores, n) == pytest.approx(sum(max(c) for c in combos) / len(combos))
    with pytest.raises(ValueError, match="n must be in"):
        expected_max(scores, 6)


def test_likelihood_feature_is_the_policys_log_likelihood_so_far():
    """With a zero head, a likelihood reward model's logit at each step end is scale x the policy's
    summed log-probability of the solution up to that step."""
    policy = make_tiny_policy(7)
    rm = RewardModel.from_policy(policy, kind="process", likelihood=True)
    text = "ab\ncd\n"
    logits = rm.logits([P.prompt], [text])[0]
    lp, _ = policy.logprobs([P.prompt], [text], eos=False)
    scale = rm.likelihood_scale.item()
    assert logits.tolist() == pytest.approx([scale * lp[0, :3].sum().item(), scale * lp[0, :6].sum().item()], abs=1e-4)
    short = rm.logits([P.prompt, P.prompt], ["a\n", text])  # padding and batch neighbours change nothing
    assert short[1].tolist() == pytest.approx(logits.tolist(), abs=1e-4)
