"""The Task protocol, the step splitter, and the helpers every task shares.

A task makes problems deterministically by split and seed, formats them as prompts, extracts and
verifies answers, and where it can, writes demonstration traces (for SFT) and gold step labels (for
PRM evaluation). A solution is a sequence of steps, one per line; `split_steps` is the single place
that decides what a step is, for search, reward models and labels alike.

Splits are disjoint by construction: a problem's split is a hash of its canonical key, so "test"
problems never appear in "train" whatever the seeds.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import ClassVar, Protocol, runtime_checkable

from ponder.types import Problem

SPLITS = ("train", "test")
ANSWER_PREFIX = "A: "
VERIFIED_AT = 1.0
"""Default score at or above which a solution counts as verified (`[task] verified_at` changes it)."""


class TaskError(ValueError):
    """A problem with task settings or task data that the user can fix."""


class BadLine(Exception):
    """One data line that cannot be used; the reader adds the file and line number."""


def json_object_line(raw: bytes, fields: Sequence[str]) -> dict | None:
    """A JSONL line as a dict whose `fields` are all strings; None for a blank line. Raises BadLine
    saying what is wrong (not UTF-8, not JSON, not an object, a field missing or not a string)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadLine("not UTF-8 text") from None
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadLine(f"not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise BadLine(f"expected a JSON object, got {type(obj).__name__}")
    for key in fields:
        if key not in obj:
            raise BadLine(f"missing field {key!r}")
        if not isinstance(obj[key], str):
            raise BadLine(f"field {key!r} must be a string, got {type(obj[key]).__name__}")
    return obj


@runtime_checkable
class Task(Protocol):
    """What every task provides. Subclass `BaseTask` to get the shared parts for free."""

    name: str

    def problems(self, split: str, n: int, seed: int) -> list[Problem]: ...
    def extract_answer(self, text: str) -> str | None: ...
    def verify(self, problem: Problem, text: str) -> float: ...
    def demonstration(self, problem: Problem) -> str | None: ...
    def step_labels(self, problem: Problem, steps: Sequence[str]) -> list[float] | None: ...


def verified_at(task: Task) -> float:
    """The task's threshold for a verified solution: its `verified_at` attribute, else VERIFIED_AT."""
    return float(getattr(task, "verified_at", VERIFIED_AT))


def is_verified(task: Task, score: float) -> bool:
    """Whether a verifier score counts as a verified solution.

    `verify` returns a score in [0, 1]. Most tasks give 0 or 1; reasoning-gym scorers can give partial
    credit (0.5 for an answer with stray spaces, 0.01 for a wrong one in the right form). Accuracy,
    rewards and advantages use the score as it is; whatever needs a yes or no (the `verified` share,
    expert iteration's filter, preference pairs, hard Monte-Carlo labels, AUROC, distillation's
    traces) asks this, so the line is drawn in one place, at `[task] verified_at` (default 1.0: only
    full credit)."""
    return score >= verified_at(task)


def split_steps(text: str) -> list[str]:
    """Split a solution into steps: one step per non-empty line, newlines removed."""
    return [line for line in text.split("\n") if line.strip()]


def join_steps(steps: Sequence[str]) -> str:
    """Inverse of `split_steps` for well-formed steps: each step ends with a newline."""
    return "".join(s + "\n" for s in steps)


def split_of(key: str, test_fraction: float = 0.1) -> str:
    """Deterministic split of a canonical problem key: a stable hash, not Python's salted one."""
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return "test" if (h % 10_000) < test_fraction * 10_000 else "train"


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes and Python versions."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# One grammar of written numbers, used both for a whole answer span (`parse_number`) and for numbers
# standing in free text (`number_tokens`). Thousands separators are commas or thin/no-break spaces in
# groups of three; a power of ten is `e`/`E` or `x`/`×`/`*`/`·`/`\times`/`\cdot` followed by `10^k`
# (braces allowed); exponents have at most 3 digits.
_THOUSANDS = "[,\u2009\u202f\u00a0]"
_DEC = rf"(?:\d{{1,3}}(?:{_THOUSANDS}\d{{3}})+|\d+)?(?:\.\d+)?"
_EXP = r"[-+]?\d{1,3}"
_TIMES = r"(?:[x×*·]|\\times|\\cdot)"
_BODY = (rf"(?:(?P<ten>10)\s*\^\s*(?P<b0>\{{)?(?P<e0>{_EXP})(?(b0)\}})"
         rf"|(?P<mant>{_DEC})(?:[eE](?P<e1>{_EXP})|\s*{_TIMES}\s*10\s*\^\s*(?P<b2>\{{)?(?P<e2>{_EXP})(?(b2)\}})"
         rf"|/(?P<den>\d+))?)")
_SIGNED = rf"(?P<sign>[-+])?\s*\$?\s*{_BODY}"
_NUMBER_RE = re.compile(rf"\$?\s*{_SIGNED}\s*%?\.?")
# A number in running text must stand alone: not glued to a word, another number or a `^` it does not
# explain, nor followed by a power of ten it could not read (`4x`, `1,23`, `3.5.2`, `2^10`, `0x1F`,
# `1.5 x 10^3m` hold no number); a sentence's full stop may follow.
_TOKEN_RE = re.compile(rf"(?<![\w.,/^\u2009\u202f\u00a0])(?<!\^\{{){_SIGNED}(?![\w^]|[.,/\u2009\u202f\u00a0]\d|\s*{_TIMES}\s*10\s*\^)")
MAX_NUMBER_CHARS = 60
"""A value whose canonical text would be longer (`1e100`) is no answer: it could not be read back."""
_UNICODE = str.maketrans({"\u2212": "-", "\u2013": "-", "\u00d7": "×"})


def _number_of(m: re.Match) -> Fraction | None:
    """The value of a match of the number grammar, or None when it holds no digit or is undefined."""
    g = m.groupdict()
    sign = -1 if g["sign"] == "-" else 1
    if g["ten"] is not None:
        return sign * Fraction(10) ** int(g["e0"])
    mant = (g["mant"] or "").translate({ord(c): None for c in ",\u2009\u202f\u00a0"})
    if not any(ch.isdigit() for ch in mant):
        return None
    value = Fraction(mant)
    exp = g["e1"] if g["e1"] is not None else g["e2"]
    if exp is not None:
        value *= Fraction(10) ** int(exp)
    if g["den"] is not None:
        if int(g["den"]) == 0:
            return None
        value /= int(g["den"])
    if len(canonical_number(value)) > MAX_NUMBER_CHARS:
        return None
    return sign * value


def parse_number(text: str) -> Fraction | None:
    """Parse one number written the ways people and models write them, or None.

    Accepts `42`, `-3`, `+7`, `−7` (Unicode minus), `1,234`, `1 234 567` with thin or no-break spaces,
    `$5.00`, `-$5`, `3.50.` (trailing full stop), `.5`, `3/4`, `50%` (as 50), and powers of ten: `1e3`,
    `2.5E-2`, `1.5 x 10^3`, `1.5×10^{3}`, `3 \\times 10^{-2}`, `10^6`.
    Rejects anything with other content (`42 or 43`, `4x`, `1,23`, `3,5`, `1e`, `2^10`, `0x1F`, `1 000`
    with plain spaces), so that junk never verifies and an unknown notation is no answer, never a
    different number.
    """
    if not isinstance(text, str):
        return None
    s = text.strip().translate(_UNICODE)
    if not s or len(s) > 64:
        return None
    m = _NUMBER_RE.fullmatch(s)
    return None if m is None else _number_of(m)


def number_tokens(text: str) -> list[Fraction]:
    """The numbers standing alone in running text, in order (see `parse_number` for the notations)."""
    out = []
    for m in _TOKEN_RE.finditer(text.translate(_UNICODE)):
        value = _number_of(m)
        if value is not None:
            out.append(value)
    return out


def canonical_number(value: Fraction) -> str:
    """Canonical text of a number: integers plainly, others as reduced fractions."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def final_answer_line(text: str, prefix: str = ANSWER_PREFIX) -> str | None:
    """The content of the first line that starts with `prefix` (the answer line), or None.

    The first one counts: a solution that writes several answers gets judged by its first, so
    listing many candidates cannot hit the right one by luck.
    """
    for line in text.split("\n"):
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return None


class BaseTask:
    """Shared machinery: split-aware problem generation from a `make(rng)` function, and numeric
    answers on an `A: ` line. Subclasses set `name`, implement `make_problem`, and may override
    `demonstration`, `step_labels`, `extract_answer` and `verify`."""

    name: ClassVar[str] = "base"
    verified_at: float = VERIFIED_AT
    test_fraction: float = 0.1
    max_tries_per_problem: int = 1000

    def make_problem(self, rng: random.Random) -> tuple[str, Problem]:
        """Return (canonical key, problem) drawn from `rng`; the key decides the split."""
        raise NotImplementedError

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in SPLITS:
            raise TaskError(f"task {self.name}: unknown split {split!r} (allowed: {', '.join(SPLITS)})")
        rng = random.Random(stable_seed(self.name, split, seed))
        out: list[Problem] = []
        seen: set[str] = set()
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > self.max_tries_per_problem * max(n, 1):
                raise TaskError(
                    f"task {self.name}: could only make {len(out)} distinct {split} problems of {n} "
                    "asked for; the problem space is too small for that many"
                )
            key, problem = self.make_problem(rng)
            if key in seen or split_of(key, self.test_fraction) != split:
                continue
            seen.add(key)
            out.append(problem)
        return out

    def extract_answer(self, text: str) -> str | None:
        line = final_answer_line(text)
        if line is None:
            return None
        value = parse_number(line)
        return None if value is None else canonical_number(value)

    def verify(self, problem: Problem, text: str) -> float:
        got = self.extract_answer(text)
        return 1.0 if got is not None and got == problem.answer else 0.0

    def demonstration(self, problem: Problem) -> str | None:
        return None

    def step_labels(self, problem: Problem, steps: Sequence[str]) -> list[float] | None:
        return None


def labels_by_reference(reference: Sequence[str], steps: Sequence[str]) -> list[float]:
    """Gold step labels for tasks with one canonical trace: a step is right (1.0) if it and all
    steps before it match the reference; after the first wrong step everything is wrong (0.0)."""
    out: list[float] = []
    ok = True
    for i, step in enumerate(steps):
        ok = ok and i < len(reference) and step.strip() == reference[i].strip()
        out.append(1.0 if ok else 0.0)
    return out


TaskFactory = Callable[..., Task]
