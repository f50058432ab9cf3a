"""Property tests of every task's judge (arithmetic, countdown, jsonl), beyond test_answer_parsing.py:

- `extract_answer` and `verify` never raise on arbitrary text, for every arithmetic operation and
  several countdown shapes, and for the JSONL task (whose `verify` is not covered elsewhere);
- a wrong answer never scores 1: text whose first `A: ` line holds a number other than the gold answer
  (arithmetic, jsonl), or an answer expression whose value is not the target (countdown), scores 0,
  whatever text surrounds it, including a right answer on a later line;
- and, as the other half of an exact judge, a right answer in any accepted form scores 1.

The countdown judge is checked against an independent evaluator (Python's own parser on Fractions),
on expressions generated with random shapes and parenthesization.
"""

from __future__ import annotations

import ast
import json
import operator
import re
import string
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ponder.tasks.arithmetic import Arithmetic, ArithmeticConfig
from ponder.tasks.base import final_answer_line, parse_number
from ponder.tasks.countdown import Countdown, CountdownConfig
from ponder.tasks.jsonl import JsonlTask
from ponder.types import Problem

FAST = settings(max_examples=150, deadline=None, database=None)
ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.text(
    alphabet="0123456789+-*/()$,.%= A:#\\boxed{}answer is\n", max_size=200)
# text around an answer: anything, but no line of its own may start with the answer prefix
NOT_AN_ANSWER = ANY_TEXT.filter(lambda t: final_answer_line(t) is None)
WORDS = st.text(alphabet=string.ascii_letters + " ", max_size=20)


def number_forms(value: Fraction) -> list[str]:
    """Ways a number may be written that `parse_number` reads as `value`."""
    if value.denominator != 1:
        forms = [f"{value.numerator}/{value.denominator}"]
        scaled = value * 100
        if scaled.denominator == 1:  # a finite decimal with at most two places
            sign, whole = ("-" if value < 0 else ""), abs(int(scaled))
            forms.append(f"{sign}{whole // 100}.{whole % 100:02d}")
        return forms
    n = int(value)
    return [str(n), f"{n:,}", f"${n}", f"{n}.", f"{n}.0", f" {n} ", f"{n}/1", f"{2 * n}/2"]


NUMBERS = st.integers(-10**9, 10**9).map(Fraction) | st.builds(
    Fraction, st.integers(-10**6, 10**6), st.sampled_from([2, 3, 4, 5, 8, 10, 100]))


# --- arithmetic ---------------------------------------------------------------------------------

ARITH_TASKS = [Arithmetic(ArithmeticConfig(digits=d, op=op)) for op in ("+", "-", "*") for d in (1, 3, 6)]
ARITH_CASES = [(task, p) for task in ARITH_TASKS for p in task.problems("test", 3, seed=1)]


def _assert_judged_sanely(task, problem, texts) -> None:
    """A judge never raises, extracts only numbers, scores 0 or 1, and scores 1 only for the gold answer."""
    for t in texts:
        got = task.extract_answer(t)
        assert got is None or parse_number(got) is not None
        score = task.verify(problem, t)
        assert score in (0.0, 1.0)
        assert score == 0.0 or got == problem.answer


@FAST
@given(st.sampled_from(ARITH_CASES), ANY_TEXT)
def test_arithmetic_judge_never_raises(case, text):
    task, problem = case
    _assert_judged_sanely(task, problem, (text, "A: " + text))


@FAST
@given(st.sampled_from(ARITH_CASES), NOT_AN_ANSWER, NUMBERS, st.data(), ANY_TEXT)
def test_arithmetic_wrong_number_on_the_answer_line_scores_zero(case, before, value, data, after):
    task, problem = case
    assume(value != int(problem.answer))
    form = data.draw(st.sampled_from(number_forms(value)))
    for later in ("", f"A: {problem.answer}\n"):  # a right answer after the first answer line does not count
        text = f"{before}\nA: {form}\n{later}{after}"
        assert task.verify(problem, text) == 0.0, text


