"""`ponder run` with every learner of the `[learn]` table: rounds run, count their compute, checkpoint,
evaluate and report; `init.checkpoint` shares one initialized policy; bad settings name their key."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ponder.cli import main
from ponder.config import ConfigError, load_recipe
from ponder.learn.base import Learner
from ponder.learn.rounds import GROUP, LEARNERS, register_learner
from ponder.learn.sft import train_sft
from ponder.runs import Run
from ponder.tasks import plugins
from ponder.training import SFTConfig

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
    "self_evolve": ['reward.models=["prm"]', "reward.problems=8", "reward.samples=2", "reward.max_new_tokens=38",
                    "reward.train.steps=4", "reward.train.batch_size=8", "learn.self_evolve.simulations=3",
                    "learn.self_evolve.max_new_tokens=12", "learn.self_evolve.prm_max_new_tokens=38",
                    "learn.self_evolve.sft.steps=4",
                    "learn.self_evolve.sft.batch_size=8", "learn.self_evolve.epochs=0", "learn.self_evolve.min_visits=1",
                    "learn.self_evolve.prm_problems=6", "learn.self_evolve.prm_samples=2",
                    "learn.self_evolve.prm_steps=3", "learn.self_evolve.tree_values=true"],
    "ppo": ["learn.ppo.steps=2", "learn.ppo.prompts_per_step=4", "learn.ppo.samples_per_prompt=2",
            "learn.ppo.max_new_tokens=38", "learn.ppo.epochs_per_batch=2", 'learn.ppo.critic="separate"',
            "learn.ppo.value_warmup=1"],
    "dpo": ["learn.dpo.prompts_per_round=6", "learn.dpo.samples=3", "learn.dpo.max_new_tokens=38",
            "learn.dpo_iterations=2", "learn.dpo.train.batch_size=4"],
}
RL = ["learn.rl.steps=2", "learn.rl.prompts_per_step=8", "learn.rl.group_size=4", "learn.rl.max_new_tokens=38"]


def _run(runs: Path, name: str, sets: list[str]) -> int:
    args = ["run", "addition", "--quiet", "--runs-dir", str(runs), "--name", name]
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
@pytest.mark.parametrize("learner", list(LEARNERS))
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
    if learner in ("distill", "self_evolve"):  # the PRM follows the policy; evaluation keeps the frozen one too
        assert (run / "reward" / "prm_round2" / "model.safetensors").is_file()
        assert state["results"]["round1"]["prm_train_tokens"] > 0
        assert (run / "reward" / "prm" / "model.safetensors").read_bytes() != \
            (run / "reward" / "prm_round1" / "model.safetensors").read_bytes()
        assert set(state["results"]["eval_round1"]["reward_models"]) == {"prm", "prm0"}
        assert set(state["results"]["eval_init"]["reward_models"]) == {"prm"}
    if learner == "self_evolve":
        res = state["results"]["round1"]
        assert res["prm_samples"] == 12 and 0 <= res["verified_share"] <= res["pass@2"] <= 1
        assert res["entropy"] > 0 and "prm_before_auroc" in res and "prm_before_first_error_f1" in res
        assert res["prm_examples"] >= 12  # the samples' steps plus the trees' values
    assert "Learning rounds (" + learner + ")" in (run / "report.html").read_text()


def test_init_checkpoint_errors_name_the_key(tmp_path, capsys):
    assert _run(tmp_path, "a", [f"init.checkpoint={tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err
    assert "init.checkpoint" in err and "nope" in err


def test_distill_needs_a_prm(tmp_path, capsys):
    assert _run(tmp_path, "a", ["learn.learner=distill", "reward.models=[]"]) == 2
    err = capsys.readouterr().err
    assert "distill" in err and "reward.models" in err


# -- learners of one's own ------------------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


@dataclass(frozen=True)
class CountSettings:
    steps: int = 2
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


class CountingLearner(Learner):
    """A toy on-policy learner: SFT on the round's demonstrations, and a count of the rounds it has run
    carried from round to round in the run directory."""

    name, table, Settings = "counting", "options", CountSettings

    def learn(self, policy, cfg, rnd, data=None, stats=None, checkpointing=None):
        s = self.settings(cfg)
        before = rnd.store.previous("count.json")
        count = 1 + (json.loads(before.read_text())["count"] if before is not None else 0)
        rnd.store.path("count.json").write_text(json.dumps({"count": count}))
        pairs = [(p.prompt, rnd.task.demonstration(p)) for p in rnd.problems]
        out = train_sft(policy, pairs, SFTConfig(steps=s.steps, batch_size=4, lr=s.lr, warmup=1), seed=rnd.seed,
                        log=rnd.log, phase=rnd.phase, progress=rnd.progress)
        return {"count": count, "sample_tokens": 0, "train_tokens": out["tokens"], "train_steps": s.steps}


@pytest.fixture
def counting():
    learner = register_learner(CountingLearner())
    yield learner
    LEARNERS.pop("counting", None)


TOY = ["init.demos=200", "init.sft.steps=3", "init.sft.batch_size=8", "learn.learner=counting", "learn.rounds=2"]


def test_a_registered_learner_runs_rounds_and_carries_its_state(tmp_path, counting):
    assert _run(tmp_path, "toy", [*TOY, "learn.options.steps=3"]) == 0
    run = tmp_path / "toy"
    state = json.loads((run / "state.json").read_text())
    assert state["done"][-4:] == ["round1", "eval_round1", "round2", "eval_round2"]
    assert [state["results"][r]["count"] for r in ("round1", "round2")] == [1, 2]  # round 2 read round 1's file
    assert state["results"]["round2"]["train_steps"] == 3
    ckpt = run / "checkpoints"
    assert (ckpt / "round1" / "model.safetensors").read_bytes() != (ckpt / "round2" / "model.safetensors").read_bytes()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["learner"] == "counting"
    assert [p["learning_compute_tokens"] for p in summary["phases"]][1] == state["results"]["round1"]["train_tokens"]


def test_a_learners_options_are_checked_before_any_work(tmp_path, capsys, counting):
    assert _run(tmp_path, "a", [*TOY, "learn.options.speed=3"]) == 2
    assert "unknown key 'learn.options.speed'" in capsys.readouterr().err
    assert _run(tmp_path, "b", [*TOY, "learn.options.steps=0"]) == 2
    err = capsys.readouterr().err
    assert "learn.options" in err and "steps must be >= 1" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_unknown_learner_or_plugin_names_the_key(tmp_path, capsys):
    assert _run(tmp_path, "a", ["learn.learner=nope"]) == 2
    err = capsys.readouterr().err
    assert "learner must be one of" in err and "'nope'" in err and "plugin" in err
    assert _run(tmp_path, "b", ["learn.learner=nope", f"learn.plugin={tmp_path / 'missing.py'}"]) == 2
    err = capsys.readouterr().err
    assert "[learn]" in err and "learner plugin" in err and "no such file" in err


@pytest.mark.slow
def test_the_readme_learner_runs_from_its_plugin_file(tmp_path, init_checkpoint, monkeypatch):
    text = README.read_text()
    section = text[text.index("### Adding a learner"):]
    section = section[: section.index("\n## ", 5)]
    python = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    toml = re.search(r"```toml\n(.*?)```", section, re.DOTALL).group(1)
    (tmp_path / "vote_sft.py").write_text(python)
    assert 'plugin = "vote_sft.py"' in toml and "[learn.options]" in toml
    monkeypatch.chdir(tmp_path)  # the plugin path is relative to the current directory
    try:
        sets = ["learn.learner=vote_sft", "learn.plugin=vote_sft.py", "learn.rounds=2", "learn.options.samples=8",
                "learn.options.steps=3", "learn.options.max_new_tokens=38", "learn.options.temperature=0.3",
                f"init.checkpoint={init_checkpoint}"]
        assert _run(tmp_path, "vote", sets) == 0
    finally:
        LEARNERS.pop("vote_sft", None)
        sys.modules.pop("ponder_plugin_vote_sft", None)
    state = json.loads((tmp_path / "vote" / "state.json").read_text())
    for r in ("round1", "round2"):
        res = state["results"][r]
        assert res["kept"] > 0 and res["train_steps"] == 3 and res["sample_tokens"] > 0, res
    ckpt = tmp_path / "vote" / "checkpoints"
    assert (ckpt / "init" / "model.safetensors").read_bytes() != (ckpt / "round1" / "model.safetensors").read_bytes()
    assert json.loads((tmp_path / "vote" / "summary.json").read_text())["learner"] == "vote_sft"


LEARNER_PACKAGE = '''
from ponder.learn.base import Learner


class Idle(Learner):
    """A learner from an installed package: it trains nothing."""

    name, table = "idle", "options"

    def learn(self, policy, cfg, rnd, data=None, stats=None, checkpointing=None):
        return {"sample_tokens": 0, "train_tokens": 0, "train_steps": 0}
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A package `idle_pkg` whose dist-info declares the entry point it is given."""
    site = tmp_path / "site"
    (site / "idle_pkg").mkdir(parents=True)
    (site / "idle_pkg" / "__init__.py").write_text(LEARNER_PACKAGE)
    info = site / "idle_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: idle-pkg\nVersion: 0.1\n")
    monkeypatch.syspath_prepend(str(site))
    plugins._loaded_groups.discard(GROUP)
    yield lambda entry: (info / "entry_points.txt").write_text(f"[{GROUP}]\n{entry}\n")
    monkeypatch.undo()
    LEARNERS.pop("idle", None)
    sys.modules.pop("idle_pkg", None)
    plugins._loaded_groups.discard(GROUP)


