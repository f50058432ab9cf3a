"""Reward shaping, reward ensembles and reward-model metrics: hand-computed cases and properties."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.reward import (
    OutcomeReward,
    ProcessReward,
    ProcessRewardEnsemble,
    RewardEnsemble,
    ShapedReward,
    VerifierReward,
    auroc,
    best_of_n_curve,
    clip_process_rewards,
    delta_process_rewards,
    ensemble_scores,
    first_error_index,
    format_reward,
    length_penalty,
    potential_shaping,
    predicted_first_error,
    process_bench_f1,
    returns,
    shape_steps,
    step_f1,
)
from ponder.tasks.arithmetic import Arithmetic
from ponder.tasks.base import split_steps
from ponder.types import Problem

approx = pytest.approx
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


# ---------------------------------------------------------------- scripted rewards


class TableOutcome:
    """Outcome reward from a table text -> score (default 0)."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.calls = 0

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]:
        self.calls += len(texts)
        return [self.table.get(t, 0.0) for t in texts]


class TableProcess(TableOutcome):
    """Process reward from a table step -> score (default 0.5); outcome = the last step's score."""

    def step_scores(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]:
        self.calls += len(texts)
        return [[self.table.get(s, 0.5) for s in split_steps(t)] for t in texts]

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]:
        rows = self.step_scores(problems, texts)
        return [row[-1] if row else 0.0 for row in rows]


PROBLEM = Problem(id="2+3", prompt="Q: 2+3\n", answer="5")
PRM = {"setup": 0.8, "good": 0.95, "A: 5": 0.9}


def repeated(k: int) -> str:
    """A right solution that repeats a high-scoring but useless step k times."""
    return "setup\n" + "good\n" * k + "A: 5\n"


# ---------------------------------------------------------------- shaping: pure functions


def test_returns_hand_case():
    assert returns([1.0, 2.0, 3.0], 0.5) == approx([2.75, 3.5, 3.0])
    assert returns([1.0, 2.0, 3.0]) == approx([6.0, 5.0, 3.0])
    assert returns([], 0.9) == []
    with pytest.raises(ValueError, match="1.5"):
        returns([1.0], 1.5)


def test_potential_shaping_hand_case():
    rewards, phi = [1.0, 0.0, 2.0], [0.5, 0.2, 0.8, 0.9]
    assert potential_shaping(rewards, phi, 0.5, terminal_zero=False) == approx([0.6, 0.2, 1.65])
    assert potential_shaping(rewards, phi, 0.5) == approx([0.6, 0.2, 1.2])  # terminal_zero by default
    # telescoping: discounted sum = discounted rewards + gamma^T Phi_T - Phi_0 = 1.5 + 0.125 * 0.9 - 0.5
    assert returns(potential_shaping(rewards, phi, 0.5, terminal_zero=False), 0.5)[0] == approx(1.1125)
    assert potential_shaping([], [0.3]) == []
    with pytest.raises(ValueError, match="3 potentials for 3 rewards"):
        potential_shaping(rewards, phi[:3])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=12).flatmap(
        lambda r: st.tuples(st.just(r), st.lists(st.floats(-5, 5, allow_nan=False), min_size=len(r) + 1,
                                                 max_size=len(r) + 1))
    ),
    unit,
    st.booleans(),
)
def test_potential_shaping_telescopes(rp, gamma, terminal_zero):
    rewards, phi = rp
    shaped = potential_shaping(rewards, phi, gamma, terminal_zero=terminal_zero)
    phi_t = 0.0 if terminal_zero else phi[-1]
    expected = returns(rewards, gamma)[0] + gamma ** len(rewards) * phi_t - phi[0]
    assert returns(shaped, gamma)[0] == approx(expected, abs=1e-9)
    if gamma == 1.0:
        assert sum(shaped) == approx(sum(rewards) + phi_t - phi[0], abs=1e-9)


