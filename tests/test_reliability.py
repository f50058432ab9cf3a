"""Reliability: exact resume of training from a mid-phase save, graceful stops, the non-finite guard."""

from __future__ import annotations

import json

import pytest
import torch

from ponder.cli import main
from ponder.learn.sft import train_sft
from ponder.policy import ModelConfig, TinyPolicy
from ponder.signals import Interrupted
from ponder.tasks import Arithmetic, ArithmeticConfig
from ponder.training import Checkpointing, SFTConfig, TrainingDiverged

TINY = ModelConfig(n_layer=1, n_head=2, d_model=32, max_seq_len=48)


def _tiny_run(runs_dir, *extra: str) -> list[str]:
    """CLI arguments of a seconds-long run named x: 1-digit addition, a one-layer model."""
    sets = ["task.digits=1", "model.n_layer=1", "model.d_model=32", "model.max_seq_len=32", "init.demos=20",
            "init.sft.steps=3", "eval.problems=5", "eval.n=[1,2]", "eval.max_new_tokens=20",
            "learn.problems=5", "learn.expert_iteration.max_new_tokens=20", "reward.problems=5",
            "reward.samples=2", "reward.rollouts=1", "reward.max_new_tokens=20", "reward.train.steps=3",
            "reward.train.batch_size=4", 'search.methods=["greedy","beam"]', "search.problems=3", "search.beam=[1]",
            "search.max_new_tokens=20", "search.difficulty_samples=2", "search.difficulty_bins=1"]
    return ["run", "addition", "--quiet", "--runs-dir", str(runs_dir), "--name", "x"] + [
        a for s in sets for a in ("--set", s)] + list(extra)


def _data():
    task = Arithmetic(ArithmeticConfig(digits=2))
    return [(p.prompt, task.demonstration(p)) for p in task.problems("train", 50, seed=0)]


def _weights(policy):
    return {k: v.clone() for k, v in policy.model.state_dict().items()}


def test_training_stopped_and_resumed_ends_with_identical_weights(tmp_path):
    data, cfg = _data(), SFTConfig(steps=20, batch_size=8, lr=3e-3, warmup=3, log_every=5)
    whole = TinyPolicy(TINY, seed=0)
    logged_whole = []
    train_sft(whole, data, cfg, seed=1, log=logged_whole.append, progress=False)

    saves = []
    stopped = TinyPolicy(TINY, seed=0)

    def save(tensors, meta):
        stopped.save(tmp_path / "w")
        saves.append(({k: v.clone() for k, v in tensors.items()}, json.loads(json.dumps(meta))))

    calls = {"n": 0}

    def stop_at_12():
        calls["n"] += 1
        return calls["n"] == 12

    logged = []
    with pytest.raises(Interrupted):
        train_sft(stopped, data, cfg, seed=1, log=logged.append, progress=False,
                  checkpointing=Checkpointing(save=save, every=5, should_stop=stop_at_12))
    assert [m["step"] for _, m in saves] == [5, 10, 12]  # every 5 steps, and when stopped

    resumed = TinyPolicy(TINY, seed=123)  # different init: everything must come from the save
    resumed.load_weights(tmp_path / "w")
    train_sft(resumed, data, cfg, seed=1, log=logged.append, progress=False,
              checkpointing=Checkpointing(save=lambda t, m: None, resume=saves[-1]))
    for k, v in _weights(whole).items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert [m["loss"] for m in logged] == [m["loss"] for m in logged_whole]


def test_non_finite_loss_stops_with_step_and_term():
    policy = TinyPolicy(TINY, seed=0)
    real = policy.logprobs
    calls = {"n": 0}

    def poisoned(prompts, completions, **kw):
        calls["n"] += 1
        logp, mask = real(prompts, completions, **kw)
        return (logp * float("nan") if calls["n"] == 4 else logp), mask

    policy.logprobs = poisoned
    with pytest.raises(TrainingDiverged, match=r"init: non-finite loss \(nll = nan\) at step 4"):
        train_sft(policy, _data(), SFTConfig(steps=10, batch_size=4), seed=0, phase="init", progress=False)


def test_non_finite_gradient_is_caught():
    policy = TinyPolicy(TINY, seed=0)
    with torch.no_grad():
        policy.model.norm.weight.fill_(float("inf"))  # finite inputs, infinite scale: inf/nan gradients
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train_sft(policy, _data(), SFTConfig(steps=3, batch_size=4), seed=0, progress=False)


def test_cli_reports_divergence_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    from ponder.learn.expert_iteration import ExpertIteration

    real = ExpertIteration.learn

    def diverge(*args, **kwargs):
        raise TrainingDiverged("round1: non-finite loss (nll = nan) at step 3")

    monkeypatch.setattr(ExpertIteration, "learn", diverge)
    args = _tiny_run(tmp_path)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "round1: non-finite loss" in err and "step 3" in err
    assert "checkpoints/init" in err
    assert (tmp_path / "x" / "checkpoints" / "init" / "model.safetensors").is_file()
    state = json.loads((tmp_path / "x" / "state.json").read_text())
    assert state["done"] == ["init", "reward", "eval_init", "search"]
    monkeypatch.setattr(ExpertIteration, "learn", real)
    assert main(["run", "--quiet", "--resume", str(tmp_path / "x")]) == 0
    assert json.loads((tmp_path / "x" / "state.json").read_text())["done"][-1] == "eval_round2"


