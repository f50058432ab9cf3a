"""Behaviour metrics (`ponder.behaviour`): checks and corrections counted on hand-written samples, rates
with intervals in the summary, the report's section and plot, and the loop keeping them per problem."""

from __future__ import annotations

import json

import pytest

from ponder.behaviour import per_problem, summarize
from ponder.cli import main
from ponder.markdown import run_markdown
from ponder.report import write_report
from ponder.stats import ratio_interval
from ponder.tasks import Arithmetic
from ponder.types import Problem, Sample

P245 = Problem(id="245+157", prompt="Q: 245+157\n", answer="402", meta={"a": 245, "b": 157, "op": "+"})
P111 = Problem(id="111+111", prompt="Q: 111+111\n", answer="222", meta={"a": 111, "b": 111, "op": "+"})
FIXED = "5+7+0=12 c1\n4+5+0=9 c0\ncheck 9-4-5=0 no\n4+5+1=10 c1\n2+1+1=4 c0\nA: 402\n"      # right, corrected
BROKE = "5+7+0=12 c1\n4+5+1=10 c1\ncheck 10-4-5=1 no\n4+5+0=9 c0\n2+1+0=3 c0\nA: 392\n"     # wrong, corrected
CHECKED = "5+7+0=12 c1\n4+5+1=10 c1\ncheck 10-4-5=1 ok\n2+1+1=4 c0\nA: 402\n"               # right, checked only
FORGOT = "5+7+0=12 c1\n4+5+0=9 c0\n2+1+0=3 c0\nA: 392\n"                                     # wrong, plain
PLAIN = "1+1+0=2 c0\n1+1+0=2 c0\n1+1+0=2 c0\nA: 222\n"                                       # right, plain


def _sample(text: str, tokens: int) -> Sample:
    return Sample(text=text, token_ids=tuple(range(tokens)), logprobs=(0.0,) * tokens, finish="eos")


def test_rates_of_hand_written_samples():
    task = Arithmetic(check=1.0)
    groups = [[_sample(FIXED, 40), _sample(BROKE, 40), _sample(CHECKED, 30), _sample(FORGOT, 20)],
              [_sample(PLAIN, 16), _sample(PLAIN, 16)]]
    rows = per_problem(task, [P245, P111], groups)
    assert rows["check_rate"] == [0.75, 0.0] and rows["correction_rate"] == [0.5, 0.0]
    assert rows["fixed_per_solution"] == [0.25, 0.0] and rows["broke_per_solution"] == [0.25, 0.0]
    assert rows["tokens_per_solution"] == [32.5, 16.0]
    assert rows["errors"] == [2, 0] and rows["fixed"] == [1, 0]  # FIXED's and FORGOT's forgotten carry
    assert rows["errors_per_solution"] == [0.5, 0.0]
    assert (rows["corrected"], rows["corrected_right"]) == ([2, 0], [1, 0])
    assert (rows["uncorrected"], rows["uncorrected_right"]) == ([2, 2], [1, 2])
    s = summarize(rows, seed=0, label="eval_init/sampled")
    assert s["check_rate"]["mean"] == pytest.approx(0.375) and s["correction_rate"]["n"] == 2
    assert s["accuracy_corrected"]["mean"] == pytest.approx(0.5)    # 1 of the 2 corrected samples is right
    assert s["accuracy_uncorrected"]["mean"] == pytest.approx(0.75)  # 3 of the 4 others
    assert s["errors_fixed"]["mean"] == pytest.approx(0.5) and s["errors_fixed"]["n"] == 2  # 1 of 2 errors
    for v in s.values():
        assert v["lo"] <= v["mean"] <= v["hi"]


def test_ratio_interval_by_hand():
    r = ratio_interval([1, 0, 2, 0], [1, 1, 2, 0], seed=0)
    assert r["mean"] == pytest.approx(0.75) and r["n"] == 4 and 0.0 <= r["lo"] <= 0.75 <= r["hi"] <= 1.0
    assert ratio_interval([0, 0], [0, 0], seed=0)["mean"] is None  # no sample of that kind: no rate
    with pytest.raises(ValueError, match="2 numerators but 1 denominators"):
        ratio_interval([1, 0], [1], seed=0)


