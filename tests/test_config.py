"""Tests of recipe loading: the built-in recipe, strict keys and types, task options, --set
overrides, the TOML writer's round trip and error messages that name the file and the key."""

from __future__ import annotations

import dataclasses
import re

import pytest

from ponder.config import (
    RECIPE_DIR,
    ConfigError,
    EvalConfig,
    InitConfig,
    PolicyConfig,
    RunConfig,
    apply_overrides,
    build,
    load_recipe,
    parse_override,
    resolve_recipe,
    to_dict,
    to_toml,
)
from ponder.learn.expert_iteration import ExpertIterationConfig
from ponder.policy.transformer import ModelConfig
from ponder.tasks.arithmetic import ArithmeticConfig
from ponder.training import SFTConfig


def recipe(tmp_path, text: str, name: str = "r.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text: str, overrides=None) -> str:
    path = recipe(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_recipe(str(path), overrides)
    msg = str(e.value)
    assert str(path) in msg  # every refusal names the file
    return msg


# -- the built-in recipe -----------------------------------------------------------------------------


def test_default_recipe_loads_with_its_values():
    cfg = load_recipe()
    assert cfg == load_recipe("default") == load_recipe("default.toml")
    assert resolve_recipe(None) == RECIPE_DIR / "default.toml"
    assert cfg.name == "default" and cfg.seed == 0
    assert cfg.task == {"name": "arithmetic", "digits": 3, "op": "+", "styles": ["column"], "misconception": 0.7}
    assert cfg.task_config() == ArithmeticConfig(digits=3, op="+", styles=("column",), misconception=0.7)
    assert cfg.model == ModelConfig(n_layer=4, n_head=4, d_model=128, max_seq_len=96)
    assert cfg.policy == PolicyConfig(dtype="float32", batch_size=512)
    assert cfg.init == InitConfig(demos=20000, sft=SFTConfig(steps=800, batch_size=64, lr=3e-3, warmup=20, decay=0.75))
    assert cfg.eval == EvalConfig(problems=200, n=(1, 4, 16), temperature=0.5, max_new_tokens=64, seed=0)
    assert isinstance(cfg.eval.n, tuple)
    assert (cfg.learn.learner, cfg.learn.rounds, cfg.learn.problems) == ("rloo", 2, 1000)
    assert (cfg.learn.rl.steps, cfg.learn.rl.prompts_per_step, cfg.learn.rl.lr) == (5, 64, 1e-4)


def test_the_addition_recipe_is_the_plain_task_the_learners_and_tests_start_from():
    cfg = load_recipe("addition")
    assert cfg.task == {"name": "arithmetic", "digits": 3, "op": "+", "styles": ["column", "column_ba"]}
    assert cfg.init == InitConfig(demos=20000, sft=SFTConfig(steps=610, batch_size=64, lr=3e-3, warmup=20))
    assert (cfg.learn.learner, cfg.learn.rounds, cfg.learn.problems) == ("expert_iteration", 2, 1000)
    assert cfg.learn.expert_iteration == ExpertIterationConfig(
        samples=4, temperature=1.0, max_new_tokens=64, keep_per_problem=1, epochs=0.0,
        sft=SFTConfig(steps=150, batch_size=64, lr=1e-3, warmup=10))
    assert load_recipe("learn_ei").task == cfg.task and load_recipe("learn_grpo").init == cfg.init


def test_empty_recipe_is_all_defaults(tmp_path):
    assert load_recipe(str(recipe(tmp_path, ""))) == RunConfig()


def test_unknown_recipe_name_lists_builtins():
    with pytest.raises(ConfigError, match=r"no_such_recipe: no such recipe file \(built-in recipes: .*default"):
        load_recipe("no_such_recipe")


def test_toml_syntax_error_names_file(tmp_path):
    msg = error_of(tmp_path, "name = \n[model\n")
    assert "not valid TOML" in msg


# -- unknown keys ------------------------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path):
    msg = error_of(tmp_path, "nmae = 'x'\n")
    assert "unknown key 'nmae'" in msg
    allowed = re.search(r"allowed: (.*)\)", msg).group(1).split(", ")
    assert allowed == [f.name for f in dataclasses.fields(RunConfig)]


def test_unknown_nested_key(tmp_path):
    msg = error_of(tmp_path, "[init.sft]\nstepz = 3\n")
    assert "unknown key 'init.sft.stepz'" in msg
    allowed = re.search(r"allowed: (.*)\)", msg).group(1).split(", ")
    assert allowed == [f.name for f in dataclasses.fields(SFTConfig)]
    assert "steps" in allowed and "warmup" in allowed


def test_unknown_key_in_model_and_expert_iteration(tmp_path):
    assert "unknown key 'model.layers'" in error_of(tmp_path, "[model]\nlayers = 2\n")
    msg = error_of(tmp_path, "[learn.expert_iteration.sft]\nlr_max = 1.0\n")
    assert "unknown key 'learn.expert_iteration.sft.lr_max'" in msg and "min_lr_ratio" in msg


# -- types and ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, key, what", [
    ("[init.sft]\nsteps = '300'\n", "init.sft.steps", "must be an integer"),
    ("[init.sft]\nsteps = true\n", "init.sft.steps", "must be an integer"),
    ("[model]\nn_layer = 2.0\n", "model.n_layer", "must be an integer"),
    ("seed = false\n", "seed", "must be an integer"),
    ("[init.sft]\nlr = true\n", "init.sft.lr", "must be a number"),
    ("[init.sft]\nlr = '1e-3'\n", "init.sft.lr", "must be a number"),
    ("name = 3\n", "name", "must be a string"),
    ("[eval]\nn = 4\n", "eval.n", "must be a list"),
    ("[eval]\nn = [1, 'x']\n", "eval.n[1]", "must be an integer"),
    ("model = 3\n", "model", "must be a table"),
    ("task = 'arithmetic'\n", "task", "must be a table"),
])
def test_wrong_type_names_key(tmp_path, text, key, what):
    msg = error_of(tmp_path, text)
    assert f"{key} {what}" in msg


