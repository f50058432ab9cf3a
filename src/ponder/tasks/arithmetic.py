"""Multi-digit arithmetic with a column-by-column chain of thought (the default task).

Problems are `Q: 347+285` and the demonstration works right to left, one column per line, carrying
explicitly, then states the answer:

    7+5+0=12 c1
    4+8+1=13 c1
    3+2+1=6 c0
    A: 632

Subtraction borrows (`12-5-0=7 b1`, the larger operand first) and multiplication takes a
multi-digit number times one digit (`7*5+0=35 c3`).

A second reasoning strategy, `place`, splits the operands by place value and adds the parts:

    300+200=500
    40+80=120
    7+5=12
    500+120+12=632
    A: 632

A third, `column_ba`, is `column` with the second operand's digit written first (`5+7+0=12 c1`).
With several `styles`, each problem's demonstration uses one of them (chosen by a stable hash of the
problem). Diverse reasoning paths make a policy's mistakes differ between samples, which is what
majority voting needs: measured here with the default model, `column` alone gives majority-of-16
below greedy (58.5% vs 63.5%), `column`+`column_ba` gives it above (84.0% vs 79.0%), so the default
recipe uses both. A mixture takes longer to learn and learns in a jump (17% greedy after 500 SFT
steps, 79% after 610); `column`+`place` was under 1% after 450 steps.

Each strategy has one canonical trace per problem, so the task knows the gold label of every step:
a step is right while it matches the trace of the strategy the solution follows.

A teacher with a misconception (`misconception`, addition's column styles only). A policy trained on
correct traces is imperfect only where its training stops; a pretrained model's errors are
systematic instead. `misconception = p` makes the demonstrations err that way, on a defined class
of steps: in a column that has a carry coming in and whose two digits sum to 9 or more, the teacher
forgets the carry with probability p (drawn per problem and column by a stable hash, so a problem's
demonstration is fixed), writes `4+5+0=9 c0` for `4+5+1=10 c1`, and continues consistently from the
wrong step, so its answer is wrong. Trained to convergence, greedy decoding inherits the
misconception (with p > 1/2 the wrong step is the likelier one) on exactly the problems that hold
such a column, about 38% of 3-digit ones; sampling still takes the right step some of the time.
`trace` (and so the gold step labels) stays the true computation: the misconception is in the data,
not in the task's judgement. `misconception = [lo, hi]` grades it: the chance rises linearly with the
column's digit sum, from `lo` at 9 to `hi` at 18. A uniform chance leaves every such step equally far
from the policy's tipping point, so learning flips them all at once and greedy accuracy jumps; graded,
they flip one digit sum after another and greedy accuracy rises round by round. A list of ten sets the
chance of each digit sum 9 to 18 itself (for instance two levels: a mild error on some sums, a firm one
on the others).

Behaviours: a teacher that checks and corrects itself (`check`, addition's column styles only). After
a column step with a carry coming in, the teacher checks the step with probability `check` (a stable
draw per problem and column) by re-deriving the carry it used another way, by subtraction, and
comparing it with the carry the previous line wrote: `check 10-4-5=1 ok`. When the step forgot the
carry (the misconception), the check exposes it and the step is redone, so the solution recovers:

    5+7+0=12 c1          (245+157)
    4+5+0=9 c0
    check 9-4-5=0 no
    4+5+1=10 c1
    2+1+1=4 c0
    check 4-2-1=1 ok
    A: 402

Gold step labels judge such traces line by line: a wrong column step is wrong (0), a check is right
when its subtraction is right and its verdict (`ok` when the difference equals the incoming carry,
`no` otherwise) is true, and a step redone right after a `no` is right, so a wrong step that the
solution itself corrects does not doom the steps after it. An uncorrected wrong step, a wrong check,
or a wrong redo does. `behaviours` reads a solution's checks and corrections for the behaviour metrics.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ponder.tasks.base import ANSWER_PREFIX, BaseTask, TaskError, split_steps, stable_seed
from ponder.types import Problem

OPS = ("+", "-", "*")
STYLES = ("column", "column_ba", "place")
STEP = re.compile(r"^(\d+)\+(\d+)\+(\d+)=(\d+) c(\d+)$")
"""An addition column step as the traces write it: first+second+carry=sum cCARRY."""
CHECK = re.compile(r"^check (\d+)-(\d+)-(\d+)=(-?\d+) (ok|no)$")
"""A check line: sum-first-second=difference, then whether the difference is the incoming carry."""


def check_line(v: int, first: int, second: int, carry_in: int) -> str:
    """The check of step `first+second+c=v` when `carry_in` came into its column."""
    d = v - first - second
    return f"check {v}-{first}-{second}={d} {'ok' if d == carry_in else 'no'}"


def _is_probability(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0.0 <= v <= 1.0


def _draw(what: str, problem: Problem, column: int, p: float) -> bool:
    """A stable draw per problem and column, true with probability `p`."""
    return p > 0 and (stable_seed(what, problem.id, column) % 1_000_000) < p * 1_000_000


@dataclass(frozen=True)
class ArithmeticConfig:
    """Settings of the arithmetic task."""

    digits: int = 3
    """Digits per operand (operands are uniform in [0, 10**digits)); the multiplier of `*` has one."""
    op: str = "+"
    """Operation: '+' (carry), '-' (borrow, larger operand first) or '*' (times one digit)."""
    styles: tuple[str, ...] = ("column",)
    """Reasoning strategies the demonstrations use: 'column' (digit by digit with carries) and/or
    'place' (split by place value, then add the parts)."""
    misconception: float | tuple[float, ...] = 0.0
    """Chance that a demonstration forgets the incoming carry in a column whose digits sum to 9 or more
    (addition, column styles): a teacher with a systematic error (see the module docstring). 0: none.
    A pair `[lo, hi]` grades it: the chance rises linearly with the column's digit sum, from `lo` at 9
    to `hi` at 18, so the error is held more firmly on some steps than on others; a list of ten gives
    the chance at each digit sum 9, 10, ..., 18."""
    check: float = 0.0
    """Chance that a demonstration checks a column step that has a carry coming in, and redoes the step
    when the check finds the carry forgotten (addition, column styles; see the module docstring). 0: none."""

    def __post_init__(self) -> None:
        if not self.styles or any(s not in STYLES for s in self.styles) or len(set(self.styles)) != len(self.styles):
            raise TaskError(f"task arithmetic: styles must be distinct values from {', '.join(STYLES)}, "
                            f"got {list(self.styles)}")
        if "column_ba" in self.styles and self.op != "+":
            raise TaskError("task arithmetic: style 'column_ba' (second operand first) needs op '+'")
        if not 1 <= self.digits <= 12:
            raise TaskError(f"task arithmetic: digits must be in 1..12, got {self.digits}")
        if self.op not in OPS:
            raise TaskError(f"task arithmetic: op must be one of {', '.join(OPS)}, got {self.op!r}")
        m = self.misconception
        if isinstance(m, (tuple, list)):
            if len(m) not in (2, 10) or not all(_is_probability(v) for v in m) or (len(m) == 2 and m[0] > m[1]):
                raise TaskError(f"task arithmetic: misconception must be a probability in [0, 1], a pair "
                                f"[lo, hi] of them with lo <= hi, or a list of ten (digit sums 9 to 18), got {list(m)!r}")
            object.__setattr__(self, "misconception", tuple(float(v) for v in m))
        for name, what in (("misconception", "a forgotten carry"), ("check", "a carry check")):
            m = getattr(self, name)
            if not isinstance(m, tuple) and not _is_probability(m):
                raise TaskError(f"task arithmetic: {name} must be a probability in [0, 1]"
                                f"{' or a pair [lo, hi] of them' if name == 'misconception' else ''}, got {m!r}")
            if any(m if isinstance(m, tuple) else (m,)) and (self.op != "+" or "place" in self.styles):
                raise TaskError(f"task arithmetic: {name} ({what}) needs op '+' and column styles only")


class Arithmetic(BaseTask):
    name = "arithmetic"
    Config = ArithmeticConfig

    def __init__(self, config: ArithmeticConfig | None = None, **kwargs) -> None:
        self.config = config or ArithmeticConfig(**kwargs)

    def make_problem(self, rng: random.Random) -> tuple[str, Problem]:
        d, op = self.config.digits, self.config.op
        a = rng.randrange(10**d)
        b = rng.randrange(10) if op == "*" else rng.randrange(10**d)
        if op == "-" and b > a:
            a, b = b, a
        result = a + b if op == "+" else a - b if op == "-" else a * b
        key = f"{a}{op}{b}"
        problem = Problem(id=key, prompt=f"Q: {key}\n", answer=str(result), meta={"a": a, "b": b, "op": op})
        return key, problem

    def style_of(self, problem: Problem) -> str:
        """The strategy this problem's demonstration uses (a stable hash when there are several)."""
        styles = self.config.styles
        return styles[stable_seed("style", problem.id) % len(styles)]

    def misconception_at(self, digit_sum: int) -> float:
        """The chance that the teacher forgets the incoming carry in a column whose digits sum to
        `digit_sum` (9 to 18): `misconception`, its pair graded linearly over the sums, or its list's entry."""
        m = self.config.misconception
        if not isinstance(m, tuple):
            return m
        if len(m) == 10:
            return m[min(max(digit_sum, 9), 18) - 9]
        lo, hi = m
        t = (min(max(digit_sum, 9), 18) - 9) / 9
        return lo * (1 - t) + hi * t

    def forgets(self, problem: Problem, column: int, digit_sum: int = 9) -> bool:
        """Whether the teacher forgets the carry into `column` (0: the ones), whose digits sum to
        `digit_sum`, when it has the chance: a stable draw per problem and column, true with
        probability `misconception_at(digit_sum)`."""
        return _draw("misconception", problem, column, self.misconception_at(digit_sum))

    def checks(self, problem: Problem, column: int) -> bool:
        """Whether the teacher checks its step of `column` when a carry comes into it: a stable draw per
        problem and column, true with probability `check`."""
        return _draw("check", problem, column, self.config.check)

    def trace(self, problem: Problem, style: str | None = None, *, teacher: bool = False) -> list[str]:
        """The canonical chain of thought of a strategy, one string per step (the last is the answer).
        With `teacher`, the demonstration's version: the misconception's forgotten carries included,
        the rest computed consistently from them, the answer the one those steps reach."""
        style = style or self.style_of(problem)
        if style == "place":
            return self._place_trace(problem)
        a, b, op = problem.meta["a"], problem.meta["b"], problem.meta["op"]
        d = self.config.digits
        da = [int(c) for c in str(a).zfill(d)][::-1]
        steps: list[str] = []
        if op == "*":
            carry = 0
            for x in da:
                v = x * b + carry
                carry = v // 10
                steps.append(f"{x}*{b}+{v - x * b}={v} c{carry}")
        else:
            db = [int(c) for c in str(b).zfill(d)][::-1]
            carry, total = 0, 0  # total: the sum the written steps add up to (the teacher's answer)
            for i, (x, y) in enumerate(zip(da, db)):
                if op == "+":
                    first, second = (y, x) if style == "column_ba" else (x, y)
                    used = carry
                    if teacher and carry and x + y >= 9 and self.forgets(problem, i, x + y):
                        used = 0  # the misconception: the incoming carry is forgotten
                    v = x + y + used
                    steps.append(f"{first}+{second}+{used}={v} c{v // 10}")
                    if teacher and carry and self.checks(problem, i):
                        steps.append(check_line(v, first, second, carry))
                        if used != carry:  # the check exposed the forgotten carry: redo the step
                            v = x + y + carry
                            steps.append(f"{first}+{second}+{carry}={v} c{v // 10}")
                    total += (v % 10) * 10**i
                    carry = v // 10
                else:
                    borrow = 1 if x - y - carry < 0 else 0
                    top = x + 10 * borrow
                    steps.append(f"{top}-{y}-{carry}={top - y - carry} b{borrow}")
                    carry = borrow
        answer = total + carry * 10**d if op == "+" and teacher else problem.answer
        steps.append(f"{ANSWER_PREFIX}{answer}")
        return steps

    def _place_trace(self, problem: Problem) -> list[str]:
        a, b, op = problem.meta["a"], problem.meta["b"], problem.meta["op"]
        d = self.config.digits
        steps, parts = [], []
        for i in reversed(range(d)):
            unit = 10**i
            x = (a // unit) % 10 * unit
            if op == "*":
                v = x * b
                steps.append(f"{x}*{b}={v}")
            else:
                y = (b // unit) % 10 * unit
                v = x + y if op == "+" else x - y
                steps.append(f"{x}{op}{y}={v}")
            parts.append(v)
        total = "+".join(str(v) for v in parts).replace("+-", "-")
        steps.append(f"{total}={problem.answer}")
        steps.append(f"{ANSWER_PREFIX}{problem.answer}")
        return steps

    def demonstration(self, problem: Problem) -> str:
        return "\n".join(self.trace(problem, teacher=True)) + "\n"

    def step_labels(self, problem: Problem, steps: Sequence[str]) -> list[float]:
        """Labels against whichever strategy the solution follows (the one its steps match longest).

        The two column orders are one strategy: a column step is right if it matches that column's
        step in either order (the operands read in either order, with the same sum and carry), so a
        solution that switches order between columns is still right step by step. Addition's column
        strategy is judged line by line, checks and corrections included (see the module docstring)."""
        column = [[t.strip() for t in alts] for alts in zip(*(self.trace(problem, s) for s in ("column", "column_ba")))]
        place = [[t.strip()] for t in self.trace(problem, "place")]
        best: list[float] = []
        for reference in (column, place):
            if reference is column and problem.meta["op"] == "+":
                labels = self._column_labels(problem, steps, column)
            else:
                labels, ok = [], True
                for i, step in enumerate(steps):
                    ok = ok and i < len(reference) and step.strip() in reference[i]
                    labels.append(1.0 if ok else 0.0)
            if sum(labels) > sum(best) or not best:
                best = labels
        return best

    def _carries_in(self, problem: Problem) -> list[int]:
        """The true carry into each column of an addition, ones first."""
        d = self.config.digits
        da, db = ([int(c) for c in str(v).zfill(d)][::-1] for v in (problem.meta["a"], problem.meta["b"]))
        carries = [0]
        for x, y in zip(da, db):
            carries.append((x + y + carries[-1]) // 10)
        return carries[:d]

    def _column_labels(self, problem: Problem, steps: Sequence[str], reference: list[list[str]]) -> list[float]:
        """Addition's column strategy judged line by line: a step with its column's operands but a wrong
        carry or sum is wrong (0) yet may be checked and redone; a right check (its subtraction right,
        its verdict true) is right; a redo that matches the true step is right and the solution goes on.
        Anything else (an unchecked wrong step, a wrong check, a wrong redo, a stray line) dooms the
        rest."""
        d, carries = self.config.digits, self._carries_in(problem)
        operands = [sorted(int(v) for v in STEP.match(alts[0]).groups()[:2]) for alts in reference[:d]]
        labels: list[float] = []
        col, ok, redo = 0, True, False
        last: dict | None = None  # the last column step written: its numbers, column, rightness, checked
        for raw in steps:
            line, label = raw.strip(), 0.0
            step, check = STEP.match(line), CHECK.match(line)
            if not ok:
                pass
            elif redo:  # the line after a `no`: the step redone
                redo = False
                if line in reference[last["column"]]:
                    label, col = 1.0, last["column"] + 1
                    last = {**last, "right": True, "checked": False, "numbers": [int(v) for v in step.groups()]}
                else:
                    ok = False
            elif check:
                v, first, second, diff = (int(g) for g in check.groups()[:4])
                if last is None or last["checked"] or [v, first, second] != [last["numbers"][3], *last["numbers"][:2]]:
                    ok = False
                else:
                    truth = "ok" if diff == carries[last["column"]] else "no"
                    if diff == v - first - second and check.group(5) == truth:
                        label, last["checked"], redo = 1.0, True, truth == "no"
                    else:
                        ok = False
            elif last is not None and not last["right"]:  # a wrong step left standing
                ok = False
            elif col < d and step and sorted(int(v) for v in step.groups()[:2]) == operands[col]:
                right = line in reference[col]
                label = 1.0 if right else 0.0
                last = {"numbers": [int(v) for v in step.groups()], "column": col, "right": right, "checked": False}
                col += right
            elif col == d and line in reference[d]:
                label, col, last = 1.0, d + 1, None
            else:
                ok = False
            labels.append(label)
        return labels

    def behaviours(self, problem: Problem, text: str) -> dict[str, int]:
        """What an addition solution did with the column strategy: `checks` (check lines), `corrections`
        (steps redone after a `no` check), of which `fixed` (the step before it was wrong and the redone
        one is right) and `broke` (the step before it was right and the redone one is not); and `errors`,
        the wrong steps taken from a right position: a column step written wrong the first time (a redo
        is not a first attempt) while every step standing before it is right (the steps that follow an
        uncorrected wrong one are wrong by the gold trace but consistent with what the solution wrote, so
        they count once, as that error)."""
        out = {"checks": 0, "corrections": 0, "fixed": 0, "broke": 0, "errors": 0}
        if problem.meta["op"] != "+":
            return out
        reference = [[t.strip() for t in alts]
                     for alts in zip(*(self.trace(problem, s) for s in ("column", "column_ba")))][: self.config.digits]
        lines = [line.strip() for line in split_steps(text)]

        def right(line: str, column: int) -> bool:
            return column < len(reference) and line in reference[column]

        col, previous = 0, None  # previous: (line, column) of the last column step
        on_track, i = True, 0  # on_track: no step before stood wrong
        while i < len(lines):
            line = lines[i]
            check = CHECK.match(line)
            if check:
                out["checks"] += 1
                if check.group(5) == "no" and i + 1 < len(lines) and STEP.match(lines[i + 1]) and previous:
                    before, column = previous
                    after = lines[i + 1]
                    was, now = right(before, column), right(after, column)
                    out["corrections"] += 1
                    out["fixed"] += not was and now
                    out["broke"] += was and not now
                    previous, i = (after, column), i + 1  # the redo stands for its column
            elif STEP.match(line):
                on_track = on_track and (previous is None or right(*previous))
                out["errors"] += on_track and not right(line, col)
                previous, col = (line, col), col + 1
            i += 1
        return out