@FAST
@given(st.sampled_from(ARITH_CASES), NOT_AN_ANSWER, st.data(), ANY_TEXT)
def test_arithmetic_right_number_in_any_form_scores_one(case, before, data, after):
    task, problem = case
    form = data.draw(st.sampled_from(number_forms(Fraction(int(problem.answer)))))
    assert task.verify(problem, f"{before}\nA: {form}\n{after}") == 1.0


# --- countdown ----------------------------------------------------------------------------------

COUNTDOWN_TASKS = [Countdown(), Countdown(CountdownConfig(numbers=2)),
                   Countdown(CountdownConfig(numbers=6, max_number=50, max_target=500))]
COUNTDOWN_CASES = [(task, p) for task in COUNTDOWN_TASKS for p in task.problems("test", 4, seed=2)]
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def reference_value(expr: str) -> Fraction | None:
    """The exact value of an expression over integer literals with + - * / and parentheses, by
    Python's own parser (independent of the task's); None when it divides by zero."""
    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp):
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        assert isinstance(node, ast.Constant) and isinstance(node.value, int)
        return Fraction(node.value)

    try:
        return walk(ast.parse(expr, mode="eval").body)
    except ZeroDivisionError:
        return None


@st.composite
def expressions(draw, numbers: list[int], max_leaves: int = 6) -> str:
    """A well-formed expression of random shape, spacing and parenthesization over literals mostly
    taken from `numbers` (sometimes more often than listed, sometimes other numbers). Parentheses are
    dropped at random, so the text need not group as it was built: `reference_value` reads the text."""
    leaves = draw(st.lists(st.sampled_from(numbers) | st.integers(0, 120), min_size=1, max_size=max_leaves))
    parts = [str(x) for x in leaves]
    while len(parts) > 1:
        i = draw(st.integers(0, len(parts) - 2))
        op = draw(st.sampled_from("+-*/"))
        joined = f"{parts[i]} {op} {parts[i + 1]}" if draw(st.booleans()) else f"{parts[i]}{op}{parts[i + 1]}"
        parts[i : i + 2] = [f"({joined})" if draw(st.booleans()) else joined]
    return parts[0]


@st.composite
def respelled(draw, expression: str, numbers: list[int]) -> str:
    """A known solution respelled: random spaces between tokens, redundant outer parentheses; and
    sometimes one literal replaced by another number (which usually makes it wrong), or `+x-x` added
    for a source number x (the same value, but x used more often than the puzzle may allow)."""
    tokens = re.findall(r"\d+|[-+*/()]", expression)
    literals = [i for i, t in enumerate(tokens) if t.isdigit()]
    change = draw(st.sampled_from(["none", "literal", "reuse"]))
    if change == "literal":
        tokens[draw(st.sampled_from(literals))] = str(draw(st.integers(0, 120)))
    elif change == "reuse":
        x = str(draw(st.sampled_from(numbers)))
        tokens += ["+", x, "-", x]
    text = "".join(t + draw(st.sampled_from(["", "", " "])) for t in tokens).strip()
    depth = draw(st.integers(0, 2))
    return "(" * depth + text + ")" * depth


def countdown_answers(problem: Problem):
    return expressions(problem.meta["numbers"]) | respelled(problem.meta["expression"], problem.meta["numbers"])


@FAST
@given(st.sampled_from(COUNTDOWN_CASES), ANY_TEXT)
def test_countdown_judge_never_raises(case, text):
    task, problem = case
    for t in (text, "A: " + text, "A: (" + text):
        got = task.extract_answer(t)
        assert got is None or parse_number(got) is not None
        assert task.verify(problem, t) in (0.0, 1.0)


