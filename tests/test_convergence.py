"""Init's convergence check: greedy accuracy after 80% of its SFT steps against at the end, kept in the
summary and the report, with a warning when it moved more than 2 points."""

from __future__ import annotations

import json

import pytest
import torch

from ponder.cli import main
from ponder.convergence import CONVERGENCE_POINTS, convergence, convergence_line
from ponder.learn.sft import train_sft
from ponder.policy import ModelConfig, TinyPolicy
from ponder.report import convergence_html
from ponder.training import SFTConfig
from ponder.types import Sampling

EXAMPLES = [(f"Q: {a}+{b}\n", f"A: {a + b}\n") for a in range(6) for b in range(6)]


def _results(at80: float, final: float) -> dict:
    return {"init": {"probe": {"step": 80, "steps": 100, "greedy_accuracy": at80}},
            "eval_init": {"greedy_accuracy": final}}


def test_convergence_measures_the_last_fifth_and_flags_more_than_two_points():
    settled = convergence(_results(0.79, 0.80))
    assert settled == {"steps": [80, 100], "greedy_accuracy": [0.79, 0.80], "moved": pytest.approx(0.01),
                       "settled": True}
    assert convergence(_results(0.78, 0.80))["settled"]  # exactly 2 points is still settled
    moving = convergence(_results(0.17, 0.79))
    assert not moving["settled"] and moving["moved"] == pytest.approx(0.62)
    assert not convergence(_results(0.80, 0.70))["settled"]  # falling counts too
    assert CONVERGENCE_POINTS == 0.02
    assert convergence({"init": {"probe": {"steps": 0}}, "eval_init": {"greedy_accuracy": 0.5}}) is None
    assert convergence({"init": {}, "eval_init": {"greedy_accuracy": 0.5}}) is None


def test_the_line_and_the_report_say_whether_init_settled():
    ok = convergence_line(convergence(_results(0.79, 0.80)))
    assert ok == "[init] greedy 79.0% after 80 SFT steps, 80.0% after 100 (+1.0 points): settled"
    bad = convergence_line(convergence(_results(0.17, 0.79)))
    assert "+62.0 points" in bad and "WARNING still moving" in bad and "init.sft.steps" in bad
    assert "color:#b00" in convergence_html(convergence(_results(0.17, 0.79)))
    assert "color" not in convergence_html(convergence(_results(0.79, 0.80)))
    assert convergence_html(None) == ""


def test_a_probe_runs_once_at_its_step_in_eval_mode_and_leaves_training_unchanged():
    def trained(probes):
        policy = TinyPolicy(ModelConfig(n_layer=1, n_head=2, d_model=32, max_seq_len=32), seed=0, dtype="float32")
        seen = []
        if probes:
            probes = {3: lambda: seen.append((3, policy.model.training,
                                              policy.generate(["Q: 1+2\n"], Sampling(max_new_tokens=6))))}
        out = train_sft(policy, EXAMPLES, SFTConfig(steps=5, batch_size=4, warmup=1), seed=0, progress=False,
                        probes=probes)
        return policy, out, seen

    plain, out_plain, _ = trained(False)
    probed, out_probed, seen = trained(True)
    assert [(s, training) for s, training, _ in seen] == [(3, False)]
    assert out_plain["final_loss"] == out_probed["final_loss"]
    for a, b in zip(plain.model.state_dict().values(), probed.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_a_run_reports_how_far_init_moved(tmp_path, capsys):
    from test_e2e import TINY

    args = ["run", "addition", "--quiet", "--runs-dir", str(tmp_path), "--name", "c"]
    for s in [*TINY, "init.sft.steps=50", "learn.rounds=0", "search.methods=[]", "reward.models=[]"]:
        args += ["--set", s]
    assert main(args) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    conv = summary["init_convergence"]
    assert conv["steps"] == [40, 50]
    assert conv["greedy_accuracy"][1] == summary["phases"][0]["greedy_accuracy"]
    assert conv["moved"] == pytest.approx(conv["greedy_accuracy"][1] - conv["greedy_accuracy"][0])
    assert conv["settled"] == (abs(conv["moved"]) <= 0.02)
    assert "[init] greedy" in capsys.readouterr().err
    assert "Initialization: greedy" in (tmp_path / "c" / "report.html").read_text()


def test_the_seed_aggregate_keeps_how_far_each_seed_moved():
    from ponder.replicate import aggregate

    summaries = [{"seed": s, "phases": [], "init_convergence": convergence(_results(a, b))}
                 for s, (a, b) in enumerate([(0.62, 0.79), (0.60, 0.61), (0.63, 0.64)])]
    agg = aggregate(summaries)
    moved = agg["figures"]["init/moved_last_20pct_steps"]
    assert moved["values"] == pytest.approx([0.17, 0.01, 0.01])
    assert agg["figures"]["init/greedy_at_80pct_steps"]["values"] == pytest.approx([0.62, 0.60, 0.63])


def test_markdown_tables_say_how_far_init_moved():
    from ponder.markdown import multi_seed, single_run
    from ponder.replicate import aggregate

    summary = {"seed": 0, "phases": [], "search": {}, "claims": [], "init_convergence": convergence(_results(0.62, 0.79))}
    assert "Initialization: greedy 62.0% after 80 SFT steps, 79.0% after 100 (+17.0 points): WARNING" in single_run(summary)
    agg = aggregate([{**summary, "seed": s, "init_convergence": convergence(_results(*ab))}
                     for s, ab in enumerate([(0.62, 0.79), (0.60, 0.61)])])
    assert "moved +17.0, +1.0 points over the last 20% of its SFT steps (per seed); 1 of 2 seeds moved more than 2" \
        in multi_seed(agg)