def test_checkpoint_every_is_validated(tmp_path, capsys):
    assert main(["run", "--runs-dir", str(tmp_path), "--set", "checkpoint_every=-1"]) == 2
    assert "checkpoint_every" in capsys.readouterr().err
    assert main(["run", "--runs-dir", str(tmp_path), "--set", "name=../escape"]) == 2
    assert "name" in capsys.readouterr().err


def _jsonl(path, bad_line: str | None = None):
    lines = [json.dumps({"question": f"What is {a} plus {b}?", "answer": f"{a}+{b}={a + b}\n#### {a + b}"})
             for a in range(8) for b in range(8)]
    if bad_line is not None:
        lines.insert(5, bad_line)
    path.write_text("\n".join(lines) + "\n")


JSONL_RUN = ["--set", "model.n_layer=1", "--set", "model.d_model=32", "--set", "model.max_seq_len=64",
             "--set", "init.demos=20", "--set", "init.sft.steps=2", "--set", "eval.problems=4",
             "--set", "eval.n=[1,2]", "--set", "eval.max_new_tokens=8", "--set", "learn.rounds=1",
             "--set", "learn.problems=4", "--set", "learn.expert_iteration.max_new_tokens=8",
             "--set", "reward.problems=4", "--set", "reward.max_new_tokens=8", "--set", "reward.train.steps=2",
             "--set", "search.methods=[]"]


def test_bad_data_line_is_rejected_before_any_work(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    _jsonl(data, bad_line='{"question": "What is 1 plus 1?", "answer": "two"}')
    args = ["run", "addition", "--quiet", "--runs-dir", str(tmp_path / "runs"), "--set", "task.name=jsonl",
            "--set", f"task.path={data}", "--set", "task.digits=3"]
    assert main(args) == 2  # digits is not a jsonl setting
    assert "task.digits" in capsys.readouterr().err
    args = ["run", "addition", "--quiet", "--runs-dir", str(tmp_path / "runs"), "--set", f"task={{name='jsonl', path='{data}'}}"]
    assert main(args + JSONL_RUN) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{data}:6:" in err and "number" in err
    assert not (tmp_path / "runs").exists()


def test_skipped_bad_lines_are_counted_in_the_summary(tmp_path):
    data = tmp_path / "data.jsonl"
    _jsonl(data, bad_line="this is not json")
    args = ["run", "addition", "--quiet", "--runs-dir", str(tmp_path / "runs"), "--name", "j",
            "--set", f"task={{name='jsonl', path='{data}', skip_bad_lines=true}}"]
    assert main(args + JSONL_RUN) == 0
    summary = json.loads((tmp_path / "runs" / "j" / "summary.json").read_text())
    assert summary["skipped_data_lines"] == 1


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    from ponder.runs import Run

    run = Run.create(tmp_path / "r")
    good = TinyPolicy(TINY, seed=0)
    run.save_checkpoint(good, "init")
    run.finish_phase("init", {"ok": 1})
    bad = TinyPolicy(TINY, seed=1)

    def full(path):
        (path / "model.safetensors").parent.mkdir(parents=True, exist_ok=True)
        (path / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bad, "save", full)
    with pytest.raises(OSError):
        run.save_checkpoint(bad, "init")
    loaded = TinyPolicy.load(tmp_path / "r" / "checkpoints" / "init")
    for k, v in good.model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k])
    reopened = Run.open(tmp_path / "r")
    assert reopened.state["done"] == ["init"] and reopened.state["last_checkpoint"] == "init"


def test_nothing_is_ever_unpickled():
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "ponder"
    for f in src.rglob("*.py"):
        text = f.read_text()
        assert "pickle" not in text, f
        assert "torch.load(" not in text, f


def test_crash_right_after_a_round_saved_its_samples_keeps_its_metrics_line_once(tmp_path, monkeypatch):
    from ponder.runs import Run

    real = Run.save_phase_data

    def save_then_die(self, phase, data):
        real(self, phase, data)
        if phase == "round1":
            raise RuntimeError("killed after the round's samples were saved")

    monkeypatch.setattr(Run, "save_phase_data", save_then_die)
    args = _tiny_run(tmp_path, "--set", "learn.rounds=1")
    with pytest.raises(RuntimeError):
        main(args)
    assert (tmp_path / "x" / "checkpoints" / "round1.data.json").is_file()
    monkeypatch.setattr(Run, "save_phase_data", real)
    assert main(["run", "--quiet", "--resume", str(tmp_path / "x")]) == 0
    lines = [json.loads(line) for line in (tmp_path / "x" / "metrics.jsonl").read_text().splitlines()]
    assert sum(1 for m in lines if m["phase"] == "round1" and "kept" in m) == 1
