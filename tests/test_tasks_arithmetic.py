"""The arithmetic task: generation, splits, both reasoning strategies, verification, gold step labels."""

from __future__ import annotations

import pytest

from ponder.tasks import Arithmetic, ArithmeticConfig, TaskError
from ponder.types import Problem


@pytest.mark.parametrize("op", ["+", "-", "*"])
@pytest.mark.parametrize("style", ["column", "place"])
def test_every_demonstration_verifies_and_ends_with_the_answer(op, style):
    task = Arithmetic(ArithmeticConfig(digits=4, op=op, styles=(style,)))
    for p in task.problems("train", 300, seed=3):
        a, b = p.meta["a"], p.meta["b"]
        assert int(p.answer) == (a + b if op == "+" else a - b if op == "-" else a * b)
        demo = task.demonstration(p)
        assert task.verify(p, demo) == 1.0
        assert demo.endswith(f"A: {p.answer}\n")
        assert task.step_labels(p, demo.splitlines()) == [1.0] * len(demo.splitlines())


def test_hand_written_traces():
    task = Arithmetic(ArithmeticConfig(digits=3, styles=("column", "place")))
    p = Problem(id="347+285", prompt="Q: 347+285\n", answer="632", meta={"a": 347, "b": 285, "op": "+"})
    assert task.trace(p, "column") == ["7+5+0=12 c1", "4+8+1=13 c1", "3+2+1=6 c0", "A: 632"]
    assert task.trace(p, "place") == ["300+200=500", "40+80=120", "7+5=12", "500+120+12=632", "A: 632"]
    sub = Problem(id="347-285", prompt="Q: 347-285\n", answer="62", meta={"a": 347, "b": 285, "op": "-"})
    assert task.trace(sub, "column") == ["7-5-0=2 b0", "14-8-0=6 b1", "3-2-1=0 b0", "A: 62"]
    assert task.trace(sub, "place") == ["300-200=100", "40-80=-40", "7-5=2", "100-40+2=62", "A: 62"]


def test_step_labels_find_the_first_wrong_step_in_either_strategy():
    task = Arithmetic(ArithmeticConfig(digits=3))
    p = Problem(id="347+285", prompt="Q: 347+285\n", answer="632", meta={"a": 347, "b": 285, "op": "+"})
    assert task.step_labels(p, ["7+5+0=12 c1", "4+8+1=14 c1", "3+2+1=6 c0", "A: 642"]) == [1, 0, 0, 0]
    assert task.step_labels(p, ["300+200=500", "40+80=120", "7+5=13", "500+120+13=633"]) == [1, 1, 0, 0]
    assert task.step_labels(p, ["garbage"]) == [0]


def test_styles_mix_and_validation():
    task = Arithmetic(ArithmeticConfig(styles=("column", "place")))
    styles = [task.style_of(p) for p in task.problems("train", 400, seed=1)]
    assert 120 < styles.count("place") < 280
    for bad in [(), ("column", "column"), ("columns",)]:
        with pytest.raises(TaskError, match="styles"):
            ArithmeticConfig(styles=bad)
    with pytest.raises(TaskError, match="digits"):
        ArithmeticConfig(digits=0)
    with pytest.raises(TaskError, match="op"):
        ArithmeticConfig(op="/")


def test_splits_are_disjoint_and_seeded():
    task = Arithmetic()
    train = {p.id for p in task.problems("train", 2000, seed=0)}
    test = {p.id for p in task.problems("test", 200, seed=0)}
    assert not train & test
    assert [p.id for p in task.problems("test", 50, seed=7)] == [p.id for p in task.problems("test", 50, seed=7)]
    assert [p.id for p in task.problems("test", 50, seed=7)] != [p.id for p in task.problems("test", 50, seed=8)]


@pytest.mark.parametrize("text", ["A: 632 633", "A: 633\nA: 632", "632", "A: six hundred", "A: 632x", "A:632.5"])
def test_adversarial_answers_are_rejected(text):
    task = Arithmetic()
    p = Problem(id="347+285", prompt="Q: 347+285\n", answer="632", meta={"a": 347, "b": 285, "op": "+"})
    assert task.verify(p, text) == 0.0


@pytest.mark.parametrize("text", ["A: 632", "A: 632.", "A: 632.0", "A:  632 ", "x\nA: 0632"])
def test_equivalent_answers_are_accepted(text):
    task = Arithmetic()
    p = Problem(id="347+285", prompt="Q: 347+285\n", answer="632", meta={"a": 347, "b": 285, "op": "+"})
    assert task.verify(p, text) == 1.0


def test_column_ba_reads_the_second_operand_first():
    task = Arithmetic(ArithmeticConfig(digits=3, styles=("column_ba",)))
    p = Problem(id="347+285", prompt="Q: 347+285\n", answer="632", meta={"a": 347, "b": 285, "op": "+"})
    assert task.trace(p) == ["5+7+0=12 c1", "8+4+1=13 c1", "2+3+1=6 c0", "A: 632"]
    for q in task.problems("train", 200, seed=0):
        demo = task.demonstration(q)
        assert task.verify(q, demo) == 1.0 and all(task.step_labels(q, demo.splitlines()))
    with pytest.raises(TaskError, match="column_ba"):
        ArithmeticConfig(op="-", styles=("column_ba",))