def _hand_run(tmp_path, behaviours: bool):
    """A run directory written by hand: init, eval_init and one round, with or without behaviour rows."""
    task = Arithmetic(check=1.0)
    problems = [P245] * 10
    hits = [1.0] * 10
    results = {"init": {"params": 1000, "train_tokens": 10}}
    for phase, group in (("eval_init", [_sample(FORGOT, 20)]), ("eval_round1", [_sample(FIXED, 40)])):
        res = {"greedy_accuracy": 1.0, "greedy_tokens": 10, "greedy_per_problem": hits,
               "search": [{"method": "majority", "n": 1, "accuracy": 1.0, "per_problem": hits}]}
        if behaviours:
            res["behaviours"] = {"greedy": per_problem(task, problems, [group] * 10),
                                 "sampled": per_problem(task, problems, [group * 2] * 10)}
        results[phase] = res
        if phase == "eval_init":
            results["round1"] = {"train_tokens": 5, "sample_tokens": 5}
    run = tmp_path / ("with" if behaviours else "without")
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"results": results, "done": list(results)}))
    (run / "config.json").write_text(json.dumps({"name": "hand", "seed": 0, "task": {"name": "arithmetic"}}))
    return run, write_report(run)


def test_the_summary_and_report_show_behaviours_across_rounds(tmp_path):
    run, summary = _hand_run(tmp_path, behaviours=True)
    b = [p["behaviours"]["sampled"] for p in summary["phases"]]
    assert [x["correction_rate"]["mean"] for x in b] == [0.0, 1.0]
    assert [x["fixed_per_solution"]["mean"] for x in b] == [0.0, 1.0]
    assert b[0]["accuracy_corrected"]["mean"] is None and b[1]["accuracy_corrected"]["mean"] == 1.0
    html = (run / "report.html").read_text()
    assert "Behaviours: checks and corrections" in html and (run / "plots" / "behaviours.png").is_file()
    md = run_markdown(run)
    assert "| eval_round1 |" not in md and "| round1 | sampled | 100.0% [100.0, 100.0] |" in md
    run, summary = _hand_run(tmp_path, behaviours=False)
    assert "behaviours" not in summary["phases"][0]
    assert "Behaviours: checks" not in (run / "report.html").read_text() and "Behaviours" not in run_markdown(run)
    assert not (run / "plots" / "behaviours.png").exists()


def test_the_loop_keeps_behaviours_per_problem_for_every_evaluation(tmp_path):
    args = ["run", "addition", "--quiet", "--runs-dir", str(tmp_path), "--name", "b"]
    for s in ["task.digits=2", 'task.styles=["column"]', "task.check=1.0", "task.misconception=0.5",
              "model.n_layer=1", "model.d_model=32", "model.max_seq_len=80", "init.demos=200", "init.sft.steps=5",
              "init.sft.batch_size=8", "eval.problems=12", "eval.n=[1,2]", "eval.max_new_tokens=60",
              "reward.models=[]", "search.methods=[]", "learn.rounds=0"]:
        args += ["--set", s]
    assert main(args) == 0
    res = json.loads((tmp_path / "b" / "state.json").read_text())["results"]["eval_init"]
    assert set(res["behaviours"]) == {"greedy", "sampled"}
    assert all(len(v) == 12 for v in res["behaviours"]["sampled"].values())
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["phases"][0]["behaviours"]["greedy"]["tokens_per_solution"]["mean"] > 0


def _tiny_args(tmp_path, name: str, *extra: str) -> list[str]:
    args = ["run", "addition", "--quiet", "--runs-dir", str(tmp_path), "--name", name]
    for s in ["task.digits=2", 'task.styles=["column"]', "task.check=1.0", "task.misconception=0.5",
              "model.n_layer=1", "model.d_model=32", "model.max_seq_len=80", "init.demos=200", "init.sft.steps=12",
              "init.sft.batch_size=8", "eval.problems=12", "eval.n=[1,2]", "eval.max_new_tokens=60",
              "reward.models=[]", "search.methods=[]", "learn.rounds=0", *extra]:
        args += ["--set", s]
    return args


