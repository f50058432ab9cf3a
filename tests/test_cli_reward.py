"""`ponder reward train|eval` end to end on a seconds-long policy, and its user errors."""

from __future__ import annotations

import json
import math

import pytest

from ponder.cli import main
from ponder.policy.tiny import TinyPolicy
from ponder.reward.model import RewardModel

TINY_REWARD = ["task.digits=1", "model.n_layer=1", "model.d_model=32", "model.max_seq_len=32", "eval.problems=6",
               "eval.max_new_tokens=20", "reward.problems=8", "reward.samples=4", "reward.rollouts=2",
               "reward.max_new_tokens=20", "reward.train.steps=4", "reward.train.batch_size=4", "search.methods=[]"]


def _sets(extra=()):
    return [a for s in [*TINY_REWARD, *extra] for a in ("--set", s)]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    """A tiny policy with a little SFT on 1-digit addition: some samples verify, some do not."""
    from ponder.learn.sft import train_sft
    from ponder.policy.transformer import ModelConfig
    from ponder.tasks.arithmetic import Arithmetic
    from ponder.training import SFTConfig

    task = Arithmetic(digits=1)
    policy = TinyPolicy(ModelConfig(n_layer=1, n_head=2, d_model=32, max_seq_len=32), seed=0, dtype="float32")
    demos = [(p.prompt, task.demonstration(p)) for p in task.problems("train", 80, seed=0)]
    train_sft(policy, demos, SFTConfig(steps=400, batch_size=16, lr=3e-3, warmup=5), seed=0, progress=False)
    path = tmp_path_factory.mktemp("policy") / "policy"
    policy.save(path)
    return path


def test_reward_train_then_eval(tmp_path, policy_dir, capsys):
    out = tmp_path / "rm"
    args = ["reward", "train", "--quiet", "--policy", str(policy_dir), "--out", str(out),
            *_sets(['reward.models=["prm","orm","implicit","preference"]'])]
    assert main(args) == 0
    for name in ("prm", "orm", "implicit", "preference"):
        assert (out / name).is_dir()
    assert RewardModel.load(out / "prm").kind == "process"
    train = json.loads((out / "train.json").read_text())
    assert train["solutions"] == 32 and set(train["models"]) == {"prm", "orm", "implicit", "preference"}
    assert 0 < train["verified"] < 32
    assert main(args) == 2  # the output directory is not overwritten without --force
    assert "already exists" in capsys.readouterr().err

    ev = ["reward", "eval", "--quiet", "--policy", str(policy_dir), "--models", str(out), "--n", "1,2",
          "--overopt", "--members", "2", "--overopt-problems", "3", *_sets()]
    assert main(ev) == 0
    result = json.loads((out / "eval.json").read_text())
    assert set(result["models"]) == {"prm", "orm", "implicit", "preference"}
    for m in result["models"].values():
        assert set(m["best_of_n"]) == {"1", "2"}
        assert all(0.0 <= v <= 1.0 for v in m["best_of_n"].values())
        assert math.isnan(m["auroc"]) or 0.0 <= m["auroc"] <= 1.0
    over = result["overoptimization"]
    assert over["ns"] == [1, 2] and over["members"] == 2
    assert set(over["curves"]) >= {"oracle", "proxy", "ensemble_mean", "ensemble_wco", "ensemble_uwo"}
    # the oracle is an upper bound on every selector at every N
    for name, ys in over["curves"].items():
        if name not in ("oracle", "proxy_belief"):
            assert all(y <= o + 1e-9 for y, o in zip(ys, over["curves"]["oracle"]))
    assert (out / "plots" / "overopt.png").is_file() and (out / "report.html").is_file()
    assert "report:" in capsys.readouterr().out


def test_reward_user_errors_are_one_line(tmp_path, policy_dir, capsys):
    assert main(["reward", "train", "--policy", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *_sets()]) == 2
    assert "not a ponder model directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["reward", "eval", "--policy", str(policy_dir), "--models", str(tmp_path / "empty"), *_sets()]) == 2
    assert "no reward model directories" in capsys.readouterr().err
    assert main(["reward", "train", "--policy", str(policy_dir), "--out", str(tmp_path / "o"),
                 *_sets(["reward.labels=magic"])]) == 2
    assert "labels must be one of" in capsys.readouterr().err
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "Q: 1+2\\n", "chosen": "A: 3\\n", "rejected": "A: 4\\n"}\nnot json\n')
    assert main(["reward", "train", "--policy", str(policy_dir), "--out", str(tmp_path / "p"),
                 *_sets(['reward.models=["preference"]', f"reward.pairs_file='{bad}'"])]) == 2
    assert f"{bad}:2" in capsys.readouterr().err


def test_preference_model_from_a_pairs_file(tmp_path, policy_dir):
    pairs = tmp_path / "pairs.jsonl"
    lines = [{"prompt": f"Q: {i}+1\n", "chosen": f"A: {i + 1}\n", "rejected": "A: 0\n"} for i in range(1, 6)]
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "pm"
    assert main(["reward", "train", "--quiet", "--policy", str(policy_dir), "--out", str(out),
                 *_sets(['reward.models=["preference"]', f"reward.pairs_file='{pairs}'"])]) == 0
    assert RewardModel.load(out / "preference").kind == "preference"