def test_clip_and_delta_hand_cases():
    s = [0.9, 0.3, 0.5]
    assert clip_process_rewards(s, 0.5) == approx([0.0, -0.2, 0.0])
    assert delta_process_rewards(s) == approx([0.6, -0.2, 0.5])
    assert sum(delta_process_rewards(s)) == approx(0.9)  # the first step's score
    assert delta_process_rewards(s, last="zero") == approx([0.6, -0.2, 0.0])
    assert sum(delta_process_rewards(s, last="zero")) == approx(0.4)  # s_1 - s_T
    assert delta_process_rewards([]) == []
    assert clip_process_rewards([], 0.5) == []
    with pytest.raises(ValueError, match="'first'"):
        delta_process_rewards(s, last="first")


@settings(max_examples=60, deadline=None)
@given(st.lists(unit, min_size=1, max_size=30), unit)
def test_clip_and_delta_returns_are_bounded(scores, threshold):
    assert sum(clip_process_rewards(scores, threshold)) <= 0.0
    assert sum(delta_process_rewards(scores)) == approx(scores[0], abs=1e-9)
    assert -1.0 <= sum(delta_process_rewards(scores, last="zero")) <= 1.0
    # return-to-go from every step under Delta is that step's score
    assert returns(delta_process_rewards(scores)) == approx(scores, abs=1e-9)


def test_repeating_a_good_step_does_not_pay_under_clip_and_delta():
    """The hack of Gao et al. 2024: repeat a high-scoring step k times. The raw sum of PRM scores
    grows with k; the Clip and Delta returns do not."""
    raw, clip, delta, delta0 = [], [], [], []
    for k in range(1, 21):
        scores = [PRM["setup"], *[PRM["good"]] * k, PRM["A: 5"]]
        raw.append(sum(scores))
        clip.append(sum(clip_process_rewards(scores, threshold=0.85)))
        delta.append(sum(delta_process_rewards(scores)))
        delta0.append(sum(delta_process_rewards(scores, last="zero")))
    assert all(b > a for a, b in pairwise(raw))
    assert clip == approx([-0.05] * 20)  # only the setup step falls short of the threshold
    assert delta == approx([0.8] * 20)
    assert delta0 == approx([0.8 - 0.9] * 20)


def test_length_penalty():
    assert length_penalty(120, 100, 0.01) == approx(-0.2)
    assert length_penalty(100, 100, 0.01) == 0.0
    assert length_penalty(80, 100, 0.01) == 0.0
    with pytest.raises(ValueError, match="-1"):
        length_penalty(10, 5, -1)
    with pytest.raises(ValueError, match="-3"):
        length_penalty(-3, 5, 1.0)


def test_format_reward():
    task = Arithmetic()
    assert format_reward("1+2+0=3 c0\nA: 5\n", task) == 1.0
    assert format_reward("A: 7\n", task) == 1.0  # format only, not correctness
    assert format_reward("I think it is 5\n", task) == 0.0
    assert format_reward("A: five\n", task) == 0.0
    assert format_reward("A: 5\n", task, present=0.0, missing=-1.0) == 0.0
    assert format_reward("", task, present=0.0, missing=-1.0) == -1.0


def test_shape_steps():
    s = [0.9, 0.3, 0.5]
    assert shape_steps(s, 1.0, "clip", threshold=0.5) == approx([0.0, -0.2, 1.0])
    assert shape_steps(s, 1.0, "delta", process_coef=0.5) == approx([0.3, -0.1, 1.25])
    assert shape_steps(s, 1.0, "raw", outcome_coef=2.0) == approx([0.9, 0.3, 2.5])
    # potential: Phi = [phi0, 0.9, 0.3, 0 (terminal)], base rewards 0
    assert shape_steps(s, 1.0, "potential", phi0=0.5) == approx([0.4, -0.6, 0.7])
    assert shape_steps([], 1.0, "clip") == []
    with pytest.raises(ValueError, match="'sum'"):
        shape_steps(s, 1.0, "sum")


