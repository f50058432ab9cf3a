"""Partial credit: verifier scores strictly between 0 and 1 flow through every phase, and one setting,
`[task] verified_at`, decides what counts as verified (filters, pairs, hard labels, AUROC, counts)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

import pytest

from ponder.cli import main
from ponder.config import ConfigError, load_recipe
from ponder.learn.expert_iteration import ExpertIterationConfig, sample_round
from ponder.reward.labels import mc_labels
from ponder.reward.metrics import best_of_n_curve
from ponder.reward.pipeline import RewardData, evaluate_reward_models, preference_pairs
from ponder.reward.verifier import VerifierReward
from ponder.tasks import make_task
from ponder.tasks.base import BaseTask, is_verified, verified_at
from ponder.types import Cost, Problem, Sample, Sampling

P = Problem(id="p", prompt="Q: 1+1\n", answer="2")


class Graded(BaseTask):
    """A task whose verifier scores `A: x` by a table: partial credit for near misses."""

    name = "graded"
    SCORES: ClassVar[dict[str, float]] = {"A: 2\n": 1.0, "A: 2.0\n": 0.6, "A: 02\n": 0.3, "A: 3\n": 0.0}

    def verify(self, problem: Problem, text: str) -> float:
        return self.SCORES.get(text, 0.0)


def _sample(text: str) -> Sample:
    return Sample(text=text, token_ids=(1,) * len(text), logprobs=(0.0,) * len(text), finish="eos",
                  cost=Cost(tokens_generated=len(text)))


class FixedPolicy:
    """Returns the same completions for every prompt; one rollout list per call of `generate`."""

    def __init__(self, texts: Sequence[str]):
        self.texts = list(texts)

    def room(self, prompt: str) -> int:
        return 100

    def generate(self, prompts, sampling: Sampling):
        return [[_sample(self.texts[j % len(self.texts)]) for j in range(sampling.n)] for _ in prompts]


def _task(at: float | None = None) -> Graded:
    task = Graded()
    if at is not None:
        task.verified_at = at
    return task


def test_is_verified_defaults_to_full_credit_and_follows_the_task_threshold():
    assert verified_at(_task()) == 1.0 and verified_at(object()) == 1.0
    assert [is_verified(_task(), s) for s in (1.0, 0.99, 0.6, 0.0)] == [True, False, False, False]
    assert [is_verified(_task(0.5), s) for s in (1.0, 0.6, 0.3, 0.0)] == [True, True, False, False]


def test_make_task_sets_the_threshold_and_the_recipe_validates_it(tmp_path):
    assert make_task("arithmetic").verified_at == 1.0
    assert make_task("arithmetic", verified_at=0.5).verified_at == 0.5
    cfg = load_recipe(None, ["task.verified_at=0.5"])
    assert cfg.make_task().verified_at == 0.5 and cfg.task_config().digits == 3
    for bad in ("0", "1.5", "-1", '"high"', "true"):
        with pytest.raises(ConfigError, match=r"task\.verified_at must be a number in \(0, 1\]") as e:
            load_recipe(None, [f"task.verified_at={bad}"])
        assert "\n" not in str(e.value)


def test_preference_pairs_pair_verified_against_the_rest():
    texts = ["A: 2\n", "A: 2.0\n", "A: 02\n", "A: 3\n"]
    task = _task()
    data = RewardData([P] * 4, texts, [task.verify(P, t) for t in texts], [[1.0]] * 4, Cost())
    full = preference_pairs(data, task, seed=0, per_problem=10)
    assert {(x.chosen, x.rejected) for x in full} == {("A: 2\n", t) for t in texts[1:]}
    half = preference_pairs(data, _task(0.5), seed=0, per_problem=10)
    assert {(x.chosen, x.rejected) for x in half} == {(g, b) for g in texts[:2] for b in texts[2:]}
    assert data.verified(task) == 1 and data.verified(_task(0.5)) == 2 and data.verified(_task(0.25)) == 3


def test_mc_labels_soft_average_partial_credit_and_hard_ask_the_threshold():
    policy = FixedPolicy(["2.0\n", "02\n"])  # rollouts from "A: " score 0.6 and 0.3
    sampling = Sampling(max_new_tokens=8, seed=0)
    task = _task()
    task.SCORES = {**Graded.SCORES, "B\n2.0\n": 0.6, "B\n02\n": 0.3, "B\nC\n2.0\n": 0.6, "B\nC\n02\n": 0.3}
    soft, _ = mc_labels(task, policy, [P], ["B\nC\n"], rollouts=2, sampling=sampling)
    assert soft == [[pytest.approx(0.45), pytest.approx(0.45)]]
    hard, _ = mc_labels(task, policy, [P], ["B\nC\n"], rollouts=2, sampling=sampling, hard=True)
    assert hard == [[0.0, 0.0]]  # before: any score above 0 made a step "right"
    task.verified_at = 0.5
    hard, _ = mc_labels(task, policy, [P], ["B\nC\n"], rollouts=2, sampling=sampling, hard=True)
    assert hard == [[1.0, 1.0]]


class _ByLength:
    """A reward model stand-in that prefers longer answers."""

    def score(self, problems, texts):
        return [float(len(t)) for t in texts]


def test_reward_model_metrics_take_partial_credit():
    groups = [[_sample(t) for t in ("A: 2\n", "A: 2.0\n", "A: 02\n", "A: 3\n")]]
    out = evaluate_reward_models({"len": _ByLength()}, _task(), [P], groups, ns=[1, 4])["len"]
    # verified (1.0) vs the rest: "A: 2\n" is the shortest, so a length score ranks it below two of three
    assert out["auroc"] == pytest.approx((0 + 0 + 0.5) / 3)
    assert out["best_of_n"][4] == pytest.approx(0.6)  # picks "A: 2.0\n", worth 0.6
    assert out["best_of_n"][1] == pytest.approx((1.0 + 0.6 + 0.3 + 0.0) / 4)
    with_half = evaluate_reward_models({"len": _ByLength()}, _task(0.5), [P], groups, ns=[1])["len"]
    assert with_half["auroc"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)


def test_best_of_n_curve_takes_scores_in_unit_interval_only():
    assert best_of_n_curve([[2.0, 1.0]], [[0.5, 1.0]], [1, 2]) == {1: pytest.approx(0.75), 2: pytest.approx(0.5)}
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        best_of_n_curve([[2.0]], [[1.5]], [1])


def test_expert_iteration_keeps_what_the_task_counts_as_verified():
    policy = FixedPolicy(["A: 2\n", "A: 2.0\n", "A: 02\n", "A: 3\n"])
    cfg = ExpertIterationConfig(samples=4, max_new_tokens=8, keep_per_problem=4)
    data, stats = sample_round(policy, VerifierReward(_task()), [P], cfg, seed=0, phase="r")
    assert [c for _, c in data] == ["A: 2\n"] and stats["sample_pass_rate"] == 0.25
    data, stats = sample_round(policy, VerifierReward(_task(0.5)), [P], cfg, seed=0, phase="r")
    assert [c for _, c in data] == ["A: 2\n", "A: 2.0\n"] and stats["sample_pass_rate"] == 0.5
    explicit = ExpertIterationConfig(samples=4, max_new_tokens=8, keep_per_problem=4, threshold=0.25)
    data, _ = sample_round(policy, VerifierReward(_task(0.5)), [P], explicit, seed=0, phase="r")
    assert len(data) == 3  # an explicit learner threshold wins over the task's


@pytest.mark.slow
def test_a_partial_credit_task_runs_every_phase(tmp_path, capsys):
    """reasoning-gym's gcd scorer gives partial credit (0.5 for ' 1', 0.33 for '1.0'): a reduced recipe
    with reward models, a search sweep and a learning round runs to its report."""
    recipe = tmp_path / "gcd.toml"
    recipe.write_text("""
