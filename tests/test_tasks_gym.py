"""Tests of the reasoning-gym adapter on real datasets (chain_sum, rotate_matrix), its settings errors,
and that the module imports without reasoning-gym installed."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.tasks import TASKS, make_task
from ponder.tasks.base import TaskError
from ponder.tasks.gym import INSTALL_HINT, GymConfig, ReasoningGymTask

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def chain() -> ReasoningGymTask:
    return ReasoningGymTask(dataset="chain_sum", size=120)


def test_registered(chain):
    assert TASKS["gym"] is ReasoningGymTask
    assert isinstance(make_task("gym", GymConfig(dataset="chain_sum", size=5)), ReasoningGymTask)


def test_problems(chain):
    test = chain.problems("test", 1000, seed=0)
    train = chain.problems("train", 1000, seed=0)
    assert len(test) <= 120 and len(train) <= 120 and len(test) > 50
    assert {p.meta["question"] for p in train}.isdisjoint({p.meta["question"] for p in test})
    assert len({p.meta["question"] for p in train}) == len(train)
    p = test[0]
    assert p.prompt == f"Q: {p.meta['question']}\n"
    assert p.answer == p.meta["entry"]["answer"]
    assert p.meta["dataset"] == "chain_sum"
    a, b, c = (chain.problems("train", 20, seed=s) for s in (7, 7, 8))
    assert [x.id for x in a] == [x.id for x in b] != [x.id for x in c]
    again = ReasoningGymTask(dataset="chain_sum", size=120).problems("test", 1000, seed=0)
    assert [x.prompt for x in again] == [x.prompt for x in test]
    with pytest.raises(TaskError, match="unknown split"):
        chain.problems("valid", 1, seed=0)


def test_verify_gold_and_wrong(chain):
    for p in chain.problems("test", 30, seed=1):
        gold = p.meta["entry"]["answer"]
        assert chain.verify(p, f"A: {gold}") == 1.0
        assert chain.verify(p, chain.demonstration(p)) == 1.0
        assert chain.demonstration(p) == f"A: {gold}\n"
        assert chain.verify(p, f"thinking...\nA: {int(gold) + 1}\n") == 0.0
        assert chain.verify(p, f"A: {int(gold) + 1}\nA: {gold}") == 0.0  # the first answer line counts
        assert chain.verify(p, f"I worked it out\n{gold}") == 1.0      # fallback: the last line
        assert chain.verify(p, "") == 0.0
        assert chain.verify(p, "A: " + "9" * 100_000) == 0.0
        assert chain.extract_answer(f"x\nA:  {gold} \n") == gold
    assert chain.extract_answer("no answer line") is None


def test_last_number_answers():
    task = ReasoningGymTask(dataset="chain_sum", size=120, answer="last_number")
    line = ReasoningGymTask(dataset="chain_sum", size=120)
    for p in task.problems("test", 30, seed=1):
        gold = int(p.meta["entry"]["answer"])
        said = f"{p.meta['question'].split(':')[-1].strip()} {gold}"  # e.g. "4 - 1 = 3"
        assert task.verify(p, said) == 1.0 and line.verify(p, said) < 1.0  # the line mode reads the whole line
        assert task.verify(p, f"The answer is {gold}.\n") == 1.0
        assert task.verify(p, f"{gold} or maybe {gold + 1}") == 0.0    # the last number counts
        assert task.verify(p, f"A: {gold + 1}") == 0.0
        assert task.verify(p, "no number at all") == 0.0
        assert task.extract_answer(f"so it is {gold}.") == str(gold)
    assert task.extract_answer("1,234.5 and then -12,000") == "-12000"
    assert task.extract_answer("none") is None
    with pytest.raises(TaskError, match="task gym: answer must be one of line, last_number, got 'first'"):
        GymConfig(dataset="chain_sum", answer="first")


def test_multi_line_answers():
    task = ReasoningGymTask(dataset="rotate_matrix", size=5)
    for p in task.problems("test", 5, seed=0):
        gold = p.meta["entry"]["answer"]
        assert "\n" in gold
        assert task.verify(p, task.demonstration(p)) == 1.0
        assert task.verify(p, f"A: {gold}\nand that is all.\n") == 1.0
        assert task.verify(p, f"A: {gold.splitlines()[0]}\n") < 1.0


def test_scorer_failures_never_raise(chain, monkeypatch):
    p = chain.problems("test", 1, seed=0)[0]
    for behaviour, expected in [(lambda **kw: 1 / 0, 0.0), (lambda **kw: math.nan, 0.0),
                                (lambda **kw: 5, 1.0), (lambda **kw: -2, 0.0), (lambda **kw: "0.5", 0.5),
                                (lambda **kw: None, 0.0)]:
        monkeypatch.setattr(chain._scorer, "score_answer", behaviour)
        assert chain.verify(p, "A: 1") == expected


@settings(max_examples=40, deadline=None, database=None)
@given(st.text(max_size=200))
def test_verify_never_raises(chain, text):
    p = chain.problems("test", 1, seed=0)[0]
    assert 0.0 <= chain.verify(p, text) <= 1.0
    assert 0.0 <= chain.verify(p, "A: " + text) <= 1.0


def test_options():
    task = ReasoningGymTask(dataset="chain_sum", size=20, options='{"min_terms": 2, "max_terms": 2}')
    assert all(p.meta["entry"]["metadata"]["num_terms"] == 2 for p in task.problems("train", 20, seed=0))


@pytest.mark.parametrize(("options", "message"), [
    ("{min_terms: 2}", "options must be a JSON object, got invalid JSON"),
    ("[1, 2]", "options must be a JSON object, got list"),
    ('"min_terms"', "options must be a JSON object, got str"),
    ('{"seed": 3}', "options may not set 'seed'"),
    ('{"size": 3}', "options may not set 'size'"),
])
def test_bad_options_json(options, message):
    with pytest.raises(TaskError, match=f"task gym: {message}"):
        GymConfig(dataset="chain_sum", options=options)


def test_options_the_dataset_rejects():
    with pytest.raises(TaskError, match="task gym: dataset 'chain_sum' rejected options .*no_such_option"):
        ReasoningGymTask(dataset="chain_sum", options='{"no_such_option": 1}')
    with pytest.raises(TaskError, match="rejected options"):
        ReasoningGymTask(dataset="chain_sum", options='{"min_terms": 5, "max_terms": 2}')


def test_config_errors():
    with pytest.raises(TaskError, match="task gym: dataset must name"):
        GymConfig()
    with pytest.raises(TaskError, match="task gym: size must be"):
        GymConfig(dataset="chain_sum", size=0)
    with pytest.raises(TaskError, match="unknown reasoning-gym dataset 'chain_sums'; did you mean chain_sum"):
        ReasoningGymTask(dataset="chain_sums")


def test_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # makes `import reasoning_gym` fail
    with pytest.raises(TaskError) as err:
        ReasoningGymTask(dataset="chain_sum")
    assert str(err.value) == INSTALL_HINT


def test_module_imports_without_reasoning_gym():
    code = ("import sys; sys.modules['reasoning_gym'] = None\n"
            "import ponder.tasks, ponder.tasks.gym\n"
            "assert 'gym' in ponder.tasks.TASKS\n"
            "print(ponder.tasks.gym.GymConfig(dataset='chain_sum').size)\n")
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1000"
