"""Pre-flight: a recipe whose demonstrations, prompts or generation budgets do not fit the model's
context is refused in one line naming the key and the length needed, before the run directory exists."""

from __future__ import annotations

import pytest

from ponder.cli import main
from ponder.config import RECIPE_DIR, ConfigError, load_recipe
from ponder.preflight import check_context, uses
from ponder.tasks import make_task

SMALL = ["init.demos=50", "eval.problems=10", "reward.problems=10", "search.problems=5", "learn.problems=10"]


def _refusal(overrides: list[str]) -> str:
    cfg = load_recipe("addition", [*SMALL, *overrides])
    with pytest.raises(ConfigError) as e:
        check_context(cfg, cfg.make_task(), source="r.toml")
    assert "\n" not in str(e.value)
    return str(e.value)


def test_the_default_recipe_fits():
    cfg = load_recipe(None)
    check_context(cfg, cfg.make_task(), source="default")


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPE_DIR.glob("*.toml")))
def test_every_bundled_recipe_loads_and_fits(name):
    cfg = load_recipe(name)
    check_context(cfg, cfg.make_task(), source=name, sample=50)  # other backends: nothing to check here


def test_demonstrations_that_do_not_fit_name_the_length_needed():
    # 3-digit column traces: "Q: 347+285\n" + four lines; the longest is well over 40 tokens
    msg = _refusal(["model.max_seq_len=40", "eval.max_new_tokens=8", "reward.max_new_tokens=8",
                    "search.max_new_tokens=8", "learn.expert_iteration.max_new_tokens=8"])
    assert msg.startswith("r.toml: model.max_seq_len = 40 is too short for the arithmetic demonstrations")
    need = int(msg.rsplit(">= ", 1)[1])
    task = make_task("arithmetic")
    longest = max(2 + len(p.prompt) + len(task.demonstration(p)) for p in task.problems("train", 50, 0))
    assert need == longest
    cfg = load_recipe("addition", [*SMALL, f"model.max_seq_len={need}", "eval.max_new_tokens=8", "reward.max_new_tokens=8",
                             "search.max_new_tokens=8", "learn.expert_iteration.max_new_tokens=8"])
    check_context(cfg, cfg.make_task(), source="r.toml")  # exactly enough is enough


def test_a_started_policy_needs_no_room_for_demonstrations():
    msg = _refusal(["model.max_seq_len=40", "init.checkpoint=somewhere", "eval.max_new_tokens=60"])
    assert "demonstrations" not in msg and "eval.max_new_tokens = 60" in msg


@pytest.mark.parametrize(("key", "phase"), [
    ("eval.max_new_tokens", "eval prompts"), ("reward.max_new_tokens", "reward-data prompts"),
    ("search.max_new_tokens", "search prompts"), ("learn.expert_iteration.max_new_tokens", "expert_iteration prompts"),
])
def test_each_generation_budget_is_checked_and_named(key, phase):
    msg = _refusal([f"{key}=90"])  # "Q: 347+285\n" is 11 tokens: 1 + 11 + 90 > 96
    assert f"too short for {key} = 90: the longest of the {phase} takes 11 tokens" in msg
    assert "generating needs 102" in msg and f"lower {key} to 84 or set model.max_seq_len >= 102" in msg


def test_the_learner_in_use_is_the_one_checked():
    msg = _refusal(["learn.learner=\"grpo\"", "learn.rl.max_new_tokens=90"])
    assert "learn.rl.max_new_tokens = 90" in msg and "grpo prompts" in msg
    cfg = load_recipe("addition", ["learn.rl.max_new_tokens=90"])  # expert iteration runs: rl's budget is unused
    assert "learn.rl.max_new_tokens" not in {u.key for u in uses(cfg)}
    check_context(cfg, cfg.make_task(), source="r.toml")


def test_phases_a_recipe_skips_are_not_checked():
    cfg = load_recipe("addition", ["reward.models=[]", "search.methods=[]", "learn.rounds=0", "reward.max_new_tokens=500",
                             "search.max_new_tokens=500", "learn.expert_iteration.max_new_tokens=500"])
    assert [u.key for u in uses(cfg)] == ["eval.max_new_tokens"]
    check_context(cfg, cfg.make_task(), source="r.toml")


def test_text_the_tokenizer_cannot_encode_is_refused_by_name(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "Combien font 2 + 2 ? Réponds.", "answer": "#### 4"}\n' * 1
                    + "".join(f'{{"question": "What is {i} + {i}?", "answer": "#### {2 * i}"}}\n' for i in range(40)))
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[task]\nname = "jsonl"\npath = "{data}"\n[model]\nmax_seq_len = 200\n')
    cfg = load_recipe(str(recipe))
    with pytest.raises(ConfigError, match=r"cannot be used with the built-in character tokenizer: character 'é'"):
        check_context(cfg, cfg.make_task(), source="r.toml")


def test_the_cli_refuses_the_recipe_before_the_run_directory_exists(tmp_path, capsys):
    pytest.importorskip("reasoning_gym")
    recipe = tmp_path / "gcd.toml"
    recipe.write_text('name = "gcd"\n[task]\nname = "gym"\ndataset = "gcd"\n[model]\nmax_seq_len = 96\n')
    assert main(["run", str(recipe), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"ponder: error: {recipe}: model.max_seq_len = 96 is too short for the gym demonstrations")
    assert "set model.max_seq_len >= 119" in err
    assert not (tmp_path / "runs").exists()


def test_other_backends_are_left_to_their_own_checks():
    cfg = load_recipe("smollm2")
    assert cfg.policy.backend == "hf"
    check_context(cfg, None, source="smollm2")  # never touches the task: nothing to measure without the model


def test_a_problem_space_too_small_for_a_phase_is_refused_naming_its_count():
    msg = _refusal(["task.digits=1", "init.demos=200"])  # 1-digit addition has 100 problems, about 90 in train
    assert msg.startswith("r.toml: init.demos = 200: task arithmetic: could only make")
    msg = _refusal(["task.digits=1", "init.demos=20", "eval.problems=50"])  # about 10 in test
    assert msg.startswith("r.toml: eval.problems = 50: task arithmetic: could only make")