name = "gcd"
[task]
name = "gym"
dataset = "gcd"
size = 400
verified_at = 0.5
[model]
n_layer = 2
d_model = 64
max_seq_len = 192
[init]
demos = 300
[init.sft]
steps = 40
batch_size = 32
[eval]
problems = 24
n = [1, 4]
max_new_tokens = 12
[reward]
problems = 16
samples = 4
rollouts = 2
labels = "mc_hard"
max_new_tokens = 12
models = ["prm", "orm"]
[reward.train]
steps = 6
batch_size = 16
[search]
methods = ["greedy", "majority", "best_of_n", "beam"]
problems = 6
majority = [1, 2]
best_of_n = [2]
beam = [2]
max_new_tokens = 12
difficulty_samples = 2
difficulty_bins = 2
[learn]
learner = "expert_iteration"
rounds = 1
problems = 24
[learn.expert_iteration]
samples = 2
max_new_tokens = 12
[learn.expert_iteration.sft]
steps = 4
batch_size = 8
""")
    assert main(["run", "--quiet", str(recipe), "--runs-dir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "gcd" / "summary.json").read_text())
    assert [p["phase"] for p in summary["phases"]] == ["init", "round1"]
    assert set(summary["reward_models"]["init"]) == {"prm", "orm"}
    assert (tmp_path / "gcd" / "report.html").is_file()