# ---------------------------------------------------------------- ShapedReward


def test_shaped_reward_is_an_outcome_reward_with_step_rewards():
    task = Arithmetic()
    prm = TableProcess(PRM)
    shaped = ShapedReward(prm, VerifierReward(task), transform="clip", threshold=0.85)
    assert isinstance(shaped, OutcomeReward)
    assert not isinstance(shaped, ProcessReward)
    texts = [repeated(1), "setup\nA: 4\n", ""]
    problems = [PROBLEM] * 3
    steps = shaped.step_rewards(problems, texts)
    assert steps[0] == approx([-0.05, 0.0, 1.0])
    assert steps[1] == approx([-0.05, -0.35])  # the wrong answer's step scores the default 0.5
    assert steps[2] == []
    assert shaped.score(problems, texts) == approx([0.95, -0.4, 0.0])
    assert shaped.calls == 6  # once per text per call
    assert prm.calls == 6


@pytest.mark.parametrize("transform", ["clip", "delta", "potential"])
def test_shaped_reward_bounded_under_repetition(transform):
    shaped = ShapedReward(TableProcess(PRM), VerifierReward(Arithmetic()), transform=transform, threshold=0.85,
                          phi0=0.3)
    texts = [repeated(k) for k in range(1, 21)]
    totals = shaped.score([PROBLEM] * len(texts), texts)
    assert totals == approx([totals[0]] * len(texts))
    expected = {"clip": 1.0 - 0.05, "delta": 0.8 + 1.0, "potential": 1.0 - 0.3}[transform]
    assert totals[0] == approx(expected)
    raw = ShapedReward(TableProcess(PRM), VerifierReward(Arithmetic()), transform="raw")
    raw_totals = raw.score([PROBLEM] * len(texts), texts)
    assert all(b > a for a, b in pairwise(raw_totals))


def test_shaped_reward_discounting_and_no_outcome():
    shaped = ShapedReward(TableProcess(PRM), None, transform="raw", gamma=0.5)
    text = repeated(1)  # scores 0.8, 0.95, 0.9
    assert shaped.step_rewards([PROBLEM], [text]) == [approx([0.8, 0.95, 0.9])]
    assert shaped.score([PROBLEM], [text]) == approx([0.8 + 0.5 * 0.95 + 0.25 * 0.9])


