"""Tests of the Countdown task: generation, splits, demonstrations, the answer judge and step labels."""

from __future__ import annotations

import re
import string
import time

import pytest

from ponder.tasks import TASKS, make_task
from ponder.tasks.base import TaskError, split_of, split_steps
from ponder.tasks.countdown import Countdown, CountdownConfig, parse_expression, reachable, solve
from ponder.types import Problem


def puzzle(numbers: list[int], target: int) -> Problem:
    """A hand-made puzzle (no stored solution, so demonstrations come from the solver)."""
    shown = " ".join(map(str, numbers)) + f" -> {target}"
    return Problem(id=shown, prompt=f"Q: {shown}\n", answer=str(target),
                   meta={"numbers": numbers, "target": target})


def key(p: Problem) -> str:
    return " ".join(map(str, sorted(p.meta["numbers"]))) + f" -> {p.meta['target']}"


TASK = Countdown()
P = puzzle([3, 7, 25, 4], 79)


def test_registered():
    assert TASKS["countdown"] is Countdown
    assert isinstance(make_task("countdown"), Countdown)
    assert make_task("countdown", CountdownConfig(numbers=3)).config.numbers == 3


def test_generation_is_deterministic_by_seed():
    a = TASK.problems("train", 50, seed=3)
    b = Countdown().problems("train", 50, seed=3)
    c = TASK.problems("train", 50, seed=4)
    assert [p.prompt for p in a] == [p.prompt for p in b]
    assert [p.meta for p in a] == [p.meta for p in b]
    assert [p.prompt for p in a] != [p.prompt for p in c]


def test_splits_are_disjoint_by_canonical_key():
    train = TASK.problems("train", 600, seed=0) + TASK.problems("train", 600, seed=1)
    test = TASK.problems("test", 150, seed=0) + TASK.problems("test", 150, seed=1)
    assert {key(p) for p in train}.isdisjoint({key(p) for p in test})
    assert all(split_of(key(p)) == "train" for p in train)
    assert all(split_of(key(p)) == "test" for p in test)
    one_call = TASK.problems("test", 150, seed=0)
    assert len({key(p) for p in one_call}) == len(one_call)


def test_problem_format():
    for p in TASK.problems("train", 200, seed=5):
        assert re.fullmatch(r"Q: (\d+ ){4}-> \d+\n", p.prompt), p.prompt
        assert set(p.prompt) <= set(string.printable)
        numbers, target = p.meta["numbers"], p.meta["target"]
        assert len(numbers) == 4 and all(1 <= x <= 20 for x in numbers)
        assert 10 <= target <= 100 and target not in numbers
        assert p.answer == str(target)
        assert p.prompt == f"Q: {' '.join(map(str, numbers))} -> {target}\n"


@pytest.mark.parametrize("settings", [{}, {"numbers": 2}, {"numbers": 6, "max_number": 50, "max_target": 500},
                                      {"numbers": 3, "max_number": 9, "min_target": 1, "max_target": 30}])
def test_every_demonstration_verifies_and_is_labelled_right(settings):
    task = Countdown(**settings)
    problems = task.problems("train", 150, seed=11) + task.problems("test", 30, seed=11)
    for p in problems:
        demo = task.demonstration(p)
        assert demo.endswith("\n")
        assert set(demo) <= set(string.printable)
        steps = split_steps(demo)
        assert steps[-1].startswith("A: ")
        assert all(re.fullmatch(r"\d+[-+*/]\d+=\d+", s) for s in steps[:-1]), steps
        assert task.verify(p, demo) == 1.0, (p.prompt, demo)
        assert task.extract_answer(demo) == p.answer
        assert task.step_labels(p, steps) == [1.0] * len(steps), (p.prompt, demo)


def test_solver_demonstration_for_hand_made_puzzle():
    demo = TASK.demonstration(P)
    assert TASK.verify(P, demo) == 1.0
    assert TASK.step_labels(P, split_steps(demo)) == [1.0] * len(split_steps(demo))
    assert TASK.demonstration(puzzle([1, 1], 50)) is None
    assert solve([1, 1], 50) is None
    # The target is one of the numbers: a solution still needs an operation.
    steps, expression = solve([79, 75, 4], 79)
    assert steps == ["75+4=79"] and expression == "75+4"


def test_generation_is_fast():
    start = time.perf_counter()
    Countdown().problems("train", 1000, seed=123)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("answer", ["25*3+4", "(25*3)+4", "4 + 3 * 25", "((25)*(3))+(4)", "25*4-7*3",
                                    "4*25-(7*3)"])
def test_right_answers(answer):
    assert TASK.verify(P, f"some work\nA: {answer}\n") == 1.0
    assert TASK.extract_answer(f"A: {answer}") == "79"


