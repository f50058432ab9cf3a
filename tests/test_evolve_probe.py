"""tools/evolve_probe.py runs self-evolution rounds (or the demonstration control) from a saved policy and PRM."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import make_tiny_policy

from ponder.learn.self_evolve import SelfEvolveConfig
from ponder.reward.model import RewardModel

_spec = importlib.util.spec_from_file_location("evolve_probe", Path(__file__).parents[1] / "tools" / "evolve_probe.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)

RECIPE = """
name = "probe"
[task]
name = "arithmetic"
digits = 2
[eval]
problems = 5
[learn]
problems = 6
[learn.self_evolve]
simulations = 2
max_new_tokens = 8
prm_problems = 3
prm_samples = 2
prm_max_new_tokens = 16
prm_steps = 2
[learn.self_evolve.sft]
steps = 2
batch_size = 4
"""


def test_settings_take_top_level_and_sft_keys_and_name_a_bad_one():
    cfg = probe.settings(SelfEvolveConfig(), ["traces_per_tree=1", "sft.lr=3e-4", "tree_values=true"])
    assert cfg.traces_per_tree == 1 and cfg.sft.lr == 3e-4 and cfg.tree_values is True
    with pytest.raises(ValueError, match="trace_per_tree"):
        probe.settings(SelfEvolveConfig(), ["trace_per_tree=1"])
    # nested tables at any depth; top-level keys apply first, so DPO's check sees search = "mcts"
    beam = SelfEvolveConfig(search="beam")
    cfg = probe.settings(beam, ["dpo.train.steps=7", "dpo.beta=0.2", "search=mcts"])
    assert cfg.search == "mcts" and cfg.dpo.train.steps == 7 and cfg.dpo.beta == 0.2 and cfg.sft == beam.sft
    with pytest.raises(ValueError, match="dpo is a table"):
        probe.settings(beam, ["dpo=1"])
    with pytest.raises(ValueError, match="beta is not a table"):
        probe.settings(beam, ["dpo.beta.x=1"])


def test_rounds_and_the_control_print_their_figures(tmp_path, capsys):
    policy = make_tiny_policy()
    policy.save(tmp_path / "policy")
    RewardModel.from_policy(policy, kind="process").save(tmp_path / "prm")
    (tmp_path / "r.toml").write_text(RECIPE)
    args = [str(tmp_path / "policy"), str(tmp_path / "prm"), "--recipe", str(tmp_path / "r.toml")]
    probe.main([*args, "--rounds", "1", "--set", "traces_per_tree=2", "--set", "dpo.train.steps=2",
                "--set", "pair_gap=0.01", "--set", "min_visits=1"])
    lines = capsys.readouterr().out.splitlines()
    assert [x.split(":")[0] for x in lines] == ["init", "round 1", "after round 1"]
    assert "searched 6 kept" in lines[1] and "prm_before_auroc" in lines[1] and "dpo_pairs" in lines[1]
    assert "prm_vote@16" in lines[2] and "prm0_vote@16" in lines[2] and "oracle@16" in lines[2]
    probe.main([*args, "--control-demos"])
    assert capsys.readouterr().out.splitlines()[1].startswith("after 2 SFT steps on demonstrations: greedy")
