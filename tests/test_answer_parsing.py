"""Tests of answer parsing shared by the tasks: `parse_number`, free-form numeric answer extraction, and
property tests that no parser raises on arbitrary text and that wrong numbers never verify."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.tasks.arithmetic import Arithmetic
from ponder.tasks.base import canonical_number, parse_number
from ponder.tasks.countdown import Countdown, parse_expression
from ponder.tasks.jsonl import extract_number_answer, gold_answer
from ponder.types import Problem

FAST = settings(max_examples=150, deadline=None, database=None)
ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.text(
    alphabet="0123456789+-*/()$,.%= A:#\\boxed{}answer is\n", max_size=200)


@pytest.mark.parametrize(("text", "value"), [
    ("42", 42), ("-3", -3), ("+7", 7), ("1,234", 1234), ("$5", 5), ("$5.00", 5), ("3/4", Fraction(3, 4)),
    ("7.", 7), ("3.5", Fraction(7, 2)), ("50%", 50), ("  12  ", 12),
])
def test_parse_number_accepts(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(("text", "value"), [
    # powers of ten, as a careful grader reads them
    ("1e3", 1000), ("1E3", 1000), ("2.5e-2", Fraction(1, 40)), ("-4e+2", -400), ("1.5 x 10^3", 1500),
    ("1.5×10^3", 1500), ("1.5 * 10^3", 1500), ("1.5 · 10^3", 1500), ("3 \\times 10^{-2}", Fraction(3, 100)),
    ("2\\cdot10^{4}", 20000), ("10^6", 10**6), ("10^{-3}", Fraction(1, 1000)), ("-10^2", -100),
    # other signs and separators
    ("\u22127", -7), ("-$5", -5), ("$-5", -5), ("1\u2009234\u2009567", 1234567), ("1\u00a0000", 1000),
    (".5", Fraction(1, 2)), ("0.125", Fraction(1, 8)), ("1,000,000.5", Fraction(2000001, 2)), ("-3/4", Fraction(-3, 4)),
])
def test_parse_number_reads_wider_notations(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", [
    "", "x", "42 or 43", "4x", "1,23", "3/0", "1/2/3", "$", "-", "1" * 100,
    # notations that are not understood give no answer, never another number
    "1e", "e3", "1e3.5", "1e1000", "2^10", "10^", "10^{3", "0x1F", "3,5", "1 000", "1.2.3", "12:30", "1/2e3",
    "1.5 x 10", "1e100", "1e-100", "3 1/2", "V", "∞", "NaN", "inf",
])
def test_parse_number_rejects(text):
    assert parse_number(text) is None


@pytest.mark.parametrize(("text", "answer"), [
    ("so the total is 1,234", "1234"),
    ("It costs $5", "5"),
    ("the fraction is 3/4", "3/4"),
    ("We get \\boxed{42}.", "42"),
    ("We get \\boxed{\\frac{3}{4}}", "3/4"),
    ("\\boxed{1,000} apples", "1000"),
    ("The answer is 7.", "7"),
    ("The answer is: $1,234.50.", "2469/2"),
    ("Final answer: 9", "9"),
    ("She sells 48/2 = 24 in May and 72 in all.\n#### 72", "72"),
    ("#### -5", "-5"),
    ("A: 12", "12"),
    ("A: 72 dollars", "72"),
    ("A: x = 8", "8"),
    ("A: -$5", "-5"),
    ("work 3 and 4\nA: 5\n#### 6", "5"),          # the answer line wins over ####
    ("#### 6\nso \\boxed{7}", "6"),               # #### wins over \boxed
    ("\\boxed{7} and the answer is 8", "7"),      # \boxed wins over "answer is"
    ("the answer is 8 and later 9", "8"),
    ("x = 5 then 7 apples.", "7"),               # no marker: the last number
    ("A: unknown\n42", None),                    # a marked answer without a number is no answer
    ("no numbers at all", None),
    ("", None),
    ("The answer is 1e3.", "1000"),              # scientific notation is read whole, never as its mantissa
    ("A: 2.5e-2", "1/40"),
    ("#### 1.2 x 10^4", "12000"),
    ("so it is about 3 \\times 10^{5}", "300000"),
    ("\\boxed{10^{6}}", "1000000"),
    ("The answer is 1e1000", None),              # too large to be an answer: none, not 1
    ("A: 4x", None),                            # a number glued to a letter is not a number
    ("The answer is 1,23", None),
    ("The answer is 3.5.2", None),
    ("The answer is 2^10", None),
    ("the result was \u22125", "-5"),
    ("x = 5 then 7e2 apples.", "700"),
])
def test_extract_number_answer(text, answer):
    assert extract_number_answer(text) == answer


NUMBERS = st.fractions(max_denominator=1000).filter(lambda v: abs(v) < 10**12) | st.integers(-10**15, 10**15)


def _written(value: Fraction, style: str) -> str | None:
    """`value` written in one notation, or None where that notation cannot write it exactly."""
    value = Fraction(value)
    sign = "-" if value < 0 else ""
    v = abs(value)
    if style == "plain":
        return f"{sign}{v.numerator}" if v.denominator == 1 else f"{sign}{v.numerator}/{v.denominator}"
    if v.denominator != 1:
        return None
    n = v.numerator
    digits = str(n).rstrip("0") or "0"
    exp = len(str(n)) - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return {
        "commas": f"{sign}{n:,}", "dollars": f"{sign}${n:,}", "thin": sign + f"{n:,}".replace(",", "\u2009"),
        "e": f"{sign}{mant}e{exp}", "E+": f"{sign}{mant}E+{exp}", "times": f"{sign}{mant} x 10^{exp}",
        "latex": f"{sign}{mant} \\times 10^{{{exp}}}", "unicode minus": ("\u2212" if sign else "") + str(n),
    }[style]


STYLES = ["plain", "commas", "dollars", "thin", "e", "E+", "times", "latex", "unicode minus"]


@FAST
@given(NUMBERS, st.sampled_from(STYLES))
def test_every_notation_reads_back_as_its_value(value, style):
    text = _written(value, style)
    if text is None:
        return
    assert parse_number(text) == value, text
    assert extract_number_answer(f"So the answer is {text}.") == canonical_number(Fraction(value)), text
    assert extract_number_answer(f"we computed 17 and then\n{text}") == canonical_number(Fraction(value)), text


@FAST
@given(NUMBERS, st.sampled_from(STYLES), st.text(alphabet="abcdefxyz^_0123456789.,", min_size=1, max_size=4))
def test_a_number_glued_to_more_never_reads_as_a_different_number(value, style, tail):
    """Whatever follows a number without a space, the parser reads the whole thing or nothing:
    never the number alone when the tail changes it, never part of it."""
    text = _written(value, style)
    if text is None:
        return
    got = parse_number(text + tail)
    whole = text + tail
    if got is not None:
        # the only tails that can be read are those that continue the number itself (digits, a
        # decimal part, an exponent): then the value is the whole text's, never `value` by accident
        assert any(ch.isdigit() for ch in tail) or tail in (".",), whole
    answer = extract_number_answer(f"The answer is {whole}")
    if answer is not None and tail[0] in "abcdfxyz^_":
        raise AssertionError(f"{whole!r} was read as {answer}")


@FAST
@given(ANY_TEXT)
def test_parse_number_never_raises(text):
    value = parse_number(text)
    assert value is None or isinstance(value, Fraction)


@FAST
@given(ANY_TEXT)
def test_number_extractors_never_raise(text):
    for got in (extract_number_answer(text), Arithmetic().extract_answer(text)):
        assert got is None or parse_number(got) is not None
    assert gold_answer(text) is None or isinstance(gold_answer(text), Fraction)


COUNTDOWN = Countdown()
PUZZLE = Problem(id="p", prompt="Q: 3 7 25 4 -> 79\n", answer="79",
                 meta={"numbers": [3, 7, 25, 4], "target": 79})


@FAST
@given(ANY_TEXT)
def test_countdown_judges_never_raise(text):
    for t in (text, "A: " + text):
        assert COUNTDOWN.verify(PUZZLE, t) in (0.0, 1.0)
        got = COUNTDOWN.extract_answer(t)
        assert got is None or parse_number(got) is not None
        parsed = parse_expression(t)
        assert parsed is None or isinstance(parsed.value, Fraction)
        labels = COUNTDOWN.step_labels(PUZZLE, t.split("\n"))
        assert len(labels) == len(t.split("\n")) and set(labels) <= {0.0, 1.0}


@FAST
@given(st.lists(st.sampled_from(["3", "7", "25", "4", "+", "-", "*", "/", "(", ")", " "]), max_size=30))
def test_countdown_verify_agrees_with_exact_evaluation(tokens):
    expr = "".join(tokens)
    parsed = parse_expression(expr)
    score = COUNTDOWN.verify(PUZZLE, f"A: {expr}")
    if score == 1.0:
        assert parsed.value == 79 and parsed.operators >= 1
        assert all(parsed.literals.count(x) <= [3, 7, 25, 4].count(x) for x in parsed.literals)


ARITH = Arithmetic()
ARITH_PROBLEMS = ARITH.problems("test", 5, seed=0)


@FAST
@given(st.sampled_from(ARITH_PROBLEMS), st.integers(min_value=-10**15, max_value=10**15),
       st.sampled_from(["{}", "{:,}", "${}", "{}.", " {} ", "{}.0"]))
def test_wrong_number_never_verifies_for_arithmetic(problem, number, fmt):
    if str(number) == problem.answer:
        number += 1
    assert ARITH.verify(problem, "A: " + fmt.format(number)) == 0.0
    assert ARITH.verify(problem, f"A: {fmt.format(number)}\nA: {problem.answer}") == 0.0


@FAST
@given(st.sampled_from(ARITH_PROBLEMS), ANY_TEXT)
def test_arithmetic_verify_only_accepts_the_answer(problem, text):
    if ARITH.verify(problem, text) == 1.0:
        assert ARITH.extract_answer(text) == problem.answer
    assert ARITH.verify(problem, text.replace("A", "")) == 0.0