@FAST
@given(st.sampled_from(COUNTDOWN_CASES), st.data(), NOT_AN_ANSWER, ANY_TEXT)
def test_countdown_scores_exactly_the_right_expressions(case, data, before, after):
    task, problem = case
    numbers, target = problem.meta["numbers"], problem.meta["target"]
    expr = data.draw(countdown_answers(problem))
    value = reference_value(expr)
    score = task.verify(problem, f"{before}\nA: {expr}\n{after}")
    if value != target:  # a wrong value (or a division by zero) never scores, even with a right answer later
        assert score == 0.0, expr
        assert task.verify(problem, f"A: {expr}\nA: {problem.meta['expression']}\n") == 0.0, expr
        return
    used = Counter(n.value for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Constant))
    right = any(op in expr for op in "+-*/") and all(Counter(numbers)[x] >= c for x, c in used.items())
    assert score == (1.0 if right else 0.0), expr
    if right:
        assert task.extract_answer(f"A: {expr}") == str(target)


def test_countdown_answer_generator_makes_right_and_wrong_answers():
    """The property above is only as good as its inputs: they must include right answers too."""
    scores = []

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(st.sampled_from(COUNTDOWN_CASES), st.data())
    def collect(case, data):
        task, problem = case
        scores.append(task.verify(problem, "A: " + data.draw(countdown_answers(problem))))

    collect()
    assert 0.1 < sum(scores) / len(scores) < 0.9


# --- jsonl --------------------------------------------------------------------------------------

GOLDS = ["72", "1,234", "18.50", "-5", "3/4", "0", "$1,000,000", "7."]


@pytest.fixture(scope="module")
def jsonl_cases(tmp_path_factory) -> list[tuple[JsonlTask, Problem]]:
    path = tmp_path_factory.mktemp("fuzz") / "gsm.jsonl"
    path.write_text("".join(json.dumps({"question": f"Question number {i}: what is it?",
                                        "answer": f"Some work {i} = x.\n#### {gold}"}) + "\n"
                            for i, gold in enumerate(GOLDS)))
    task = JsonlTask(path=str(path))
    problems = task.problems("train", 100, 0) + task.problems("test", 100, 0)
    assert len(problems) == len(GOLDS)
    return [(task, p) for p in problems]


@FAST
@given(data=st.data(), text=ANY_TEXT)
def test_jsonl_judge_never_raises(jsonl_cases, data, text):
    task, problem = data.draw(st.sampled_from(jsonl_cases))
    _assert_judged_sanely(task, problem, (text, "A: " + text, "#### " + text, "\\boxed{" + text,
                                          "The answer is " + text))


@FAST
@given(data=st.data(), before=NOT_AN_ANSWER, value=NUMBERS, words=WORDS, after=ANY_TEXT)
def test_jsonl_wrong_number_scores_zero(jsonl_cases, data, before, value, words, after):
    task, problem = data.draw(st.sampled_from(jsonl_cases))
    assume(value != parse_number(problem.answer))
    form = data.draw(st.sampled_from(number_forms(value)))
    # the first answer line decides, whatever follows it (a unit, more text, a right answer later)
    assert task.verify(problem, f"{before}\nA: {form} {words}\n{after}") == 0.0
    assert task.verify(problem, f"A: {form}\nA: {problem.answer}\n#### {problem.answer}") == 0.0
    # without an answer line, the other markers decide: the last `####`, else the last \boxed{}
    assert task.verify(problem, f"{before}\n#### {form}") == 0.0
    if "####" not in before:
        assert task.verify(problem, f"{before}\n\\boxed{{{form}}}") == 0.0


@FAST
@given(data=st.data(), before=NOT_AN_ANSWER, words=WORDS, after=ANY_TEXT)
def test_jsonl_right_number_scores_one(jsonl_cases, data, before, words, after):
    task, problem = data.draw(st.sampled_from(jsonl_cases))
    form = data.draw(st.sampled_from(number_forms(parse_number(problem.answer))))
    assert task.verify(problem, f"{before}\nA: {form} {words}\n{after}") == 1.0