def test_step_labels_accept_either_column_order_per_step():
    from ponder.types import Problem

    task = Arithmetic(digits=3, op="+", styles=["column", "column_ba"])
    p = Problem(id="264+141", prompt="Q: 264+141\n", answer="405", meta={"a": 264, "b": 141, "op": "+"})
    mixed = ["1+4+0=5 c0", "6+4+0=10 c1", "2+1+1=4 c0", "A: 405"]  # b-first, then a-first: still right
    assert task.step_labels(p, mixed) == [1.0, 1.0, 1.0, 1.0]
    wrong_carry = ["1+4+0=5 c0", "4+6+0=10 c0", "2+1+0=3 c0", "A: 305"]
    assert task.step_labels(p, wrong_carry) == [1.0, 0.0, 0.0, 0.0]
    misread = ["4+1+0=5 c0", "6+5+0=11 c1", "2+1+1=4 c0", "A: 415"]
    assert task.step_labels(p, misread) == [1.0, 0.0, 0.0, 0.0]


# -- a teacher with a misconception --------------------------------------------------------------------


def _forgotten(task: Arithmetic, p: Problem) -> tuple[int, int]:
    """(columns where the teacher had the chance to forget a carry, columns where it did), read off its
    demonstration: a column whose two digits sum to 9 or more, after a column that carried."""
    chances = forgot = 0
    carry_in = 0
    for step in task.demonstration(p).splitlines()[:-1]:
        lhs, rhs = step.split("=")
        x, y, c = (int(v) for v in lhs.split("+"))
        if carry_in and x + y >= 9:
            chances += 1
            forgot += c == 0
        else:
            assert c == carry_in  # outside its class of steps the teacher never errs
        assert int(rhs.split(" c")[0]) == x + y + c  # every written step is computed consistently
        carry_in = int(rhs.split(" c")[1])
    return chances, forgot


@pytest.mark.parametrize("rate", [0.3, 0.7])
def test_the_misconception_appears_at_its_rate_on_exactly_its_class_of_steps(rate):
    task = Arithmetic(misconception=rate, styles=("column", "column_ba"))
    chances = forgot = 0
    for p in task.problems("train", 3000, seed=1):
        c, f = _forgotten(task, p)
        chances, forgot = chances + c, forgot + f
        demo = task.demonstration(p)
        assert (task.verify(p, demo) == 1.0) == (f == 0)  # a forgotten carry always makes the answer wrong
        assert demo == task.demonstration(p)  # fixed per problem
    assert chances > 800
    sd = (rate * (1 - rate) / chances) ** 0.5
    assert abs(forgot / chances - rate) < 4 * sd, (forgot, chances)


def test_without_a_misconception_demonstrations_are_the_true_traces():
    for styles in (("column",), ("column", "column_ba")):
        task = Arithmetic(styles=styles)
        for p in task.problems("train", 300, seed=0):
            assert task.demonstration(p) == "\n".join(task.trace(p)) + "\n"


def test_gold_step_labels_still_judge_the_true_steps():
    task = Arithmetic(misconception=1.0)
    p = Problem(id="367+786", prompt="Q: 367+786\n", answer="1153", meta={"a": 367, "b": 786, "op": "+"})
    demo = task.demonstration(p).splitlines()
    assert demo == ["7+6+0=13 c1", "6+8+0=14 c1", "3+7+0=10 c1", "A: 1043"]
    assert task.step_labels(p, demo) == [1.0, 0.0, 0.0, 0.0]  # the first forgotten carry is the first error
    assert task.step_labels(p, task.trace(p)) == [1.0, 1.0, 1.0, 1.0]
    assert task.verify(p, task.demonstration(p)) == 0.0


def test_misconception_settings_are_checked():
    for bad in (-0.1, 1.5, True, "high"):
        with pytest.raises(TaskError, match="misconception must be a probability in"):
            ArithmeticConfig(misconception=bad)
    for kwargs in ({"op": "-"}, {"op": "*"}, {"styles": ("column", "place")}):
        with pytest.raises(TaskError, match="misconception .* needs op '\\+' and column styles only"):
            ArithmeticConfig(misconception=0.5, **kwargs)


def test_a_bad_misconception_in_a_recipe_is_one_line_naming_it():
    from ponder.config import ConfigError, load_recipe

    with pytest.raises(ConfigError) as e:
        load_recipe(None, ["task.misconception=2"])
    assert "\n" not in str(e.value) and "[task]" in str(e.value) and "misconception must be a probability" in str(e.value)
    assert load_recipe(None, ["task.misconception=0.7"]).make_task().config.misconception == 0.7
