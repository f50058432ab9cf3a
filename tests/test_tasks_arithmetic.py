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


def _column_steps(task: Arithmetic, p: Problem):
    """(x, y, carry used, carry that came in) of each column step of the problem's demonstration."""
    carry_in = 0
    for step in task.demonstration(p).splitlines()[:-1]:
        lhs, rhs = step.split("=")
        x, y, c = (int(v) for v in lhs.split("+"))
        yield x, y, c, carry_in
        carry_in = int(rhs.split(" c")[1])


def test_a_graded_misconception_rises_with_the_columns_digit_sum():
    lo, hi = 0.2, 0.9
    task = Arithmetic(misconception=[lo, hi], styles=("column",))
    assert task.config.misconception == (lo, hi)
    chances: dict[int, int] = {}
    forgot: dict[int, int] = {}
    for p in task.problems("train", 20000, seed=3):
        for x, y, c, carry_in in _column_steps(task, p):
            if carry_in and x + y >= 9:
                chances[x + y] = chances.get(x + y, 0) + 1
                forgot[x + y] = forgot.get(x + y, 0) + (c == 0)
            else:
                assert c == carry_in
    assert sorted(chances) == list(range(9, 19))
    for low, high in ((9, 11), (12, 14), (15, 18)):  # sums pooled in bins, so each has enough chances
        n = sum(chances[s] for s in range(low, high + 1))
        expected = sum(chances[s] * (lo + (hi - lo) * (s - 9) / 9) for s in range(low, high + 1)) / n
        rate = sum(forgot[s] for s in range(low, high + 1)) / n
        assert n > 400 and abs(rate - expected) < 4 * (expected * (1 - expected) / n) ** 0.5, (low, rate, expected)
    assert task.misconception_at(9) == lo and task.misconception_at(18) == hi


def test_a_list_of_ten_sets_each_digit_sums_chance():
    levels = [0.0] * 4 + [1.0] * 6  # sums 9 to 12 never forgotten, 13 to 18 always
    task = Arithmetic(misconception=levels, styles=("column",))
    assert [task.misconception_at(s) for s in range(9, 19)] == levels and task.misconception_at(20) == 1.0
    seen = set()
    for p in task.problems("train", 3000, seed=1):
        for x, y, c, carry_in in _column_steps(task, p):
            if carry_in and x + y >= 9:
                assert c == (0 if x + y >= 13 else 1), (x, y)  # forgotten exactly where its sum's chance is 1
                seen.add(x + y)
    assert seen == set(range(9, 19))


def test_a_pair_of_equal_chances_is_the_plain_misconception():
    plain, pair = Arithmetic(misconception=0.6), Arithmetic(misconception=[0.6, 0.6])
    for p in plain.problems("train", 500, seed=0):
        assert plain.demonstration(p) == pair.demonstration(p)


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
    for bad in (-0.1, 1.5, True, "high", (0.9, 0.6), (0.6,), (0.5, 0.7, 0.9), (0.5, 1.2), (True, 0.8), (0.5,) * 9,
                (0.5,) * 9 + (1.5,)):
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
    with pytest.raises(ConfigError) as e:
        load_recipe(None, ["task.misconception=[0.9, 0.6]"])
    assert "\n" not in str(e.value) and "[task]" in str(e.value) and "pair [lo, hi]" in str(e.value)
    assert load_recipe(None, ["task.misconception=[0.6, 0.95]"]).make_task().config.misconception == (0.6, 0.95)
    ten = load_recipe(None, ["task.misconception=[0.6,0.6,0.6,0.6,0.9,0.9,0.9,0.9,0.9,0.9]"]).make_task()
    assert ten.misconception_at(12) == 0.6 and ten.misconception_at(13) == 0.9


# -- a teacher that checks and corrects itself -----------------------------------------------------------


def _walk(task: Arithmetic, p: Problem) -> dict:
    """Read a demonstration with checks: columns with a carry coming in, checks, forgotten carries,
    corrections; asserts every check and redo is where and what the format says."""
    out = {"carry_in": 0, "checks": 0, "forgot": 0, "corrected": 0}
    lines, carry_in, i = task.demonstration(p).splitlines()[:-1], 0, 0
    while i < len(lines):
        x, y, c = (int(v) for v in lines[i].split("=")[0].split("+"))
        v = x + y + c
        out["carry_in"] += carry_in
        out["forgot"] += carry_in and c == 0
        if i + 1 < len(lines) and lines[i + 1].startswith("check "):
            assert carry_in == 1  # only a step with a carry coming in is checked
            out["checks"] += 1
            assert lines[i + 1] == f"check {v}-{x}-{y}={c} {'ok' if c == carry_in else 'no'}"
            i += 1
            if c != carry_in:  # exposed: the next line redoes the step with the carry
                out["corrected"] += 1
                i += 1
                assert lines[i] == f"{x}+{y}+1={x + y + 1} c{(x + y + 1) // 10}"
                v = x + y + 1
        carry_in = v // 10
        i += 1
    return out


def test_checks_appear_at_their_rate_and_without_a_misconception_all_say_ok():
    task = Arithmetic(check=0.4, styles=("column", "column_ba"))
    totals = {"carry_in": 0, "checks": 0}
    for p in task.problems("train", 2000, seed=2):
        w = _walk(task, p)
        totals = {k: totals[k] + w[k] for k in totals}
        assert w["forgot"] == w["corrected"] == 0
        demo = task.demonstration(p)
        assert task.verify(p, demo) == 1.0 and "no" not in demo
        assert task.step_labels(p, demo.splitlines()) == [1.0] * len(demo.splitlines())
    sd = (0.4 * 0.6 / totals["carry_in"]) ** 0.5
    assert totals["carry_in"] > 1500 and abs(totals["checks"] / totals["carry_in"] - 0.4) < 4 * sd


