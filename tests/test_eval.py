"""Tests of evaluation: the selection table (oracle and majority at each N, with token counts) on
scripted samples, chunked generation seeds, and greedy accuracy with a scripted policy."""

from __future__ import annotations

import pytest

from ponder.eval import evaluate, generate_in_chunks, greedy_accuracy, selection_table
from ponder.tasks.arithmetic import Arithmetic
from ponder.types import Cost, Problem, Sample, Sampling

TASK = Arithmetic()


def prob(a: int, b: int) -> Problem:
    return Problem(id=f"{a}+{b}", prompt=f"Q: {a}+{b}\n", answer=str(a + b), meta={"a": a, "b": b, "op": "+"})


def s(text: str, tokens: int) -> Sample:
    return Sample(text=text, token_ids=tuple(range(tokens)), logprobs=(0.0,) * tokens, finish="eos",
                  cost=Cost(tokens_generated=tokens, flops=0.5 * tokens))


PROBLEMS = [prob(1, 2), prob(5, 5), prob(7, 8)]
GROUPS = [
    # answer 3. correct: 0 1 1 0; answers 4 3 3 4
    [s("A: 4\n", 1), s("A: 3\n", 2), s("1+2+0=3 c0\nA: 3\n", 3), s("A: 4\n", 4)],
    # answer 10. correct: 0 1 0 1; answers None 10 11 10
    [s("no answer here", 10), s("A: 10\n", 20), s("A: 11\n", 30), s("A: 10\n", 40)],
    # answer 15. correct: 1 0 0 0; answers 15 16 16 16 ("15.0" is 15)
    [s("7+8+0=15 c1\nA: 15.0\n", 100), s("A: 16\n", 200), s("A: 16\n", 300), s("A: 16\n", 400)],
]


def test_selection_table_hand_computed():
    rows = selection_table(PROBLEMS, GROUPS, TASK, [1, 2, 4])
    assert [(r["method"], r["n"]) for r in rows] == [("oracle", 1), ("majority", 1), ("oracle", 2), ("majority", 2),
                                                    ("oracle", 4), ("majority", 4)]
    got = {(r["method"], r["n"]): r for r in rows}
    # n=1: only sample 0 counts. oracle = majority = [0, 0, 1]
    assert got["oracle", 1]["accuracy"] == pytest.approx(1 / 3)
    assert got["majority", 1]["accuracy"] == pytest.approx(1 / 3)
    # n=2: oracle [1, 1, 1]; majority: 4-vs-3 tie -> 4 (wrong); None never votes -> 10 (right); 15-vs-16 tie -> 15
    assert got["oracle", 2]["accuracy"] == pytest.approx(1.0)
    assert got["majority", 2]["accuracy"] == pytest.approx(2 / 3)
    # n=4: oracle [1, 1, 1]; majority: 4 (2) ties 3 (2) -> 4 wrong; 10 (2) -> right; 16 (3) -> wrong
    assert got["oracle", 4]["accuracy"] == pytest.approx(1.0)
    assert got["majority", 4]["accuracy"] == pytest.approx(1 / 3)
    for method in ("oracle", "majority"):
        assert got[method, 1]["tokens_generated"] == 1 + 10 + 100
        assert got[method, 2]["tokens_generated"] == 3 + 30 + 300
        assert got[method, 4]["tokens_generated"] == 10 + 100 + 1000
        assert got[method, 4]["flops"] == pytest.approx(555.0)
        assert got[method, 1]["flops"] == pytest.approx(55.5)


def test_selection_table_n_beyond_samples_uses_all():
    rows = selection_table(PROBLEMS[:1], GROUPS[:1], TASK, [8])
    assert [(r["method"], r["accuracy"], r["tokens_generated"]) for r in rows] == [
        ("oracle", 1.0, 10), ("majority", 0.0, 10)]


def test_selection_table_no_problems():
    rows = selection_table([], [], TASK, [1])
    assert [r["accuracy"] for r in rows] == [0.0, 0.0]
    assert all(r["tokens_generated"] == 0 for r in rows)


class RecordingPolicy:
    """Answers each prompt with a fixed text; records the prompts and sampling of every call."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts
        self.calls: list[tuple[list[str], Sampling]] = []

    def generate(self, prompts, sampling):
        self.calls.append((list(prompts), sampling))
        return [[s(self.texts[p], 2 + j) for j in range(sampling.n)] for p in prompts]


def test_generate_in_chunks_seeds_and_order():
    prompts = [f"Q: {i}\n" for i in range(5)]
    policy = RecordingPolicy({p: "A: 1\n" for p in prompts})
    out = generate_in_chunks(policy, prompts, Sampling(n=2, seed=10), chunk=2, progress=False)
    assert len(out) == 5 and all(len(g) == 2 for g in out)
    assert [c[0] for c in policy.calls] == [prompts[0:2], prompts[2:4], prompts[4:5]]
    assert [c[1].seed for c in policy.calls] == [10, 12, 14]
    assert all(c[1].n == 2 for c in policy.calls)
    policy.calls.clear()
    generate_in_chunks(policy, prompts, Sampling(n=1), chunk=4, progress=False)
    assert [c[1].seed for c in policy.calls] == [None, None]


def test_greedy_accuracy_and_evaluate_with_scripted_policy():
    texts = {PROBLEMS[0].prompt: "A: 3\n", PROBLEMS[1].prompt: "A: 11\n", PROBLEMS[2].prompt: "A: 15\n"}
    policy = RecordingPolicy(texts)
    acc, cost, samples = greedy_accuracy(policy, TASK, PROBLEMS, max_new_tokens=17, progress=False)
    assert acc == pytest.approx(2 / 3)
    assert cost.tokens_generated == 6 and [x.text for x in samples] == [texts[p.prompt] for p in PROBLEMS]
    assert policy.calls[0][1] == Sampling(n=1, temperature=0.0, max_new_tokens=17)

    policy.calls.clear()
    res = evaluate(policy, TASK, PROBLEMS, ns=[1, 2], temperature=0.8, top_p=0.9, max_new_tokens=9, seed=3,
                   progress=False)
    assert res["greedy_accuracy"] == pytest.approx(2 / 3) and res["greedy_tokens"] == 6
    assert policy.calls[1][1] == Sampling(n=2, temperature=0.8, top_p=0.9, max_new_tokens=9, seed=3)
    rows = {(r["method"], r["n"]): r for r in res["search"]}
    assert rows["oracle", 2]["accuracy"] == pytest.approx(2 / 3)
    assert rows["oracle", 1]["tokens_generated"] == 3 * 2 and rows["oracle", 2]["tokens_generated"] == 3 * (2 + 3)
    assert len(res["samples"]) == 3 and len(res["greedy_samples"]) == 3
