"""Tests of the JSONL (GSM8K-style) task: loading, splits, errors, demonstrations and answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.tasks import TASKS, make_task
from ponder.tasks.base import TaskError, split_of, split_steps
from ponder.tasks.jsonl import JsonlConfig, JsonlTask, gold_answer

NATALIA = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
                "in May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
              "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}


def record(i: int) -> dict:
    total = 2 * i + 1
    return {"question": f"Tom has {i} apples and buys {i + 1} more. How many apples does he have?",
            "answer": f"He has {i} + {i + 1} = <<{i}+{i + 1}={total}>>{total} apples.\n#### {total}"}


def write(path: Path, lines: list) -> str:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(path)


@pytest.fixture
def good(tmp_path) -> str:
    return write(tmp_path / "gsm.jsonl", [NATALIA] + [record(i) for i in range(60)])


def test_registered(good):
    assert TASKS["jsonl"] is JsonlTask
    assert isinstance(make_task("jsonl", JsonlConfig(path=good)), JsonlTask)


def test_good_file(good):
    task = JsonlTask(path=good)
    train = task.problems("train", 1000, seed=0)
    test = task.problems("test", 1000, seed=0)
    assert len(train) + len(test) == 61 and len(test) > 0
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in test})
    assert all(split_of(p.meta["question"]) == "test" for p in test)
    natalia = next(p for p in train + test if "Natalia" in p.prompt)
    assert natalia.prompt == f"Q: {NATALIA['question']}\n"
    assert natalia.answer == "72"
    assert natalia.id == "gsm.jsonl:1"
    assert task.skipped_lines == 0


def test_problems_are_seeded_and_capped(good):
    task = JsonlTask(path=good)
    a, b, c = (task.problems("train", 10, seed=s) for s in (1, 1, 2))
    assert [p.id for p in a] == [p.id for p in b] and len(a) == 10
    assert [p.id for p in a] != [p.id for p in c]
    everything = task.problems("train", 10_000, seed=0)
    assert len(everything) == len({p.id for p in everything}) < 10_000
    assert task.problems("train", 0, seed=0) == []
    with pytest.raises(TaskError, match="unknown split"):
        task.problems("dev", 1, seed=0)


def test_demonstration(good):
    task = JsonlTask(path=good)
    everything = task.problems("train", 100, 0) + task.problems("test", 100, 0)
    natalia = next(p for p in everything if "Natalia" in p.prompt)
    demo = task.demonstration(natalia)
    assert split_steps(demo) == ["Natalia sold 48/2 = 24 clips in May.",
                                 "Natalia sold 48+24 = 72 clips altogether in April and May.", "A: 72"]
    assert task.verify(natalia, demo) == 1.0
    for p in task.problems("train", 100, 0):
        assert task.verify(p, task.demonstration(p)) == 1.0
        assert "<<" not in task.demonstration(p)
    assert task.verify(natalia, "A: 71") == 0.0
    assert task.verify(natalia, "so it is 72 clips\n#### 72") == 1.0


def test_separate_test_file_removes_overlap(tmp_path):
    train = write(tmp_path / "train.jsonl", [record(i) for i in range(10)])
    test = write(tmp_path / "test.jsonl", [record(i) for i in range(8, 13)])
    task = JsonlTask(path=train, test_path=test)
    assert len(task.problems("test", 100, 0)) == 5
    train_answers = sorted(p.answer for p in task.problems("train", 100, 0))
    assert train_answers == sorted(str(2 * i + 1) for i in range(8))


def test_custom_keys_blank_lines_and_duplicates(tmp_path):
    path = write(tmp_path / "x.jsonl", [{"q": "What is 2+2?", "a": "four, i.e. 4"}, "", "   ",
                                        {"q": "What is 2+2?", "a": "4"}, {"q": "What is 3+3?", "a": "6"}])
    task = JsonlTask(path=path, question_key="q", answer_key="a")
    problems = task.problems("train", 10, 0) + task.problems("test", 10, 0)
    assert sorted(p.answer for p in problems) == ["4", "6"]


def test_gold_answer():
    assert gold_answer("so 5 and then\n#### 1,234") == 1234
    assert gold_answer("#### 72\nextra 5") == 72
    assert gold_answer("it costs $18.50 in total.") == 37 / 2
    assert gold_answer("no number here") is None


def test_missing_or_empty_path(tmp_path):
    with pytest.raises(TaskError, match="path must name a JSONL file"):
        JsonlTask()
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(TaskError, match="file not found: .*nope.jsonl"):
        JsonlTask(path=missing)
    good = write(tmp_path / "ok.jsonl", [record(1)])
    with pytest.raises(TaskError, match="file not found: .*nope.jsonl"):
        JsonlTask(path=good, test_path=missing)


@pytest.mark.parametrize(("line", "reason"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('"just a string"', "expected a JSON object, got str"),
    ('{"question": "Q?"}', "missing field 'answer'"),
    ('{"answer": "#### 4"}', "missing field 'question'"),
    ('{"question": "Q?", "answer": 4}', "'answer' must be a string, got int"),
    ('{"question": ["Q?"], "answer": "#### 4"}', "'question' must be a string, got list"),
    ('{"question": "Q?", "answer": "no number at all"}', "no number in 'answer'"),
    ('{"question": "  ", "answer": "#### 4"}', "'question' is empty"),
])
def test_bad_line_errors_name_file_and_line(tmp_path, line, reason):
    path = write(tmp_path / "bad.jsonl", [record(1), record(2), line, record(3)])
    with pytest.raises(TaskError) as err:
        JsonlTask(path=path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert reason in str(err.value)


def test_non_utf8_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(record(1)).encode() + b"\n\xff\xfe{}\n")
    with pytest.raises(TaskError, match=f"{path}:2: not UTF-8"):
        JsonlTask(path=str(path))


def test_skip_bad_lines_counts(tmp_path):
    lines = [record(1), "{oops", record(2), "[]", '{"question": "Q?", "answer": "none"}', record(3)]
    path = write(tmp_path / "mixed.jsonl", lines)
    task = JsonlTask(path=path, skip_bad_lines=True)
    assert task.skipped_lines == 3
    assert len(task.problems("train", 10, 0)) + len(task.problems("test", 10, 0)) == 3
    all_bad = write(tmp_path / "all_bad.jsonl", ["{oops", "[]"])
    with pytest.raises(TaskError, match="no problems"):
        JsonlTask(path=all_bad, skip_bad_lines=True)


def test_config_validation():
    with pytest.raises(TaskError, match="task jsonl: question_key"):
        JsonlConfig(path="x", question_key="")
    with pytest.raises(TaskError, match="task jsonl: skip_bad_lines"):
        JsonlConfig(path="x", skip_bad_lines="yes")