@pytest.mark.parametrize("text", [
    "A: 25+25+25+4",                # reuses 25
    "A: 25*3+4+3-3",                # reuses 3
    "A: 75+4",                      # 75 is not a source number
    "A: 79",                        # the target itself, no expression
    "A: 79/(4-4)",                  # division by zero
    "A: 25*3+7/(3-3)",              # division by zero inside
    "A: 25*3+7/4",                  # inexact division, misses the target
    "A: 25*3+7",                    # wrong value
    "A: 25*x+4",                    # a letter
    "A: twenty-five*3+4",           # words
    "A: 025*3+4",                   # leading zero
    "A: -3+25*3+7",                 # unary minus is not an operation of the puzzle
    "A: 25*3+4)",                   # unbalanced
    "A: (25*3+4",                   # unbalanced
    "A: 25**3",                     # power-ish
    "A: 25*3+4=79",                 # an equation, not an expression
    "A: 25×3+4",                    # non-ASCII operator
    "A: 25*3+7\nA: 25*3+4",         # first answer line wrong
    "25*3+4",                       # no answer line
    "A:25*3+4",                     # malformed answer prefix
    "",
    "A: ",
    "A: " + "1+" * 5000 + "1",      # too long
    "A: " + "9" * 5000,             # huge number
    "A: " + "(" * 100 + "25*3+4" + ")" * 100,
    "A: " + "(" * 40 + "25*3+4" + ")" * 40,  # over the nesting cap
    "A: \x00\x01\x02 25*3+4",
    "A: __import__('os').system('echo hi')",
])
def test_wrong_answers_are_rejected(text):
    assert TASK.verify(P, text) == 0.0


def test_duplicate_source_numbers_may_each_be_used():
    p = puzzle([5, 5, 2], 27)
    assert TASK.verify(p, "A: 5*5+2") == 1.0
    assert TASK.verify(p, "A: 5*5+5-5+2") == 0.0
    assert TASK.step_labels(p, ["5*5=25", "25+2=27", "A: 5*5+2"]) == [1.0, 1.0, 1.0]


def test_extract_answer_votes_by_value():
    assert TASK.extract_answer("A: 25*3+4") == TASK.extract_answer("A: 4+3*25") == "79"
    assert TASK.extract_answer("A: 7/2") == "7/2"
    assert TASK.extract_answer("A: 3-7") == "-4"
    assert TASK.extract_answer("A: 79") is None
    assert TASK.extract_answer("A: 1/(2-2)") is None
    assert TASK.extract_answer("no answer") is None


def test_parse_expression():
    assert parse_expression("25*3+7/4").value == pytest.approx(76.75)
    assert parse_expression("25*3+7/4").literals == (25, 3, 7, 4)
    assert parse_expression("8-2-1").value == 5  # left-associative
    assert parse_expression("16/4/2").value == 2
    assert parse_expression("2*(3+4)").operators == 2
    assert parse_expression("((1))").operators == 0
    for bad in ["", "1/(3-3)", "-3+4", "3+", "()", "3 3", "1.5*2", "3+4a", "x"]:
        assert parse_expression(bad) is None, bad


def test_config_validation():
    for settings, field in [({"numbers": 1}, "numbers"), ({"numbers": 7}, "numbers"),
                            ({"max_number": 1}, "max_number"), ({"max_target": 0}, "max_target"),
                            ({"min_target": 200}, "min_target"), ({"min_target": 0}, "min_target")]:
        with pytest.raises(TaskError, match=f"task countdown: {field} must be"):
            CountdownConfig(**settings)


def test_impossible_target_range_is_a_task_error():
    with pytest.raises(TaskError, match="widen the target range"):
        Countdown(numbers=2, max_number=2, min_target=50, max_target=60).problems("train", 1, seed=0)


def test_step_labels_hand_written_traces():
    label = TASK.step_labels
    assert label(P, ["25*3=75", "75+4=79", "A: 25*3+4"]) == [1.0, 1.0, 1.0]
    assert label(P, ["25 * 3 = 75", "75 + 4 = 79", "A: 25*3+4"]) == [1.0, 1.0, 1.0]
    assert label(P, ["7*3=21", "25*4=100", "100-21=79", "A: 25*4-7*3"]) == [1.0] * 4
    # Wrong arithmetic, and everything after it.
    assert label(P, ["25*3=76", "76+3=79", "A: 25*3+4"]) == [0.0, 0.0, 0.0]
    # Right steps, wrong final expression.
    assert label(P, ["25*3=75", "75+4=79", "A: 25*3+7"]) == [1.0, 1.0, 0.0]
    # Operand not available (75 does not exist yet), or already consumed (3).
    assert label(P, ["75+4=79", "A: 75+4"]) == [0.0, 0.0]
    assert label(P, ["25*3=75", "75+3=78"]) == [1.0, 0.0]
    assert label(P, ["25*25=625"]) == [0.0]
    # Correct arithmetic into a dead end: 79 cannot be made from {3, 4, 18}.
    assert not reachable((3, 4, 18), 79)
    assert label(P, ["25-7=18", "18*4=72", "72+3=75"]) == [0.0, 0.0, 0.0]
    # Negative results and inexact division break the rules.
    assert label(P, ["3-25=-22"]) == [0.0]
    assert label(P, ["4-25=21"]) == [0.0]
    assert label(P, ["25/4=6"]) == [0.0]
    # Garbage lines, and anything after the answer line.
    assert label(P, ["let me think", "25*3=75"]) == [0.0, 0.0]
    assert label(P, ["25*3=75", "75+4=79", "A: 25*3+4", "25*3=75"]) == [1.0, 1.0, 1.0, 0.0]
    assert label(P, ["A: 25*3+4"]) == [1.0]
    assert label(P, []) == []
