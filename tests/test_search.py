"""Tests of the selectors (majority and weighted vote, select_best) and of best-of-N with a scripted
policy and a table reward."""

from __future__ import annotations

import pytest

from ponder.search import best_of_n, majority_vote, select_best, weighted_vote
from ponder.tasks.arithmetic import Arithmetic
from ponder.types import Cost, Problem, Sample, Sampling

# -- voting ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answers, expected", [
    (["1", "2", "2"], 1),
    (["7"], 0),
    ([None, "3", None, "3", "4"], 1),
    ([None, None, "5"], 2),
    (["a", "b", "b", "a"], 0),  # tie: the answer seen first wins
    (["b", "a", "a", "b"], 0),
    (["x", "y", "z"], 0),
    (["x", None, "y", "y", None, None], 2),  # None never votes, however many
    ([None, None], None),
    ([], None),
])
def test_majority_vote(answers, expected):
    assert majority_vote(answers) == expected


@pytest.mark.parametrize("answers, weights, expected", [
    (["a", "b", "a", "b"], [0.1, 0.5, 0.2, 0.1], 1),  # a: 0.3, b: 0.6
    (["a", "b", "a", "b"], [0.4, 0.5, 0.2, 0.1], 0),  # a: 0.6, b: 0.6 -> tie -> a (first seen)
    (["x", "y"], [0.5, 0.5], 0),
    (["y", "x"], [0.5, 0.5], 0),
    ([None, "a"], [10.0, 0.1], 1),  # a weight on a missing answer counts for nothing
    (["a", "b", "b"], [0.9, 0.5, 0.5], 1),  # 1.0 beats 0.9
    (["a", "b", "b"], [1.0, 0.5, 0.5], 0),  # 1.0 ties 1.0 -> first seen
    (["a", "b"], [-1.0, -0.5], 1),
    ([None, None], [1.0, 2.0], None),
])
def test_weighted_vote(answers, weights, expected):
    assert weighted_vote(answers, weights) == expected


def test_weighted_vote_length_mismatch():
    with pytest.raises(ValueError, match="3 answers but 2 weights"):
        weighted_vote(["a", "b", "c"], [1.0, 1.0])


@pytest.mark.parametrize("scores, expected", [
    ([0.1, 0.9, 0.9], 1),
    ([1.0, 1.0, 1.0], 0),
    ([0.0], 0),
    ([-3.0, -1.0, -2.0], 1),
    ([0.2, 0.1, 0.3, 0.3], 2),
])
def test_select_best(scores, expected):
    assert select_best(scores) == expected


def test_select_best_empty():
    with pytest.raises(ValueError, match="at least one"):
        select_best([])


# -- best-of-N ---------------------------------------------------------------------------------------


def sample(text: str, tokens: int, encoded: int = 0, calls: int = 0, flops: float = 0.0) -> Sample:
    return Sample(text=text, token_ids=tuple(range(tokens)), logprobs=(0.0,) * tokens, finish="eos",
                  cost=Cost(tokens_generated=tokens, tokens_encoded=encoded, policy_calls=calls, flops=flops))


class ScriptedPolicy:
    """Returns fixed samples per prompt (the first n of its script) and records each call's sampling."""

    def __init__(self, script: dict[str, list[Sample]]) -> None:
        self.script = script
        self.calls: list[tuple[list[str], Sampling]] = []

    def generate(self, prompts, sampling):
        self.calls.append((list(prompts), sampling))
        return [self.script[p][: sampling.n] for p in prompts]


class TableReward:
    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.calls = 0

    def score(self, problems, texts):
        assert len(problems) == len(texts)
        self.calls += len(texts)
        return [self.table[t] for t in texts]


P1 = Problem(id="1+2", prompt="Q: 1+2\n", answer="3", meta={"a": 1, "b": 2, "op": "+"})
P2 = Problem(id="5+5", prompt="Q: 5+5\n", answer="10", meta={"a": 5, "b": 5, "op": "+"})
SCRIPT = {
    P1.prompt: [sample("A: 4\n", 5, encoded=8, calls=6, flops=100.0), sample("A: 3\n", 6, flops=50.0),
                sample("A: 3 \n", 7, flops=25.0), sample("junk", 2)],
    P2.prompt: [sample("A: 11\n", 4, encoded=8, flops=10.0), sample("none", 3), sample("A: 10\n", 6),
                sample("A: 9\n", 1)],
}
TABLE = {"A: 4\n": 0.2, "A: 3\n": 0.9, "A: 3 \n": 0.9, "junk": 0.0,
         "A: 11\n": 0.5, "none": 0.7, "A: 10\n": 0.6, "A: 9\n": 0.95}


def test_best_of_n_picks_argmax_and_counts_cost():
    policy, reward = ScriptedPolicy(SCRIPT), TableReward(TABLE)
    base = Sampling(n=1, temperature=0.7, top_p=0.9, max_new_tokens=33, seed=5)
    results = best_of_n([P1, P2], policy, reward, Arithmetic(), n=3, sampling=base)
    assert len(policy.calls) == 1
    prompts, used = policy.calls[0]
    assert prompts == [P1.prompt, P2.prompt]
    assert used == Sampling(n=3, temperature=0.7, top_p=0.9, max_new_tokens=33, seed=5)

    r1, r2 = results
    assert r1.problem_id == "1+2" and r1.text == "A: 3\n" and r1.answer == "3" and r1.score == 0.9  # tie -> earliest
    assert r1.candidates == tuple(SCRIPT[P1.prompt][:3])
    assert r1.cost == Cost(tokens_generated=5 + 6 + 7, tokens_encoded=8, policy_calls=6, reward_calls=3,
                           flops=175.0)
    assert r2.problem_id == "5+5" and r2.text == "none" and r2.answer is None and r2.score == 0.7
    assert r2.cost == Cost(tokens_generated=4 + 3 + 6, tokens_encoded=8, policy_calls=0, reward_calls=3, flops=10.0)
    assert reward.calls == 6


def test_best_of_n_with_all_four():
    policy, reward = ScriptedPolicy(SCRIPT), TableReward(TABLE)
    r1, r2 = best_of_n([P1, P2], policy, reward, Arithmetic(), n=4, sampling=Sampling())
    assert (r1.text, r1.score) == ("A: 3\n", 0.9)
    assert (r2.text, r2.answer, r2.score) == ("A: 9\n", "9", 0.95)
    assert r2.cost.tokens_generated == 14 and r2.cost.reward_calls == 4
    assert reward.calls == 8


def test_best_of_one_is_first_sample():
    policy, reward = ScriptedPolicy(SCRIPT), TableReward(TABLE)
    r1, r2 = best_of_n([P1, P2], policy, reward, Arithmetic(), n=1, sampling=Sampling(n=8))
    assert policy.calls[0][1].n == 1
    assert (r1.text, r1.score, r1.answer) == ("A: 4\n", 0.2, "4")
    assert (r2.text, r2.score, r2.answer) == ("A: 11\n", 0.5, "11")
    assert r1.cost.reward_calls == 1 and len(r1.candidates) == 1