def test_shaped_reward_validation():
    prm = TableProcess(PRM)
    with pytest.raises(ValueError, match="'median'"):
        ShapedReward(prm, transform="median")
    with pytest.raises(ValueError, match="2"):
        ShapedReward(prm, gamma=2)
    with pytest.raises(TypeError, match="TableOutcome"):
        ShapedReward(TableOutcome({}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parallel"):
        ShapedReward(prm).score([PROBLEM], ["a", "b"])

    class Short(TableProcess):
        def step_scores(self, problems, texts):
            return [[0.5] for _ in texts]

    with pytest.raises(ValueError, match="1 step scores for text 0, which has 3 steps"):
        ShapedReward(Short({})).score([PROBLEM], [repeated(1)])


# ---------------------------------------------------------------- ensembles

MATRIX = [[1.0, 0.2, 0.5], [0.5, 0.4, 0.5], [0.0, 0.6, 0.5]]


def test_ensemble_scores_by_hand():
    assert ensemble_scores(MATRIX, "mean") == approx([0.5, 0.4, 0.5])
    assert ensemble_scores(MATRIX, "wco") == approx([0.0, 0.2, 0.5])
    # population variances across members: 1/6, 0.08/3, 0
    assert ensemble_scores(MATRIX, "uwo", coef=2.0) == approx([0.5 - 2 / 6, 0.4 - 0.16 / 3, 0.5])
    assert ensemble_scores(MATRIX, "uwo", coef=0.0) == approx(ensemble_scores(MATRIX, "mean"))
    assert ensemble_scores([[0.3, 0.7]], "uwo", coef=5.0) == approx([0.3, 0.7])  # one member: no spread
    assert ensemble_scores([[], []], "wco") == []


def test_ensemble_scores_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="'median'"):
        ensemble_scores(MATRIX, "median")
    with pytest.raises(ValueError, match="-1"):
        ensemble_scores(MATRIX, "uwo", coef=-1.0)
    with pytest.raises(ValueError, match="at least one member"):
        ensemble_scores([], "mean")
    with pytest.raises(ValueError, match="member 1 scored 2 items but member 0 scored 3"):
        ensemble_scores([[1, 2, 3], [1, 2]], "mean")
    with pytest.raises(ValueError, match="member 0 gave a non-finite score nan for item 1"):
        ensemble_scores([[1.0, math.nan]], "mean")


def test_reward_ensemble_outcome_members():
    texts = ["a", "b", "c"]
    members = [TableOutcome({"a": 1.0, "b": 0.2, "c": 0.5}), TableOutcome({"a": 0.5, "b": 0.4, "c": 0.5}),
               TableOutcome({"a": 0.0, "b": 0.6, "c": 0.5})]
    ens = RewardEnsemble(members, how="wco")
    assert type(ens) is RewardEnsemble
    assert isinstance(ens, OutcomeReward)
    assert not isinstance(ens, ProcessReward)
    assert not hasattr(ens, "step_scores")
    assert ens.score([PROBLEM] * 3, texts) == approx([0.0, 0.2, 0.5])
    assert ens.calls == 3  # per text, not per member
    assert [m.calls for m in members] == [3, 3, 3]
    uwo = RewardEnsemble(members, how="uwo", coef=2.0)
    assert uwo.score([PROBLEM] * 3, texts) == approx([0.5 - 2 / 6, 0.4 - 0.16 / 3, 0.5])
    assert RewardEnsemble(members).score([PROBLEM] * 3, texts) == approx([0.5, 0.4, 0.5])


def test_reward_ensemble_process_members():
    a = TableProcess({"x": 0.9, "y": 0.1})
    b = TableProcess({"x": 0.5, "y": 0.3})
    ens = RewardEnsemble([a, b], how="mean")
    assert isinstance(ens, ProcessRewardEnsemble)
    assert isinstance(ens, ProcessReward)
    assert ens.step_scores([PROBLEM, PROBLEM], ["x\ny\n", ""]) == [approx([0.7, 0.2]), []]
    assert ens.calls == 2
    assert RewardEnsemble([a, b], how="wco").score([PROBLEM], ["x\ny\n"]) == approx([0.1])
    mixed = RewardEnsemble([a, TableOutcome({})])
    assert not isinstance(mixed, ProcessReward)
    with pytest.raises(TypeError, match="member 1"):
        ProcessRewardEnsemble([a, TableOutcome({})])

    class OneStep(TableProcess):
        def step_scores(self, problems, texts):
            return [[0.5] for _ in texts]

    with pytest.raises(ValueError, match=r"text 0: \[2, 1\]"):
        RewardEnsemble([a, OneStep({})]).step_scores([PROBLEM], ["x\ny\n"])


def test_reward_ensemble_validation():
    with pytest.raises(ValueError, match="'max'"):
        RewardEnsemble([TableOutcome({})], how="max")
    with pytest.raises(ValueError, match="-0.5"):
        RewardEnsemble([TableOutcome({})], how="uwo", coef=-0.5)
    with pytest.raises(ValueError, match="at least one member"):
        RewardEnsemble([])
    with pytest.raises(TypeError, match="member 1 \\(int\\)"):
        RewardEnsemble([TableOutcome({}), 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="parallel"):
        RewardEnsemble([TableOutcome({})]).score([PROBLEM], [])


# ---------------------------------------------------------------- metrics


def test_auroc_hand_cases():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == approx(0.75)
    # ties count one half: pairs (0.5 vs 0.5) 0.5, (0.5 vs 0.2) 1, (0.9 vs 0.5) 1, (0.9 vs 0.2) 1
    assert auroc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == approx(0.875)
    assert auroc([1, 2, 3], [0, 1, 1]) == 1.0
    assert auroc([3, 2, 1], [0, 1, 1]) == 0.0
    assert auroc([0.7, 0.7, 0.7], [True, False, True]) == 0.5


def test_auroc_errors():
    with pytest.raises(ValueError, match="3 positives and 0 negatives"):
        auroc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="0 positives"):
        auroc([0.1], [0])
    with pytest.raises(ValueError, match="2 at index 1"):
        auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="2 scores but 1 labels"):
        auroc([0.1, 0.2], [0])
    with pytest.raises(ValueError, match="nan"):
        auroc([math.nan, 0.2], [0, 1])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=40))
