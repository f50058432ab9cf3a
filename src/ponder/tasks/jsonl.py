"""Word problems with numeric answers from JSONL files (GSM8K style).

Each line of the file is a JSON object with a question and an answer text:

    {"question": "Natalia sold 48 clips ...", "answer": "She sold 48/2 = <<48/2=24>>24 ...\\n#### 72"}

The gold answer is the number after the last `####` of the answer text when there is one, otherwise
the last number in the answer text. Blank lines are ignored; any other line that is not a JSON object
with string question and answer, or whose answer holds no number, is an error `FILE:LINE: reason`,
unless `skip_bad_lines` is set, in which case the line is skipped and counted in `skipped_lines`.

Splits: with `test_path` the test split is that file and the train split is `path` less any question
that also appears in the test file; without it, each question goes to a split by a stable hash of its
text (`split_of`), so a question never lands in both. Repeated questions within a split are kept once.
`problems(split, n, seed)` returns n problems of the split in a seeded random order; when the split
holds fewer than n it returns all of them (so callers must not assume `len(result) == n`).

Prompts are `Q: <question>\\n` with the question text kept as it is (stripped of surrounding
whitespace). The built-in character tokenizer only knows printable ASCII (`string.printable` less
\\r, \\v and \\f) and rejects text with other characters (curly quotes, accented letters, ...): clean
such files first, or use a tokenizer that covers them.

Demonstrations turn the worked solution before `####` into steps, one per non-empty line with
GSM8K's `<<...>>` calculator annotations removed, followed by the answer line `A: <answer>`. There
are no gold step labels.

Answers are read from model output by `extract_number_answer`; see there for the rules.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from ponder.tasks.base import (
    ANSWER_PREFIX,
    SPLITS,
    BadLine,
    BaseTask,
    TaskError,
    canonical_number,
    final_answer_line,
    json_object_line,
    number_tokens,
    parse_number,
    split_of,
    stable_seed,
)
from ponder.types import Problem

_FRAC = re.compile(r"\\[dt]?frac\{\s*([-+]?\d+)\s*\}\{\s*(\d+)\s*\}")
_ANSWER_IS = re.compile(r"answer\s*(?:is\b|:)\s*:?", re.IGNORECASE)
_CALCULATOR = re.compile(r"<<[^<>\n]*>>")


def _span_number(span: str):
    """The number a marked answer span states: the whole span if it is a number, else what follows
    its last `=`, else the first number in it; None if it holds no number."""
    s = _FRAC.sub(r"\1/\2", span.strip())
    value = parse_number(s)
    if value is None and "=" in s:
        s = s.rsplit("=", 1)[1]
        value = parse_number(s)
    if value is None and (found := number_tokens(s)):
        value = found[0]
    return value


def _boxed_content(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` (braces may nest), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, min(len(text), i + 1000)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def extract_number_answer(text: str) -> str | None:
    """The numeric answer a free-form solution states, as a canonical number, or None.

    The first of these that is present decides (later ones are not consulted even when it holds no
    number, because a model that marks its answer should be judged by what it marked):
    the first `A: ` answer line, the last `#### X`, the last `\\boxed{X}`, the last "answer is X" /
    "answer: X" (to the end of its line). Within the marked span the number is the whole span
    (`1,234`, `$5`, `3/4`, `7.`, `50%`), else the part after its last `=`, else its first number.
    With no marker at all, the last number in the text counts.
    """
    if not isinstance(text, str):
        return None
    value = None
    line = final_answer_line(text)
    if line is not None:
        value = _span_number(line)
    elif "####" in text:
        value = _span_number(text[text.rfind("####") + 4 :].split("\n", 1)[0])
    elif (boxed := _boxed_content(text)) is not None:
        value = _span_number(boxed)
    elif matches := list(_ANSWER_IS.finditer(text)):
        value = _span_number(text[matches[-1].end() :].split("\n", 1)[0])
    elif found := number_tokens(text):
        value = found[-1]
    return None if value is None else canonical_number(value)


def gold_answer(answer_text: str):
    """The gold number of a dataset answer text: after the last `####` if any, else the last number."""
    if "####" in answer_text:
        return _span_number(answer_text[answer_text.rfind("####") + 4 :].split("\n", 1)[0])
    found = number_tokens(answer_text)
    return found[-1] if found else None


@dataclass(frozen=True)
class JsonlConfig:
    """Settings of the JSONL task."""

    path: str = ""
    """JSONL file of problems (required)."""
    test_path: str = ""
    """Optional separate JSONL file for the test split; empty means split `path` by question hash."""
    question_key: str = "question"
    """Key of the question text in each JSON object."""
    answer_key: str = "answer"
    """Key of the answer text (worked solution, optionally ending `#### <number>`)."""
    skip_bad_lines: bool = False
    """Skip and count malformed lines instead of failing on the first one."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise TaskError("task jsonl: path must name a JSONL file (one JSON object per line), got none")
        if not isinstance(self.test_path, str):
            raise TaskError(f"task jsonl: test_path must be a file path or empty, got {self.test_path!r}")
        for key in ("question_key", "answer_key"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise TaskError(f"task jsonl: {key} must be a non-empty string, got {value!r}")
        if not isinstance(self.skip_bad_lines, bool):
            raise TaskError(f"task jsonl: skip_bad_lines must be true or false, got {self.skip_bad_lines!r}")


class JsonlTask(BaseTask):
    name = "jsonl"
    Config = JsonlConfig

    def __init__(self, config: JsonlConfig | None = None, **kwargs) -> None:
        self.config = config or JsonlConfig(**kwargs)
        self.skipped_lines = 0
        cfg = self.config
        main = self._load(cfg.path)
        if cfg.test_path:
            test = self._load(cfg.test_path)
            test_questions = {p.meta["question"] for p in test}
            train = [p for p in main if p.meta["question"] not in test_questions]
        else:
            train = [p for p in main if split_of(p.meta["question"], self.test_fraction) == "train"]
            test = [p for p in main if split_of(p.meta["question"], self.test_fraction) == "test"]
        self._splits = {"train": _unique(train), "test": _unique(test)}

    def _load(self, path: str) -> list[Problem]:
        cfg = self.config
        file = Path(path)
        if not file.is_file():
            raise TaskError(f"task jsonl: file not found: {path}")
        out: list[Problem] = []
        with file.open("rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    problem = self._parse_line(raw, file.name, lineno)
                except BadLine as e:
                    if not cfg.skip_bad_lines:
                        raise TaskError(f"{path}:{lineno}: {e}") from None
                    self.skipped_lines += 1
                    continue
                if problem is not None:
                    out.append(problem)
        if not out:
            raise TaskError(f"task jsonl: no problems in {path}")
        return out

    def _parse_line(self, raw: bytes, filename: str, lineno: int) -> Problem | None:
        cfg = self.config
        obj = json_object_line(raw, (cfg.question_key, cfg.answer_key))
        if obj is None:
            return None
        question, solution = obj[cfg.question_key].strip(), obj[cfg.answer_key]
        if not question:
            raise BadLine(f"{cfg.question_key!r} is empty")
        gold = gold_answer(solution)
        if gold is None:
            raise BadLine(f"no number in {cfg.answer_key!r}")
        meta = {"question": question, "solution": solution, "file": filename, "line": lineno}
        return Problem(id=f"{filename}:{lineno}", prompt=f"Q: {question}\n", answer=canonical_number(gold),
                       meta=meta)

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        """Up to n problems of `split` in a seeded random order (all of them if it holds fewer)."""
        if split not in SPLITS:
            raise TaskError(f"task {self.name}: unknown split {split!r} (allowed: {', '.join(SPLITS)})")
        if n < 0:
            raise TaskError(f"task {self.name}: n must be >= 0, got {n}")
        pool = list(self._splits[split])
        random.Random(stable_seed(self.name, split, seed)).shuffle(pool)
        return pool[:n]

    def extract_answer(self, text: str) -> str | None:
        return extract_number_answer(text)

    def demonstration(self, problem: Problem) -> str:
        solution = problem.meta["solution"]
        if "####" in solution:
            solution = solution[: solution.rfind("####")]
        steps = []
        for line in solution.split("\n"):
            line = _CALCULATOR.sub("", line).strip()
            while line.startswith(ANSWER_PREFIX):  # keep the first answer line the real one
                line = line[len(ANSWER_PREFIX) :].strip()
            if line:
                steps.append(line)
        steps.append(f"{ANSWER_PREFIX}{problem.answer}")
        return "".join(s + "\n" for s in steps)




def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        if p.meta["question"] not in seen:
            seen.add(p.meta["question"])
            out.append(p)
    return out
