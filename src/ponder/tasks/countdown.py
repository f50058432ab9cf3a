"""Countdown: reach a target number from a few source numbers with + - * /.

A puzzle lists the source numbers and the target:

    Q: 3 7 25 4 -> 79

The rules: each source number may be used at most once (a number listed twice may be used twice),
the operations are + - * /, division must be exact, and no intermediate result may be negative. The
demonstration makes one operation per line, `a op b = c` written without spaces, and ends with the
whole solution as one expression over the source numbers on the answer line:

    25*3=75
    75+4=79
    A: 25*3+4

Judging. `verify` reads the first `A: ` line and parses it with a small hand-written parser (integers,
+ - * /, parentheses; no unary minus, no eval). The answer is right iff it has at least one operator,
evaluates exactly (rational arithmetic) to the target, and uses no source number more often than the
puzzle lists it. The final expression is judged by its value only, so an expression whose
intermediate values are fractions or negative still counts; the steps are where the puzzle rules are
enforced (see `step_labels`).

`extract_answer` has no puzzle to check number usage against, so it returns the value of the answer
expression as a canonical number (equivalent expressions such as `25*3+4` and `4+3*25` vote
together in majority voting), or None when the line is missing, unparsable, or a bare number
without an operator (never a solution, since a target is never one of its source numbers). A
majority vote may therefore pick a value produced by an expression that breaks the usage rule;
`verify` on that text then says 0.

Gold step labels: a step line is right iff it is a well-formed `a op b = c` with correct arithmetic
under the rules, a and b are still available (the sources plus earlier results, each consumed when
used), and the target can still be reached from what is left afterwards (a memoised exhaustive
search). The answer line is labelled by `verify`. After the first wrong step, and after the answer
line, every later step is labelled 0.

Splits use the canonical key (sorted numbers and target), so a puzzle never lands in two splits
whatever order its numbers are shown in.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from ponder.tasks.base import ANSWER_PREFIX, BaseTask, TaskError, canonical_number, final_answer_line
from ponder.types import Problem

MAX_EXPRESSION_CHARS = 200
"""Answer expressions longer than this are rejected unread."""
MAX_PAREN_DEPTH = 32
"""Deeper nesting of parentheses than this is rejected (keeps the recursive parser shallow)."""
MAX_TRIES = 10_000
"""Random expressions drawn per puzzle before giving up on the configured target range."""

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_LEAF = 3


@dataclass(frozen=True)
class CountdownConfig:
    """Settings of the Countdown task."""

    numbers: int = 4
    """How many source numbers a puzzle shows (2..6); a solution may use only some of them."""
    max_number: int = 20
    """Source numbers are drawn uniformly from 1..max_number (repeats allowed)."""
    min_target: int = 10
    """Smallest target; small targets make trivial puzzles."""
    max_target: int = 100
    """Largest target."""

    def __post_init__(self) -> None:
        if not 2 <= self.numbers <= 6:
            raise TaskError(f"task countdown: numbers must be in 2..6, got {self.numbers}")
        if not 2 <= self.max_number <= 1000:
            raise TaskError(f"task countdown: max_number must be in 2..1000, got {self.max_number}")
        if not 1 <= self.max_target <= 1_000_000:
            raise TaskError(f"task countdown: max_target must be in 1..1000000, got {self.max_target}")
        if not 1 <= self.min_target <= self.max_target:
            raise TaskError(f"task countdown: min_target must be in 1..max_target ({self.max_target}), "
                            f"got {self.min_target}")


# ---------------------------------------------------------------------------------------------
# The answer-expression parser.


class Parsed(NamedTuple):
    """A parsed answer expression: its exact value, the integer literals it uses (in order), and how
    many binary operators it has."""

    value: Fraction
    literals: tuple[int, ...]
    operators: int


class _ParseFailure(Exception):
    pass


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t":
            i += 1
        elif ch in "+-*/()":
            tokens.append(ch)
            i += 1
        elif "0" <= ch <= "9":
            j = i
            while j < n and "0" <= text[j] <= "9":
                j += 1
            literal = text[i:j]
            if len(literal) > 1 and literal[0] == "0":
                raise _ParseFailure("leading zero")
            tokens.append(literal)
            i = j
        else:
            raise _ParseFailure(f"unexpected character {ch!r}")
    return tokens


class _Parser:
    """Recursive descent over tokens: expr := term (('+'|'-') term)*, term := factor (('*'|'/')
    factor)*, factor := INT | '(' expr ')'."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.literals: list[int] = []
        self.operators = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise _ParseFailure("unexpected end")
        self.pos += 1
        return tok

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term(depth)
            self.operators += 1
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self, depth: int) -> Fraction:
        value = self.factor(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.factor(depth)
            self.operators += 1
            if op == "*":
                value = value * rhs
            else:
                if rhs == 0:
                    raise _ParseFailure("division by zero")
                value = value / rhs
        return value

    def factor(self, depth: int) -> Fraction:
        tok = self.take()
        if tok == "(":
            if depth >= MAX_PAREN_DEPTH:
                raise _ParseFailure("too deeply nested")
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise _ParseFailure("expected )")
            return value
        if tok.isdigit():
            self.literals.append(int(tok))
            return Fraction(int(tok))
        raise _ParseFailure(f"unexpected {tok!r}")


def parse_expression(text: str) -> Parsed | None:
    """Parse an arithmetic expression over non-negative integer literals with + - * / and
    parentheses, evaluated exactly; None if it is malformed, too long, or divides by zero."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text or len(text) > MAX_EXPRESSION_CHARS:
        return None
    try:
        parser = _Parser(_tokenize(text))
        value = parser.expr(0)
        if parser.peek() is not None:
            return None
    except (_ParseFailure, RecursionError):
        return None
    return Parsed(value, tuple(parser.literals), parser.operators)


def _answer_expression(text: str) -> Parsed | None:
    """The parsed expression on the first answer line, if it has at least one operator."""
    if not isinstance(text, str):
        return None
    line = final_answer_line(text)
    if line is None:
        return None
    parsed = parse_expression(line)
    if parsed is None or parsed.operators == 0:
        return None
    return parsed


# ---------------------------------------------------------------------------------------------
# Puzzle rules and the exhaustive solver.


def apply_op(a: int, op: str, b: int) -> int | None:
    """`a op b` under the puzzle rules (no negative results, exact division), or None."""
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "-":
        return a - b if a >= b else None
    if op == "/":
        return a // b if b != 0 and a % b == 0 else None
    return None


def _moves(nums: tuple[int, ...]):
    """Every (i, j, a, op, b, result) combining two of `nums` (sorted) under the rules."""
    seen: set[tuple[int, int]] = set()
    n = len(nums)
    for i in range(n):
        for j in range(i + 1, n):
            small, big = nums[i], nums[j]
            if (small, big) in seen:
                continue
            seen.add((small, big))
            yield i, j, big, "+", small, big + small
            yield i, j, big, "*", small, big * small
            yield i, j, big, "-", small, big - small
            if small != 0 and big % small == 0:
                yield i, j, big, "/", small, big // small


def _after(nums: tuple[int, ...], i: int, j: int, result: int) -> tuple[int, ...]:
    return tuple(sorted(nums[:i] + nums[i + 1 : j] + nums[j + 1 :] + (result,)))


@lru_cache(maxsize=1 << 17)
def makeable(nums: tuple[int, ...], target: int) -> bool:
    """Whether some operation on `nums` (a sorted tuple), possibly after others, yields `target`."""
    return any(r == target or makeable(_after(nums, i, j, r), target) for i, j, _, _, _, r in _moves(nums))


def reachable(nums: tuple[int, ...], target: int) -> bool:
    """Whether `target` is among `nums` (a sorted tuple) or can be made from some of them."""
    return target in nums or makeable(nums, target)


def solve(numbers: Sequence[int], target: int) -> tuple[list[str], str] | None:
    """A solution with at least one operation: (step lines, answer expression), or None."""
    items: list[tuple[int, str, int]] = [(x, str(x), _LEAF) for x in numbers]  # value, text, precedence
    steps: list[str] = []
    while True:
        nums = tuple(sorted(v for v, _, _ in items))
        good = (m for m in _moves(nums) if m[5] == target or makeable(_after(nums, m[0], m[1], m[5]), target))
        move = next(good, None)
        if move is None:
            return None
        _, _, a, op, b, r = move
        left = items.pop(next(k for k, it in enumerate(items) if it[0] == a))
        right = items.pop(next(k for k, it in enumerate(items) if it[0] == b))
        items.append(_combine(left, op, right))
        steps.append(f"{a}{op}{b}={r}")
        if r == target:
            return steps, items[-1][1]


def _combine(left: tuple[int, str, int], op: str, right: tuple[int, str, int]) -> tuple[int, str, int]:
    """Join two expression items with minimal parentheses (same value in exact arithmetic)."""
    prec = _PRECEDENCE[op]
    lt = left[1] if left[2] >= prec else f"({left[1]})"
    needs = right[2] < prec or (right[2] == prec and op in "-/")
    rt = f"({right[1]})" if needs else right[1]
    value = apply_op(left[0], op, right[0])
    assert value is not None
    return value, f"{lt}{op}{rt}", prec


# ---------------------------------------------------------------------------------------------
# The task.


class Countdown(BaseTask):
    name = "countdown"
    Config = CountdownConfig

    def __init__(self, config: CountdownConfig | None = None, **kwargs) -> None:
        self.config = config or CountdownConfig(**kwargs)

    def make_problem(self, rng: random.Random) -> tuple[str, Problem]:
        cfg = self.config
        for _ in range(MAX_TRIES):
            numbers = [rng.randint(1, cfg.max_number) for _ in range(cfg.numbers)]
            k = rng.randint(2, cfg.numbers)
            items = [(numbers[i], str(numbers[i]), _LEAF) for i in rng.sample(range(cfg.numbers), k)]
            steps: list[str] = []
            while len(items) > 1:
                i, j = rng.sample(range(len(items)), 2)
                a, b = items[i], items[j]
                ops = ["+"]
                if a[0] > 1 and b[0] > 1:
                    ops.append("*")
                if a[0] != b[0]:
                    ops.append("-")
                big, small = (a, b) if a[0] >= b[0] else (b, a)
                if small[0] > 1 and big[0] % small[0] == 0:
                    ops.append("/")
                op = rng.choice(ops)
                left, right = (big, small) if op in "-/" else (a, b)
                joined = _combine(left, op, right)
                steps.append(f"{left[0]}{op}{right[0]}={joined[0]}")
                items = [it for n, it in enumerate(items) if n not in (i, j)] + [joined]
            target, expression, _ = items[0]
            if cfg.min_target <= target <= cfg.max_target and target not in numbers:
                return self._problem(numbers, target, steps, expression)
        raise TaskError(
            f"task countdown: no puzzle with a target in {cfg.min_target}..{cfg.max_target} found from "
            f"{cfg.numbers} numbers up to {cfg.max_number}; widen the target range"
        )

    def _problem(self, numbers: list[int], target: int, steps: list[str], expression: str):
        key = " ".join(map(str, sorted(numbers))) + f" -> {target}"
        shown = " ".join(map(str, numbers)) + f" -> {target}"
        meta = {"numbers": list(numbers), "target": target, "steps": steps, "expression": expression}
        return key, Problem(id=shown, prompt=f"Q: {shown}\n", answer=str(target), meta=meta)

    def extract_answer(self, text: str) -> str | None:
        """The value of the answer-line expression as a canonical number (see the module doc)."""
        parsed = _answer_expression(text)
        if parsed is None:
            return None
        return canonical_number(parsed.value)

    def verify(self, problem: Problem, text: str) -> float:
        parsed = _answer_expression(text)
        if parsed is None or parsed.value != problem.meta["target"]:
            return 0.0
        used, available = Counter(parsed.literals), Counter(problem.meta["numbers"])
        return 1.0 if all(available[x] >= c for x, c in used.items()) else 0.0

    def demonstration(self, problem: Problem) -> str | None:
        """The generating solution (kept in meta), or for hand-made problems one found by search."""
        steps, expression = problem.meta.get("steps"), problem.meta.get("expression")
        if steps is None or expression is None:
            found = solve(problem.meta["numbers"], problem.meta["target"])
            if found is None:
                return None
            steps, expression = found
        return "".join(s + "\n" for s in steps) + f"{ANSWER_PREFIX}{expression}\n"

    def step_labels(self, problem: Problem, steps: Sequence[str]) -> list[float]:
        target = problem.meta["target"]
        pool = Counter(problem.meta["numbers"])
        labels: list[float] = []
        ok = True
        for step in steps:
            if ok and step.startswith(ANSWER_PREFIX):
                labels.append(self.verify(problem, step))
                ok = False  # nothing after the answer line belongs to the solution
                continue
            if ok:
                move = _parse_step(step)
                if move is None:
                    ok = False
                else:
                    a, op, b, c = move
                    pool[a] -= 1
                    pool[b] -= 1
                    ok = pool[a] >= 0 and pool[b] >= 0 and apply_op(a, op, b) == c
                    if ok:
                        pool[c] += 1
                        ok = reachable(tuple(sorted(pool.elements())), target)
            labels.append(1.0 if ok else 0.0)
        return labels


def _parse_step(step: str) -> tuple[int, str, int, int] | None:
    """`a op b = c` (spaces allowed, non-negative integers) as (a, op, b, c), or None."""
    s = step.strip()
    if len(s) > 64 or s.count("=") != 1:
        return None
    lhs, rhs = s.split("=")
    rhs = rhs.strip()
    lhs = lhs.strip()
    if not rhs.isdigit() or not rhs.isascii():
        return None
    for k, ch in enumerate(lhs):
        if k > 0 and ch in _PRECEDENCE:
            a, b = lhs[:k].strip(), lhs[k + 1 :].strip()
            if a.isdigit() and b.isdigit() and a.isascii() and b.isascii():
                return int(a), ch, int(b), int(rhs)
            return None
    return None
