"""End-to-end: the CLI on a reduced recipe, its run directory, determinism, resume, and user errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ponder.cli import main
from ponder.config import RECIPE_DIR, load_recipe
from ponder.learn.expert_iteration import ExpertIteration
from ponder.preflight import check_context
from ponder.runs import Run

TINY = [
    "task.digits=2", 'task.styles=["column"]', "model.n_layer=2", "model.d_model=64", "model.max_seq_len=48",
    "init.demos=400", "init.sft.steps=60", "init.sft.batch_size=32",
    "eval.problems=40", "eval.n=[1,4]", "eval.max_new_tokens=38",
    "learn.rounds=1", "learn.problems=60", "learn.expert_iteration.samples=2",
    "learn.expert_iteration.max_new_tokens=38", "learn.expert_iteration.sft.steps=10", "learn.expert_iteration.sft.batch_size=16",
    "reward.problems=30", "reward.samples=2", "reward.rollouts=2", "reward.max_new_tokens=38", "reward.train.steps=10",
    "reward.train.batch_size=16",
    'search.methods=["greedy","majority","weighted_vote","best_of_n","beam","mcts"]', "search.problems=8",
    "search.majority=[1,2]", "search.weighted_vote=[2]", "search.best_of_n=[1,2]", "search.beam=[1,2]",
    "search.mcts=[2,4]", "search.max_new_tokens=38", "search.difficulty_samples=2", "search.difficulty_bins=2",
]


def _run(tmp_path: Path, name: str, extra: list[str] = ()) -> int:
    args = ["run", "addition", "--quiet", "--runs-dir", str(tmp_path), "--name", name]
    for s in TINY + list(extra):
        args += ["--set", s]
    return main(args)


@pytest.mark.slow
def test_run_writes_a_complete_run_directory_and_is_deterministic(tmp_path, capsys):
    assert _run(tmp_path, "a") == 0
    out = capsys.readouterr().out
    assert "greedy" in out and "majority@4" in out
    run = tmp_path / "a"
    for f in ("config.toml", "config.json", "metrics.jsonl", "state.json", "summary.json", "report.html",
              "plots/training.png", "plots/search.png", "plots/learning.png", "samples/eval_init.jsonl",
              "checkpoints/init/model.safetensors", "checkpoints/round1/model.safetensors", "plots/scaling.png",
              "reward/prm/model.safetensors", "reward/orm/model.safetensors"):
        assert (run / f).is_file(), f
    summary = json.loads((run / "summary.json").read_text())
    assert [p["phase"] for p in summary["phases"]] == ["init", "round1"]
    methods = {(r["method"], r["n"]) for r in summary["search"]["init"]}
    assert methods == {(m, n) for m in ("oracle", "majority", "prm", "prm_vote", "orm", "orm_vote") for n in (1, 4)}
    assert set(summary["reward_models"]["init"]) == {"prm", "orm"}
    assert "first_error_f1" in summary["reward_models"]["init"]["prm"]
    scaling = summary["search_scaling"]
    points = {(r["method"], r["size"]) for r in scaling["rows"]}
    assert points == {("greedy", 1), ("majority", 1), ("majority", 2), ("weighted_vote", 2), ("best_of_n", 1),
                      ("best_of_n", 2), ("beam", 1), ("beam", 2), ("mcts", 2), ("mcts", 4)}
    for r in scaling["rows"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["tokens_generated"] > 0
    assert all(c["tokens_generated"] <= c["budget"] + 1e-9 for c in scaling["compute_optimal"])
    kept = json.loads((run / "state.json").read_text())["results"]["search"]  # what ponder compare pairs runs on
    assert len(kept["problem_ids"]) == len(set(kept["problem_ids"])) == 8 == len(kept["difficulty"])
    assert all(0 <= d <= 1 for d in kept["difficulty"]) and len(kept["per_problem"]["beam@2"]) == 8
    for rows in summary["search"].values():
        by = {(r["method"], r["n"]): r for r in rows}
        assert by["oracle", 4]["accuracy"] >= by["oracle", 1]["accuracy"]  # pass@4 >= pass@1 on the same samples
        assert by["oracle", 4]["tokens_generated"] > by["oracle", 1]["tokens_generated"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"phase", "step", "loss", "tokens", "time"} <= set(metrics[0])
    # the resolved config re-runs to the same numbers
    assert main(["run", "--quiet", str(run / "config.toml"), "--runs-dir", str(tmp_path), "--name", "b"]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text()) == summary
    # `ponder search` sweeps another checkpoint into the same report
    sweep = ["search", "--quiet", str(run), "--checkpoint", "round1", "--set", "search.problems=4",
             "--set", 'search.methods=["greedy","beam","dvts"]', "--set", "search.beam=[1,2]", "--set", "search.dvts=[2]"]
    assert main(sweep) == 0
    saved = json.loads((run / "search" / "round1.json").read_text())
    assert [(r["method"], r["size"]) for r in saved["rows"]] == [("greedy", 1), ("beam", 1), ("beam", 2), ("dvts", 2)]
    assert (run / "plots" / "scaling_round1.png").is_file()
    assert "checkpoint round1" in (run / "report.html").read_text()
    assert main(["search", str(run), "--set", "model.n_layer=3"]) == 2
    assert main(["search", str(run), "--checkpoint", "round7"]) == 2
    assert "no checkpoint 'round7'" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_after_a_crash_gives_the_same_summary(tmp_path, monkeypatch):
    assert _run(tmp_path, "whole") == 0
    expected = json.loads((tmp_path / "whole" / "summary.json").read_text())
    _check_phase_times(tmp_path / "whole")

    real_round = ExpertIteration.learn

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash in the learning round")

    monkeypatch.setattr(ExpertIteration, "learn", crash)
    with pytest.raises(RuntimeError):
        _run(tmp_path, "crashed")
    state = json.loads((tmp_path / "crashed" / "state.json").read_text())
    assert state["done"] == ["init", "reward", "eval_init", "search"]
    monkeypatch.setattr(ExpertIteration, "learn", real_round)
    assert main(["run", "--quiet", "--resume", str(tmp_path / "crashed")]) == 0
    assert json.loads((tmp_path / "crashed" / "summary.json").read_text()) == expected
    # the metrics log holds each phase's lines once
    metrics = [json.loads(line) for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    done_events = [m["phase"] for m in metrics if m.get("event") == "phase_done"]
    assert done_events == ["init", "reward", "eval_init", "search", "round1", "eval_round1"]


def _check_phase_times(run_dir: Path) -> None:
    """Each phase's seconds split by activity: the activities the phase does are charged, and they and
    `other` add up to the phase's wall time. The report shows the table; summary.json has no timings."""
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    spent = {m["phase"]: m for m in metrics if m.get("event") == "phase_done"}
    for phase, m in spent.items():
        a = m["activities"]
        assert set(a) == {"sampling", "training", "scoring", "other"} and min(a.values()) >= 0, phase
        assert sum(a.values()) == pytest.approx(m["seconds"], abs=0.01), phase
    # init trains, and samples only for its convergence check
    assert spent["init"]["activities"]["training"] > spent["init"]["activities"]["sampling"] > 0
    assert spent["reward"]["activities"]["sampling"] > 0 and spent["reward"]["activities"]["training"] > 0
    assert spent["eval_init"]["activities"]["sampling"] > 0 and spent["eval_init"]["activities"]["scoring"] > 0
    assert spent["eval_init"]["activities"]["training"] == 0
    assert spent["search"]["activities"]["sampling"] > 0 and spent["search"]["activities"]["scoring"] > 0
    assert spent["round1"]["activities"]["sampling"] > 0  # (this tiny policy keeps no sample to train on)
    assert "Where the time went" in (run_dir / "report.html").read_text()
    assert "activities" not in (run_dir / "summary.json").read_text()


