"""`ponder run` with every learner of the `[learn]` table: rounds run, count their compute, checkpoint,
evaluate and report; `init.checkpoint` shares one initialized policy; bad settings name their key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.cli import main
from ponder.learn.rounds import LEARNERS
from ponder.runs import Run

BASE = [
    "task.digits=2", 'task.styles=["column"]', "model.n_layer=2", "model.d_model=64", "model.max_seq_len=48",
    "eval.problems=20", "eval.n=[1,2]", "eval.max_new_tokens=38", "learn.expert_iteration.max_new_tokens=38",
    "learn.problems=24", "reward.models=[]", "search.methods=[]",
]
ONE_ROUND = {
    "expert_iteration": ["learn.expert_iteration.samples=2", "learn.expert_iteration.max_new_tokens=38",
                         "learn.expert_iteration.sft.steps=4", "learn.expert_iteration.sft.batch_size=8"],
    "distill": ['reward.models=["prm"]', "reward.problems=8", "reward.samples=2", "reward.max_new_tokens=38",
                "reward.train.steps=4", "reward.train.batch_size=8", "learn.distill.simulations=3",
                "learn.distill.max_new_tokens=12", "learn.distill.sft.steps=4", "learn.distill.sft.batch_size=8",
                "learn.distill.prm_steps=3", "learn.distill.min_visits=1"],
    "ppo": ["learn.ppo.steps=2", "learn.ppo.prompts_per_step=4", "learn.ppo.samples_per_prompt=2",
            "learn.ppo.max_new_tokens=38", "learn.ppo.epochs_per_batch=2", 'learn.ppo.critic="separate"',
            "learn.ppo.value_warmup=1"],
    "dpo": ["learn.dpo.prompts_per_round=6", "learn.dpo.samples=3", "learn.dpo.max_new_tokens=38",
            "learn.dpo_iterations=2", "learn.dpo.train.batch_size=4"],
}
RL = ["learn.rl.steps=2", "learn.rl.prompts_per_step=8", "learn.rl.group_size=4", "learn.rl.max_new_tokens=38"]


def _run(runs: Path, name: str, sets: list[str]) -> int:
    args = ["run", "--quiet", "--runs-dir", str(runs), "--name", name]
    for s in BASE + sets:
        args += ["--set", s]
    return main(args)


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory) -> Path:
    """A briefly trained 1-digit adder that every learner starts from."""
    runs = tmp_path_factory.mktemp("init")
    assert _run(runs, "init", ["init.demos=2000", "init.sft.steps=300", "init.sft.batch_size=32",
                      "learn.rounds=0"]) == 0
    return runs / "init" / "checkpoints" / "init"


@pytest.mark.slow
@pytest.mark.parametrize("learner", LEARNERS)
def test_every_learner_runs_rounds_from_a_shared_init(tmp_path, init_checkpoint, learner):
    sets = [f"learn.learner={learner}", "learn.rounds=2", f"init.checkpoint={init_checkpoint}"]
    sets += ONE_ROUND.get(learner, RL)
    assert _run(tmp_path, learner, sets) == 0
    run = tmp_path / learner
    state = json.loads((run / "state.json").read_text())
    assert state["done"][-4:] == ["round1", "eval_round1", "round2", "eval_round2"]
    assert state["results"]["init"]["train_tokens"] == 0 and state["results"]["init"]["checkpoint"]
    for r in ("round1", "round2"):
        res = state["results"][r]
        assert res["sample_tokens"] > 0 and res["train_tokens"] > 0 and res["train_steps"] > 0, res
        assert (run / "checkpoints" / r / "model.safetensors").is_file()
    # the round changed the weights
    a = (run / "checkpoints" / "init" / "model.safetensors").read_bytes()
    assert a != (run / "checkpoints" / "round1" / "model.safetensors").read_bytes()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["learner"] == learner
    compute = [p["learning_compute_tokens"] for p in summary["phases"]]
    assert compute[0] == 0 and compute[1] > 0 and compute[2] > compute[1]
    assert compute[2] == sum(state["results"][r]["sample_tokens"] + state["results"][r]["train_tokens"]
                             for r in ("round1", "round2"))
    assert [r["round"] for r in summary["learning"]] == ["round1", "round2"]
    if learner in ("reinforce", "rloo", "grpo", "dr_grpo", "ppo"):
        entropy = [m for m in Run.open(run).metrics() if m.get("phase") == "round1" and m.get("entropy") is not None]
        assert len(entropy) == (3 if learner == "ppo" else 2) and all(m["entropy"] > 0 for m in entropy)
        assert (run / "plots" / "entropy.png").is_file()
        assert summary["learning"][0]["entropy_first"] == entropy[0]["entropy"]
    if learner == "ppo":  # the value head is saved each round and the next round starts from it
        assert all((run / "checkpoints" / f"{r}.critic.safetensors").is_file() for r in ("round1", "round2"))
        steps = {r: [m for m in Run.open(run).metrics() if m.get("phase") == r and "critic_only" in m]
                 for r in ("round1", "round2")}
        assert [m["critic_only"] for m in steps["round1"]] == [True, False, False]  # warm-up only once
        assert [m["critic_only"] for m in steps["round2"]] == [False, False] and steps["round2"][0]["value_mean"] != 0
    if learner == "distill":
        assert (run / "reward" / "prm_round2" / "model.safetensors").is_file()
        assert state["results"]["round1"]["prm_train_tokens"] > 0
    assert "Learning rounds (" + learner + ")" in (run / "report.html").read_text()


def test_init_checkpoint_errors_name_the_key(tmp_path, capsys):
    assert _run(tmp_path, "a", [f"init.checkpoint={tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err
    assert "init.checkpoint" in err and "nope" in err


def test_distill_needs_a_prm(tmp_path, capsys):
    assert _run(tmp_path, "a", ["learn.learner=distill", "reward.models=[]"]) == 2
    err = capsys.readouterr().err
    assert "distill" in err and "reward.models" in err