def test_a_baseline_policy_trains_on_as_many_tokens_and_is_evaluated_on_the_same_problems(tmp_path):
    assert main(_tiny_args(tmp_path, "b", "init.baseline.check=0.0", "learn.rounds=1",
                           "learn.problems=8", "learn.rl.steps=1", "learn.rl.prompts_per_step=4",
                           "learn.rl.group_size=2", "learn.rl.max_new_tokens=60")) == 0
    run = tmp_path / "b"
    state = json.loads((run / "state.json").read_text())
    assert state["done"] == ["init", "eval_init", "baseline", "round1", "eval_round1"]
    init, base = state["results"]["init"], state["results"]["baseline"]
    # plain demonstrations are shorter, so the baseline takes more steps for about as many tokens
    assert base["steps"] > 12 and base["init_train_tokens"] == init["train_tokens"]
    assert abs(base["train_tokens"] - init["train_tokens"]) / init["train_tokens"] < 0.1
    assert len(base["greedy_per_problem"]) == len(state["results"]["eval_init"]["greedy_per_problem"]) == 12
    assert sum(base["behaviours"]["sampled"]["check_rate"]) == 0  # its teacher never checked
    assert (run / "checkpoints" / "baseline" / "model.safetensors").is_file()
    assert state["last_checkpoint"] == "round1"  # the rounds continued from init, not from the baseline
    summary = json.loads((run / "summary.json").read_text())
    assert summary["baseline"]["settings"] == {"check": 0.0} and summary["baseline"]["majority_n"] == 2
    claims = {c["id"]: c for c in summary["claims"]}
    assert claims["self_correction"]["verdict"] != "not measured"
    assert "majority@2 init - majority@2 baseline (check = 0.0" in claims["self_correction"]["evidence"]
    checked = any(sum(state["results"][p]["behaviours"]["sampled"]["check_rate"]) for p in ("eval_init", "eval_round1"))
    assert (claims["learned_corrections"]["verdict"] != "not measured") == checked  # judged only where checks occur
    assert "Against a baseline policy" in (run / "report.html").read_text()
    md = run_markdown(run)
    assert "| baseline (check = 0.0) |" in md


def test_the_baseline_phase_resumes_without_changing_what_the_rounds_continue_from(tmp_path):
    """A run stopped after its baseline phase resumes into the rounds from init's checkpoint: its
    round-1 weights equal those of a run never stopped."""
    rounds = ["learn.problems=8", "learn.rl.steps=1", "learn.rl.prompts_per_step=4", "learn.rl.group_size=2",
              "learn.rl.max_new_tokens=60"]
    assert main(_tiny_args(tmp_path, "whole", "init.baseline.check=0.0", "learn.rounds=1", *rounds)) == 0
    assert main(_tiny_args(tmp_path, "cut", "init.baseline.check=0.0", *rounds)) == 0  # stops after baseline
    cut = tmp_path / "cut"
    assert json.loads((cut / "state.json").read_text())["last_checkpoint"] == "init"
    toml = (cut / "config.toml").read_text()
    assert toml.count("rounds = 0\n") == 1  # the rest of the recipe, as if the run had been stopped there
    (cut / "config.toml").write_text(toml.replace("rounds = 0\n", "rounds = 1\n"))
    assert main(["run", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    a = (tmp_path / "whole" / "checkpoints" / "round1" / "model.safetensors").read_bytes()
    b = (tmp_path / "cut" / "checkpoints" / "round1" / "model.safetensors").read_bytes()
    assert a == b


@pytest.mark.parametrize("setting, message", [
    ("init.baseline.chek=0.0", "unknown key 'init.baseline.chek'"),
    ("init.baseline.check=2.0", "init.baseline"),
    ("init.baseline.name='countdown'", "remove name and plugin"),
])
def test_a_bad_baseline_setting_is_one_error_naming_the_key(tmp_path, capsys, setting, message):
    assert main(_tiny_args(tmp_path, "bad", setting)) != 0
    err = capsys.readouterr().err
    assert message in err and not (tmp_path / "bad").exists()


def test_the_multi_seed_tables_show_behaviour_rates_over_seeds(tmp_path):
    from ponder.markdown import multi_seed
    from ponder.replicate import aggregate

    _, summary = _hand_run(tmp_path, behaviours=True)
    md = multi_seed(aggregate([summary, summary]))
    assert "Behaviours of the samples at temperature" in md
    assert "| init | 0.0 (0.0-0.0) | 0.0 (0.0-0.0) | 0.000 (0.000-0.000) | 20.0 (20.0-20.0) |" in md  # FORGOT
    assert "| round1 | 100.0 (100.0-100.0) | 100.0 (100.0-100.0) | 1.000 (1.000-1.000) | 40.0 (40.0-40.0) |" in md
    _, plain = _hand_run(tmp_path, behaviours=False)
    assert "Behaviours" not in multi_seed(aggregate([plain, plain]))
    for p in summary["phases"]:  # rates kept, but no solution ever checked (a task without the behaviour)
        for b in p["behaviours"].values():
            for metric in ("check_rate", "correction_rate"):
                b[metric]["mean"] = 0.0
    assert "Behaviours" not in multi_seed(aggregate([summary, summary]))