def test_auroc_matches_brute_force_pair_count(pairs):
    labels = [int(y) for _, y in pairs]
    if len(set(labels)) < 2:
        labels[0], labels[1] = 0, 1
    scores = [s / 6 for s, _ in pairs]  # few distinct values, so plenty of ties
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert auroc(scores, labels) == approx(wins / (len(pos) * len(neg)))


def test_first_error_indices():
    assert first_error_index([1, 1, 0, 1]) == 2
    assert first_error_index([1.0, 1.0]) == -1
    assert first_error_index([]) == -1
    assert first_error_index([0]) == 0
    with pytest.raises(ValueError, match="0.5 at index 1"):
        first_error_index([1, 0.5])
    assert predicted_first_error([0.9, 0.6, 0.4, 0.8]) == 2
    assert predicted_first_error([0.9, 0.6, 0.4, 0.8], threshold=0.7) == 1
    assert predicted_first_error([0.5, 0.9]) == -1  # at the threshold is not an error
    assert predicted_first_error([]) == -1


def test_process_bench_f1_hand_case():
    # erroneous samples (gold >= 0): 2 of 3 exact; correct samples (gold -1): 1 of 2 predicted -1
    out = process_bench_f1([2, -1, 1, -1, 0], [2, 3, -1, -1, 0])
    assert out["error_acc"] == approx(2 / 3)
    assert out["correct_acc"] == approx(1 / 2)
    assert out["f1"] == approx(4 / 7)
    assert (out["n_error"], out["n_correct"]) == (3, 2)
    assert process_bench_f1([0, 1], [1, -1])["f1"] == 0.0
    only_errors = process_bench_f1([1], [1])
    assert only_errors["error_acc"] == 1.0 and math.isnan(only_errors["correct_acc"]) and math.isnan(only_errors["f1"])


def test_process_bench_f1_validation():
    with pytest.raises(ValueError, match="2 predictions but 1 gold"):
        process_bench_f1([0, 1], [1])
    with pytest.raises(ValueError, match="-2 at index 0"):
        process_bench_f1([-2], [1])
    with pytest.raises(ValueError, match="1.5 at index 0"):
        process_bench_f1([0], [1.5])


def test_step_f1():
    # wrong steps (0) are the positives: TP 2 (indices 1, 4), FP 1 (index 2), FN 1 (index 3)
    assert step_f1([1, 0, 0, 1, 0], [1, 0, 1, 0, 0]) == approx(2 / 3)
    assert step_f1([0, 1], [0, 1]) == 1.0
    assert step_f1([1, 1], [0, 0]) == 0.0
    assert math.isnan(step_f1([1, 1], [1, 1]))
    with pytest.raises(ValueError, match="3 predicted labels but 2 gold"):
        step_f1([1, 1, 1], [1, 1])