def test_int_accepted_for_float(tmp_path):
    cfg = load_recipe(str(recipe(tmp_path, "[init.sft]\nlr = 1\n")))
    assert cfg.init.sft.lr == 1.0 and isinstance(cfg.init.sft.lr, float)


@pytest.mark.parametrize("text, where, key", [
    ("[model]\nn_layer = 0\n", "[model]", "n_layer"),
    ("[model]\nd_model = 30\nn_head = 4\n", "[model]", "d_model"),
    ("[init.sft]\nsteps = -1\n", "[init.sft]", "steps"),
    ("[init.sft]\nlr = 0\n", "[init.sft]", "lr"),
    ("[init]\ndemos = 0\n", "[init]", "demos"),
    ("[eval]\nn = [4, 1]\n", "[eval]", "n must be increasing"),
    ("[eval]\nn = [1, 1]\n", "[eval]", "n must be increasing"),
    ("[eval]\ntop_p = 1.5\n", "[eval]", "top_p"),
    ("[eval]\ntemperature = 0\n", "[eval]", "temperature"),
    ("[policy]\ndtype = 'float16'\n", "[policy]", "dtype"),
    ("[learn.expert_iteration]\nsamples = 0\n", "[learn.expert_iteration]", "samples"),
    ("[learn.expert_iteration.sft]\nmin_lr_ratio = 2.0\n", "[learn.expert_iteration.sft]", "min_lr_ratio"),
    ("[learn]\nlearner = \"sgd\"\n", "[learn]", "learner must be one of"),
    ("[learn.rl]\ngroup_size = 1\n", "[learn.rl]", "group_size"),
    ("[learn.ppo]\nlam = 2.0\n", "[learn.ppo]", "lam"),
    ("[learn.dpo]\nsamples = 1\n", "[learn.dpo]", "samples"),
    ("[learn.distill]\nsimulations = 0\n", "[learn.distill]", "simulations"),
    ("[learn.self_evolve]\nsearch = \"bfs\"\n", "[learn.self_evolve]", "search"),
])
def test_out_of_range_names_key(tmp_path, text, where, key):
    msg = error_of(tmp_path, text)
    assert where in msg and key in msg


# -- task options ------------------------------------------------------------------------------------


def test_task_options_validated_against_task_config(tmp_path):
    msg = error_of(tmp_path, "[task]\nname = 'arithmetc'\n")
    assert "task.name" in msg and "unknown task 'arithmetc'" in msg and "arithmetic" in msg and "countdown" in msg
    msg = error_of(tmp_path, "[task]\nname = 'arithmetic'\ndigits = 0\n")
    assert "digits must be in 1..12" in msg and "[task]" in msg
    msg = error_of(tmp_path, "[task]\nname = 'arithmetic'\ndigits = 'three'\n")
    assert "task.digits must be an integer" in msg
    msg = error_of(tmp_path, "[task]\nname = 'arithmetic'\nop = '/'\n")
    assert "op must be one of" in msg
    msg = error_of(tmp_path, "[task]\nname = 'arithmetic'\nnumbers = 4\n")
    assert "unknown key 'task.numbers'" in msg and "allowed: digits, op" in msg
    msg = error_of(tmp_path, "[task]\ndigits = 3\n")
    assert "task.name must name a task" in msg


def test_task_other_than_default(tmp_path):
    cfg = load_recipe(str(recipe(tmp_path, "[task]\nname = 'countdown'\nnumbers = 3\n")))
    assert cfg.task == {"name": "countdown", "numbers": 3}
    assert cfg.task_config().numbers == 3
    msg = error_of(tmp_path, "[task]\nname = 'countdown'\nnumbers = 9\n")
    assert "numbers must be in 2..6" in msg


