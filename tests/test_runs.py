"""Tests of the run directory: create/force/refuse, metrics log and truncation on resume, atomic
writes, state and checkpoints."""

from __future__ import annotations

import json

import pytest
from conftest import make_tiny_policy

from ponder.policy import TinyPolicy
from ponder.runs import Run, RunDirError, write_atomic, write_json
from ponder.types import Sampling


def test_create_makes_layout(tmp_path):
    run = Run.create(tmp_path / "r")
    assert (tmp_path / "r" / "checkpoints").is_dir()
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["done"] == [] and state["results"] == {} and state["metrics_lines"] == 0
    assert run.metrics() == []


def test_create_refuses_existing_without_force(tmp_path):
    Run.create(tmp_path / "r")
    with pytest.raises(RunDirError) as e:
        Run.create(tmp_path / "r")
    assert "--force" in str(e.value) and "--resume" in str(e.value) and str(tmp_path / "r") in str(e.value)


def test_create_with_force_replaces_run(tmp_path):
    run = Run.create(tmp_path / "r")
    run.log({"phase": "a", "step": 1})
    (tmp_path / "r" / "extra.txt").write_text("old")
    run.finish_phase("a", {"x": 1})
    fresh = Run.create(tmp_path / "r", force=True)
    assert not (tmp_path / "r" / "extra.txt").exists()
    assert not (tmp_path / "r" / "metrics.jsonl").exists()
    assert fresh.state["done"] == [] and fresh.metrics() == []
    assert json.loads((tmp_path / "r" / "state.json").read_text())["done"] == []


def test_create_refuses_to_delete_non_run_directory(tmp_path):
    d = tmp_path / "precious"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    with pytest.raises(RunDirError, match="not a ponder run"):
        Run.create(d, force=True)
    assert (d / "thesis.tex").read_text() == "years of work"


def test_create_force_on_empty_dir_and_file(tmp_path):
    (tmp_path / "empty").mkdir()
    Run.create(tmp_path / "empty", force=True)
    assert (tmp_path / "empty" / "state.json").is_file()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirError):
        Run.create(tmp_path / "afile")
    Run.create(tmp_path / "afile", force=True)
    assert (tmp_path / "afile" / "checkpoints").is_dir()


def test_log_appends_lines(tmp_path):
    run = Run.create(tmp_path / "r")
    run.log({"phase": "sft", "step": 1, "loss": 2.5})
    run.log({"phase": "sft", "step": 2, "loss": 2.0})
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    recs = [json.loads(line) for line in lines]
    assert [(r["phase"], r["step"], r["loss"]) for r in recs] == [("sft", 1, 2.5), ("sft", 2, 2.0)]
    assert all(isinstance(r["time"], float) and r["time"] >= 0 for r in recs)
    assert run.metrics() == recs
    assert run.state["metrics_lines"] == 2


def test_open_truncates_metrics_of_unfinished_phase(tmp_path):
    run = Run.create(tmp_path / "r")
    run.log({"phase": "a", "step": 1})
    run.log({"phase": "a", "step": 2})
    run.finish_phase("a", {"acc": 0.5})
    run.log({"phase": "b", "step": 1})
    run.log({"phase": "b", "step": 2})
    run.log({"phase": "b", "step": 3})
    assert len(run.metrics()) == 5
    # crash: phase b never finishes, state.json still says 2 lines
    resumed = Run.open(tmp_path / "r")
    assert resumed.done("a") and not resumed.done("b")
    assert resumed.state["results"] == {"a": {"acc": 0.5}}
    assert [(m["phase"], m["step"]) for m in resumed.metrics()] == [("a", 1), ("a", 2)]
    resumed.log({"phase": "b", "step": 1})
    resumed.finish_phase("b")
    again = Run.open(tmp_path / "r")
    assert [(m["phase"], m["step"]) for m in again.metrics()] == [("a", 1), ("a", 2), ("b", 1)]
    assert again.state["done"] == ["a", "b"] and again.state["metrics_lines"] == 3


def test_open_drops_partial_last_line(tmp_path):
    run = Run.create(tmp_path / "r")
    run.log({"phase": "a", "step": 1})
    run.finish_phase("a")
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write('{"phase": "b", "st')  # torn write
    run.state["metrics_lines"] = 2
    run.save_state()
    assert [m["step"] for m in Run.open(tmp_path / "r").metrics()] == [1]


def test_finish_phase_idempotent(tmp_path):
    run = Run.create(tmp_path / "r")
    run.finish_phase("a", 1)
    run.finish_phase("a", 2)
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["done"] == ["a"] and state["results"] == {"a": 2}


def test_open_errors(tmp_path):
    with pytest.raises(RunDirError, match="no state.json"):
        Run.open(tmp_path)
    (tmp_path / "state.json").write_text("{oops")
    with pytest.raises(RunDirError, match="unreadable"):
        Run.open(tmp_path)


def test_write_atomic_leaves_no_tmp(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    write_json(tmp_path / "sub" / "d.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "sub" / "d.json").read_text()) == {"a": [1, 2]}
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["d.json", "f.txt"]


def test_write_samples(tmp_path):
    run = Run.create(tmp_path / "r")
    run.write_samples("eval0", [{"text": "A: 1\n"}, {"text": "x"}])
    lines = (tmp_path / "r" / "samples" / "eval0.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"text": "A: 1\n"}, {"text": "x"}]


def test_save_checkpoint_then_load(tmp_path):
    run = Run.create(tmp_path / "r")
    policy = make_tiny_policy(3)
    path = run.save_checkpoint(policy, "init")
    assert path == tmp_path / "r" / "checkpoints" / "init"
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["init"]
    assert run.state["last_checkpoint"] == "init"
    loaded = TinyPolicy.load(path)
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=12)
    assert loaded.generate(["Q: 1+2\n"], sampling)[0][0].token_ids == policy.generate(["Q: 1+2\n"], sampling)[0][0].token_ids
    # overwriting a phase replaces it
    other = make_tiny_policy(4)
    assert other.generate(["Q: 1+2\n"], sampling)[0][0].token_ids != policy.generate(["Q: 1+2\n"], sampling)[0][0].token_ids
    run.save_checkpoint(other, "init")
    reloaded = TinyPolicy.load(path)
    assert reloaded.generate(["Q: 1+2\n"], sampling)[0][0].token_ids == other.generate(["Q: 1+2\n"], sampling)[0][0].token_ids
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["init"]