def test_best_of_n_curve_hand_cases():
    scores = [[0.9, 0.1, 0.5], [0.2, 0.7, 0.7]]
    correct = [[0, 1, 1], [0, 1, 0]]
    curve = best_of_n_curve(scores, correct, [1, 2, 3])
    assert curve[1] == approx((2 / 3 + 1 / 3) / 2)  # N=1: mean accuracy
    # problem 0, N=2: draws {0,1} {0,2} pick 0 (wrong), {1,2} picks 2 (right) -> 1/3;
    # problem 1, N=2: {0,1} -> 1, {0,2} -> 2, {1,2} -> 1 (tie to the first index) -> 2/3
    assert curve[2] == approx((1 / 3 + 2 / 3) / 2)
    # N = pool size: the global argmax, ties to the first index: problem 0 wrong, problem 1 right
    assert curve[3] == approx(0.5)


def test_best_of_n_curve_n1_is_mean_accuracy_and_full_pool_is_argmax():
    rng = random.Random(7)
    m = 8
    scores = [[rng.random() for _ in range(m)] for _ in range(20)]
    correct = [[rng.randrange(2) for _ in range(m)] for _ in range(20)]
    mean_acc = sum(sum(c) / m for c in correct) / len(correct)
    argmax_acc = sum(c[max(range(m), key=lambda i: s[i])] for s, c in zip(scores, correct)) / len(correct)
    exact = best_of_n_curve(scores, correct, [1, m])
    assert exact[1] == approx(mean_acc)
    assert exact[m] == approx(argmax_acc)
    sampled = best_of_n_curve(scores, correct, [1, 3, m], trials=400, seed=1)
    assert sampled[m] == approx(argmax_acc)  # one possible draw
    assert sampled[1] == approx(mean_acc, abs=0.05)
    assert sampled[3] == approx(best_of_n_curve(scores, correct, [3])[3], abs=0.05)
    assert sampled == best_of_n_curve(scores, correct, [1, 3, m], trials=400, seed=1)  # seeded


def test_best_of_n_curve_oracle_is_pass_at_n():
    rng = random.Random(3)
    m = 10
    correct = [[int(rng.random() < p) for _ in range(m)] for p in (0.05, 0.2, 0.5, 0.9, 0.0, 1.0)]
    ns = list(range(1, m + 1))
    curve = best_of_n_curve(correct, correct, ns)  # oracle: score = correctness
    values = [curve[n] for n in ns]
    assert all(b >= a - 1e-12 for a, b in pairwise(values))
    for n in ns:
        pass_at_n = sum(1 - math.comb(m - sum(c), n) / math.comb(m, n) for c in correct) / len(correct)
        assert curve[n] == approx(pass_at_n)
    sampled = best_of_n_curve(correct, correct, ns, trials=200, seed=0)
    sampled_values = [sampled[n] for n in ns]
    assert all(b >= a - 0.05 for a, b in pairwise(sampled_values))


def test_best_of_n_curve_validation():
    with pytest.raises(ValueError, match="problem 1 has 2 candidates, too few for N=3"):
        best_of_n_curve([[1, 2, 3], [1, 2]], [[0, 1, 1], [0, 1]], [3])
    with pytest.raises(ValueError, match="problem 0: 2 scores but 1 correctness"):
        best_of_n_curve([[1, 2]], [[0]], [1])
    with pytest.raises(ValueError, match="got 0"):
        best_of_n_curve([[1, 2]], [[0, 1]], [0])
    with pytest.raises(ValueError, match="trials"):
        best_of_n_curve([[1, 2]], [[0, 1]], [1], trials=0)
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5 at index 1"):
        best_of_n_curve([[1, 2]], [[0, 1.5]], [1])
    with pytest.raises(ValueError, match="got -0.1 at index 0"):
        best_of_n_curve([[1, 2]], [[-0.1, 1]], [1])
    assert best_of_n_curve([[1, 2]], [[0, 0.5]], [2]) == {2: 0.5}  # partial credit is a correctness value
    with pytest.raises(ValueError, match="at least one problem"):
        best_of_n_curve([], [], [1])
