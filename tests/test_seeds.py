"""`ponder run --seeds K`: independent seeds, one aggregate, resume, and the --seeds error; the markdown
tables the README's figures come from."""

from __future__ import annotations

import json

import pytest

from ponder.cli import main
from tests.test_e2e import TINY

FAST = [s for s in TINY if not s.startswith(("search.", "reward."))] + ["reward.models=[]", "search.methods=[]"]


def _args(tmp_path, name: str, extra: list[str]) -> list[str]:
    args = ["run", "addition", "--quiet", "--runs-dir", str(tmp_path), "--name", name]
    for s in FAST:
        args += ["--set", s]
    return args + extra


@pytest.mark.slow
def test_seeds_run_independently_and_aggregate(tmp_path, capsys):
    assert main(_args(tmp_path, "multi", ["--seeds", "2", "--set", "seed=5"])) == 0
    root = tmp_path / "multi"
    s5, s6 = (json.loads((root / f"seed{s}" / "summary.json").read_text()) for s in (5, 6))
    assert (s5["seed"], s6["seed"]) == (5, 6)
    # a seed of a multi-seed run is exactly the single run of that seed: nothing couples them
    assert main(_args(tmp_path, "single", ["--set", "seed=6"])) == 0
    assert json.loads((tmp_path / "single" / "summary.json").read_text()) == s6
    agg = json.loads((root / "aggregate.json").read_text())
    assert agg["seeds"] == [5, 6]
    greedy = agg["figures"]["greedy/init"]
    assert greedy["values"] == [s5["phases"][0]["greedy_accuracy"], s6["phases"][0]["greedy_accuracy"]]
    assert greedy["min"] <= greedy["mean"] <= greedy["max"]
    learning = next(c for c in agg["claims"] if c["id"] == "learning")
    assert len(learning["per_seed"]) == 2 and learning["verdict"] in ("holds", "contradicted", "within noise")
    assert "seed5/report.html" in (root / "report.html").read_text()
    out = capsys.readouterr().out
    assert "2 seeds; claims over seeds" in out
    # resuming a finished multi-seed run redoes nothing and rewrites the same aggregate
    assert main(["run", "--quiet", "--resume", str(root)]) == 0
    assert "finished already" in capsys.readouterr().err
    assert json.loads((root / "aggregate.json").read_text()) == agg
    # the README's tables come from the aggregate
    assert main(["report", str(root), "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "mean over 2 seeds (5, 6)" in md and "| init |" in md and "learning from search raises" in md


@pytest.mark.slow
def test_an_interrupted_seed_is_resumed_and_the_others_kept(tmp_path, monkeypatch, capsys):
    from ponder.learn.expert_iteration import ExpertIteration

    real = ExpertIteration.learn
    calls = {"n": 0}

    def crash_on_second_seed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(ExpertIteration, "learn", crash_on_second_seed)
    with pytest.raises(RuntimeError):
        main(_args(tmp_path, "multi", ["--seeds", "2"]))
    root = tmp_path / "multi"
    assert (root / "seed0" / "summary.json").is_file() and not (root / "seed1" / "summary.json").exists()
    monkeypatch.setattr(ExpertIteration, "learn", real)
    assert main(["run", "--quiet", "--resume", str(root)]) == 0
    assert "seed 0: finished already" in capsys.readouterr().err
    assert json.loads((root / "aggregate.json").read_text())["seeds"] == [0, 1]


@pytest.mark.parametrize("bad", ["0", "-1", "2.5", "three", ""])
def test_seeds_must_be_a_positive_integer(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as e:
        main(["run", "--runs-dir", str(tmp_path), "--seeds", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--seeds" in err and "positive integer" in err
    assert not list(tmp_path.iterdir())  # refused before any work


def test_seeds_with_resume_is_refused(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path), "--seeds", "2"]) == 2
    assert "drop RECIPE, --set and --seeds" in capsys.readouterr().err


def test_an_existing_multi_seed_directory_needs_force(tmp_path, capsys):
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "replicate.json").write_text('{"seeds": [0]}')
    assert main(["run", "--runs-dir", str(tmp_path), "--seeds", "2"]) == 2
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["run", "--runs-dir", str(tmp_path), "--name", "other", "--seeds", "2", "--force"]) == 2
    assert "not a ponder run" in capsys.readouterr().err
    assert (tmp_path / "other" / "notes.txt").is_file()


def test_a_fixed_eval_seed_gives_every_seed_the_same_held_out_problems(tmp_path):
    def ids(root, seed: int) -> list[str]:
        lines = (root / f"seed{seed}" / "samples" / "eval_init.jsonl").read_text().splitlines()
        return [json.loads(line)["id"] for line in lines]

    quick = ["--set", "init.sft.steps=2", "--set", "learn.rounds=0", "--set", "eval.n=[1]"]
    assert main(_args(tmp_path, "fixed", ["--seeds", "2", "--set", "eval.seed=0", *quick])) == 0
    assert main(_args(tmp_path, "own", ["--seeds", "2", *quick])) == 0
    fixed, own = tmp_path / "fixed", tmp_path / "own"
    assert ids(own, 0) != ids(own, 1)  # by default each seed draws its own problems
    assert ids(fixed, 0) == ids(fixed, 1) == ids(own, 0) and len(ids(own, 0)) == 40  # seed 0's, for both
    # seed 0 with eval.seed = 0 is the run it was without it
    assert (fixed / "seed0" / "summary.json").read_text() == (own / "seed0" / "summary.json").read_text()
    summaries = [json.loads((fixed / f"seed{s}" / "summary.json").read_text()) for s in (0, 1)]
    assert summaries[0]["phases"][0]["problems"] == summaries[1]["phases"][0]["problems"] == 40