# -- --set overrides ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, path, value", [
    ("seed=3", ["seed"], 3),
    ("init.sft.lr=1e-3", ["init", "sft", "lr"], 0.001),
    ("eval.temperature=0.5", ["eval", "temperature"], 0.5),
    ("eval.n=[1, 2, 8]", ["eval", "n"], [1, 2, 8]),
    ("name=my_run", ["name"], "my_run"),
    ("name=\"quoted\"", ["name"], "quoted"),
    ("task.op=*", ["task", "op"], "*"),
    ("policy.dtype=bfloat16", ["policy", "dtype"], "bfloat16"),
    ("a.b=true", ["a", "b"], True),
    ("x=a=b", ["x"], "a=b"),
])
def test_parse_override(text, path, value):
    assert parse_override(text) == (path, value)


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1", ".a=1"])
def test_parse_override_bad_form(bad):
    with pytest.raises(ConfigError, match="--set"):
        parse_override(bad)


def test_overrides_apply_and_validate():
    cfg = load_recipe("default", ["seed=5", "init.sft.steps=7", "eval.n=[1, 2]", "name=quick", "task.digits=2"])
    assert cfg.seed == 5 and cfg.init.sft.steps == 7 and cfg.eval.n == (1, 2) and cfg.name == "quick"
    assert cfg.task == {"name": "arithmetic", "digits": 2, "op": "+", "styles": ["column"], "misconception": 0.7}
    assert cfg.init.sft.batch_size == 64  # untouched siblings keep the recipe's values
    with pytest.raises(ConfigError) as e:
        load_recipe("default", ["init.sft.stepz=3"])
    assert "(with --set)" in str(e.value) and "unknown key 'init.sft.stepz'" in str(e.value)
    with pytest.raises(ConfigError, match="init.sft.steps must be an integer, got 'abc'"):
        load_recipe("default", ["init.sft.steps=abc"])
    with pytest.raises(ConfigError, match="'name' is not a table"):
        load_recipe("default", ["name.x=1"])


def test_apply_overrides_creates_tables():
    data = apply_overrides({"seed": 1}, ["init.sft.steps=2", "seed=4"])
    assert data == {"seed": 4, "init": {"sft": {"steps": 2}}}
    assert build(RunConfig, data, "", "x").init.sft.steps == 2


# -- writing TOML ------------------------------------------------------------------------------------


def test_to_toml_round_trip_default(tmp_path):
    cfg = load_recipe()
    path = recipe(tmp_path, to_toml(to_dict(cfg)), "back.toml")
    assert load_recipe(str(path)) == cfg


def test_to_toml_round_trip_unusual_values(tmp_path):
    cfg = load_recipe("addition", [
        'name="we\\"ird \\\\ name\\ttab"', "init.sft.lr=1e-5", "learn.expert_iteration.threshold=0.5",
        "eval.n=[2, 3, 64]", "task.digits=5", "task.op=-", 'task.styles=["column"]', "seed=12345678901", "model.rope_base=1e20",
    ])
    assert cfg.name == 'we"ird \\ name\ttab'
    path = recipe(tmp_path, to_toml(to_dict(cfg)), "back.toml")
    assert load_recipe(str(path)) == cfg


def test_to_toml_round_trip_control_characters(tmp_path):
    """A name the TOML reader accepted (escaped control characters) must survive being written back."""
    cfg = load_recipe(str(recipe(tmp_path, 'name = "a\\rb\\u0001c"\n')))
    assert cfg.name == "a\rb\x01c"
    path = recipe(tmp_path, to_toml(to_dict(cfg)), "back.toml")
    assert load_recipe(str(path)) == cfg


def test_to_dict_and_to_toml_shape():
    d = to_dict(EvalConfig(n=(1, 2)))
    assert d == {"problems": 200, "n": [1, 2], "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 96, "seed": None}
    assert to_toml({"a": 1, "t": {"b": "x", "u": {"c": [1.5, True]}}}) == (
        'a = 1\n\n[t]\nb = "x"\n\n[t.u]\nc = [1.5, true]\n')


def test_extends_starts_from_another_recipe(tmp_path):
    child = recipe(tmp_path, 'extends = "default"\nname = "mine"\n[learn]\nlearner = "grpo"\n[learn.rl]\nsteps = 7\n')
    cfg = load_recipe(str(child))
    base = load_recipe("default")
    assert cfg.name == "mine" and cfg.learn.learner == "grpo" and cfg.learn.rl.steps == 7
    assert cfg.model == base.model and cfg.init == base.init and cfg.learn.rounds == base.learn.rounds
    # a file beside it, by relative path, and a chain of two
    recipe(tmp_path, 'extends = "r.toml"\nseed = 5\n', name="grandchild.toml")
    cfg2 = load_recipe(str(tmp_path / "grandchild.toml"))
    assert cfg2.seed == 5 and cfg2.learn.rl.steps == 7


def test_extends_errors_name_the_file(tmp_path):
    assert "no such recipe" in error_of(tmp_path, 'extends = "nope"\n')
    assert "extends must name a recipe" in error_of(tmp_path, "extends = 3\n")
    assert "cycle" in error_of(tmp_path, 'extends = "r.toml"\n')


def test_old_expert_iteration_table_says_where_it_moved(tmp_path):
    msg = error_of(tmp_path, "[expert_iteration]\nrounds = 1\n")
    assert "unknown key 'expert_iteration'" in msg and "[learn.expert_iteration]" in msg