def test_unknown_recipe_key_is_one_clear_line(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "x"\n[init.sft]\nstepz = 3\n')
    assert main(["run", str(recipe), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "r.toml" in err and "init.sft.stepz" in err and "allowed: steps" in err
    assert not (tmp_path / "x").exists()  # rejected before any work


def test_bad_value_names_the_key(tmp_path, capsys):
    assert main(["run", "--runs-dir", str(tmp_path), "--set", "eval.temperature=hot"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "eval.temperature" in err and "number" in err
    assert main(["run", "--runs-dir", str(tmp_path), "--set", "model.d_model=100", "--set", "model.n_head=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "[model]" in err and "d_model" in err


def test_missing_recipe_and_existing_run_dir(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "no such recipe" in capsys.readouterr().err
    Run.create(tmp_path / "default")
    assert main(["run", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err


def test_help_of_every_subcommand(capsys):
    for cmd in (["--help"], ["run", "--help"], ["report", "--help"], ["recipes", "--help"], ["tasks", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(cmd)
        assert e.value.code == 0
        assert "usage: ponder" in capsys.readouterr().out


def test_default_recipe_loads_and_lists():
    cfg = load_recipe()
    assert cfg.name == "default" and cfg.task["name"] == "arithmetic"
    assert cfg.learn.rounds >= 2 and max(cfg.eval.n) == 16


@pytest.mark.parametrize("recipe", sorted(f.stem for f in RECIPE_DIR.glob("*.toml")))
def test_every_builtin_recipe_loads_builds_its_task_and_fits_its_context(recipe):
    cfg = load_recipe(recipe)
    assert cfg.name == recipe  # a recipe's run directory is named after it
    task = cfg.make_task()
    assert task.problems("test", 2, cfg.seed)
    check_context(cfg, task, source=recipe)  # raises if a demonstration, prompt or budget does not fit


@pytest.mark.slow
def test_a_run_whose_stderr_is_a_log_writes_bounded_whole_progress_lines(tmp_path, capsys, monkeypatch):
    """Without --quiet and with stderr not a terminal (captured here, as in `make demo > log`), every
    bar writes whole lines, at most one per log interval plus its first and last."""
    monkeypatch.setenv("TQDM_MININTERVAL", "1")
    start = time.monotonic()
    args = ["run", "--runs-dir", str(tmp_path), "--name", "logged"]
    for s in [*TINY, "learn.rounds=0", 'search.methods=["greedy","best_of_n"]']:
        args += ["--set", s]
    assert main(args) == 0
    wall = time.monotonic() - start
    err = capsys.readouterr().err
    assert "\r" not in err
    bars = [line for line in err.splitlines() if "%|" in line]
    finished = [line for line in bars if "100%|" in line]
    assert {line.split(":")[0] for line in finished} >= {"init", "greedy", "scaling sweep"}, finished
    assert len(bars) <= wall / 1.0 + 2 * len(finished), (wall, len(bars), len(finished))