def test_a_checked_forgotten_carry_is_corrected_and_only_an_unchecked_one_makes_the_answer_wrong():
    task = Arithmetic(misconception=0.7, check=0.5)
    forgot = corrected = 0
    for p in task.problems("train", 3000, seed=4):
        w = _walk(task, p)
        forgot, corrected = forgot + w["forgot"], corrected + w["corrected"]
        demo = task.demonstration(p)
        assert (task.verify(p, demo) == 1.0) == (w["forgot"] == w["corrected"])
        labels = task.step_labels(p, demo.splitlines())
        if w["forgot"] == w["corrected"]:  # every wrong step corrected: only the wrong steps themselves are 0
            assert labels.count(0.0) == w["forgot"] and labels[-1] == 1.0
        else:
            assert labels[-1] == 0.0
        b = task.behaviours(p, demo)
        assert (b["checks"], b["corrections"], b["fixed"], b["broke"]) == (w["checks"], w["corrected"],
                                                                           w["corrected"], 0)
    sd = (0.25 / forgot) ** 0.5
    assert forgot > 800 and abs(corrected / forgot - 0.5) < 4 * sd


P245 = Problem(id="245+157", prompt="Q: 245+157\n", answer="402", meta={"a": 245, "b": 157, "op": "+"})


@pytest.mark.parametrize(("lines", "labels"), [
    # the teacher's own corrected trace: only the forgotten carry is wrong
    (["5+7+0=12 c1", "4+5+0=9 c0", "check 9-4-5=0 no", "4+5+1=10 c1", "2+1+1=4 c0", "check 4-2-1=1 ok", "A: 402"],
     [1, 0, 1, 1, 1, 1, 1]),
    # the same wrong step left standing dooms the rest
    (["5+7+0=12 c1", "4+5+0=9 c0", "2+1+0=3 c0", "A: 392"], [1, 0, 0, 0]),
    # a check that passes a wrong step is a wrong check
    (["5+7+0=12 c1", "4+5+0=9 c0", "check 9-4-5=0 ok", "2+1+0=3 c0", "A: 392"], [1, 0, 0, 0, 0]),
    # a right step "corrected" into a wrong one: the check is wrong, so is all that follows
    (["5+7+0=12 c1", "4+5+1=10 c1", "check 10-4-5=1 no", "4+5+0=9 c0", "2+1+0=3 c0", "A: 392"],
     [1, 1, 0, 0, 0, 0]),
    # a check with a wrong subtraction, a check of nothing, a redo that is still wrong
    (["5+7+0=12 c1", "4+5+0=9 c0", "check 9-4-5=1 no", "4+5+1=10 c1"], [1, 0, 0, 0]),
    (["check 12-5-7=0 ok", "5+7+0=12 c1"], [0, 0]),
    (["5+7+0=12 c1", "5+4+0=9 c0", "check 9-5-4=0 no", "5+4+0=9 c0", "2+1+0=3 c0"], [1, 0, 1, 0, 0]),
    # the second operand first, checked in the order it was written
    (["7+5+0=12 c1", "5+4+1=10 c1", "check 10-5-4=1 ok", "1+2+1=4 c0", "A: 402"], [1, 1, 1, 1, 1]),
])
def test_gold_labels_of_checked_and_corrected_traces(lines, labels):
    assert Arithmetic(check=1.0).step_labels(P245, lines) == [float(x) for x in labels]


def test_behaviours_count_checks_and_corrections_that_fixed_or_broke_a_step():
    task = Arithmetic(check=1.0)
    broke = "5+7+0=12 c1\n4+5+1=10 c1\ncheck 10-4-5=1 no\n4+5+0=9 c0\n2+1+0=3 c0\nA: 392\n"
    assert task.behaviours(P245, broke) == {"checks": 1, "corrections": 1, "fixed": 0, "broke": 1, "errors": 0}
    plain = "\n".join(task.trace(P245)) + "\n"
    assert task.behaviours(P245, plain) == {"checks": 0, "corrections": 0, "fixed": 0, "broke": 0, "errors": 0}
    useless = "5+7+0=12 c1\n4+5+0=9 c0\ncheck 9-4-5=0 no\n4+5+0=9 c0\nA: 392\n"  # redone, still wrong
    assert task.behaviours(P245, useless) == {"checks": 1, "corrections": 1, "fixed": 0, "broke": 0, "errors": 1}
    fixed = "5+7+0=12 c1\n4+5+0=9 c0\ncheck 9-4-5=0 no\n4+5+1=10 c1\n2+1+1=4 c0\nA: 402\n"
    assert task.behaviours(P245, fixed) == {"checks": 1, "corrections": 1, "fixed": 1, "broke": 0, "errors": 1}
    # an uncorrected wrong step: the consistent steps after it are wrong by the gold trace, but one error
    derailed = "5+7+0=12 c1\n4+5+0=9 c0\n2+1+0=3 c0\nA: 392\n"
    assert task.behaviours(P245, derailed) == {"checks": 0, "corrections": 0, "fixed": 0, "broke": 0, "errors": 1}
    first = "5+7+0=11 c1\n4+5+1=10 c1\n2+1+1=4 c0\nA: 401\n"  # the first column wrong, the rest unjudged
    assert task.behaviours(P245, first)["errors"] == 1


def test_check_settings_are_checked():
    for bad in (-0.1, 1.5, True):
        with pytest.raises(TaskError, match="check must be a probability in"):
            ArithmeticConfig(check=bad)
    with pytest.raises(TaskError, match="check .* needs op '\\+' and column styles only"):
        ArithmeticConfig(check=0.5, op="-")