def test_an_installed_learner_is_found_by_its_entry_point(tmp_path, site):
    site("idle = idle_pkg:Idle")
    cfg = load_recipe(None, ["learn.learner=idle"])
    assert type(cfg.learn.learner_object).__module__ == "idle_pkg"
    assert _run(tmp_path, "idle", ["init.demos=200", "init.sft.steps=2", "learn.learner=idle", "learn.rounds=1"]) == 0
    assert json.loads((tmp_path / "idle" / "state.json").read_text())["results"]["round1"]["train_steps"] == 0


def test_a_learner_entry_point_must_carry_the_learners_name(site):
    site("sleepy = idle_pkg:Idle")
    with pytest.raises(ConfigError, match=r"\[learn\] learner entry point 'sleepy'.*its name is 'idle'"):
        load_recipe(None, ["learn.learner=sleepy"])


def test_a_registered_learner_resumed_after_a_crash_ends_as_one_never_stopped(tmp_path, counting, monkeypatch):
    assert _run(tmp_path, "whole", TOY) == 0
    real, calls = CountingLearner.learn, {"n": 0}

    def crash_in_round2(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash in round 2")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CountingLearner, "learn", crash_in_round2)
    with pytest.raises(RuntimeError):
        _run(tmp_path, "crashed", TOY)
    monkeypatch.setattr(CountingLearner, "learn", real)
    assert main(["run", "--quiet", "--resume", str(tmp_path / "crashed")]) == 0
    whole, crashed = (json.loads((tmp_path / n / "state.json").read_text())["results"] for n in ("whole", "crashed"))
    assert crashed["round2"]["count"] == 2  # the resumed round found what round 1 left in the run directory
    assert crashed["eval_round2"]["greedy_per_problem"] == whole["eval_round2"]["greedy_per_problem"]
    for name in ("round1", "round2"):
        a, b = (tmp_path / n / "checkpoints" / name / "model.safetensors" for n in ("whole", "crashed"))
        assert a.read_bytes() == b.read_bytes()
