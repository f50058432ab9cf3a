"""Tasks from outside ponder: the README's own example run through `ponder run` from a plugin file,
an entry point of an installed package, and the errors a user can make with either."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from ponder.cli import main
from ponder.config import ConfigError, load_recipe
from ponder.preflight import check_context
from ponder.tasks import TASKS, plugins, register
from ponder.tasks.base import TaskError
from ponder.tasks.plugins import load_entry_points

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = """
[model]
n_layer = 2
d_model = 64
max_seq_len = 48
[init]
demos = 300
[init.sft]
steps = 40
batch_size = 32
[eval]
problems = 20
n = [1, 4]
max_new_tokens = 24
[reward]
problems = 12
samples = 2
max_new_tokens = 24
[reward.train]
steps = 5
batch_size = 8
[search]
methods = ["greedy", "majority", "beam"]
problems = 6
majority = [1, 2]
beam = [1]
max_new_tokens = 24
difficulty_samples = 2
difficulty_bins = 2
[learn]
learner = "expert_iteration"
rounds = 1
problems = 20
[learn.expert_iteration]
samples = 2
max_new_tokens = 24
[learn.expert_iteration.sft]
steps = 4
batch_size = 8
"""


def _readme_example() -> tuple[str, str]:
    """The Python block and the first TOML block of the README's "Adding a task" section."""
    text = README.read_text()
    section = text[text.index("## Adding a task"):]
    section = section[: section.index("\n## ", 5)]
    python = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    toml = re.search(r"```toml\n(.*?)```", section, re.DOTALL).group(1)
    return python, toml


@pytest.fixture
def forget_doubling():
    yield
    TASKS.pop("doubling", None)
    sys.modules.pop("ponder_plugin_doubling", None)


@pytest.mark.slow
def test_the_readme_example_runs_end_to_end_from_its_file(tmp_path, monkeypatch, capsys, forget_doubling):
    python, toml = _readme_example()
    assert 'plugin = "doubling.py"' in toml and "extends" in toml
    monkeypatch.chdir(tmp_path)  # the plugin path is relative to the current directory, as in the README
    (tmp_path / "doubling.py").write_text(python)
    (tmp_path / "as_written.toml").write_text(toml)
    cfg = load_recipe("as_written.toml")  # the README's recipe as it stands passes the pre-flight check
    check_context(cfg, cfg.make_task(), source="as_written.toml")
    TASKS.pop("doubling")
    sys.modules.pop("ponder_plugin_doubling")
    (tmp_path / "my_recipe.toml").write_text(toml + SMALL)
    assert "doubling" not in TASKS
    assert main(["run", "--quiet", "my_recipe.toml", "--runs-dir", "runs", "--name", "doubling"]) == 0
    summary = json.loads((tmp_path / "runs" / "doubling" / "summary.json").read_text())
    assert [p["phase"] for p in summary["phases"]] == ["init", "round1"]
    assert 0.0 <= summary["phases"][0]["greedy_accuracy"] <= 1.0
    samples = (tmp_path / "runs" / "doubling" / "samples" / "eval_init.jsonl").read_text()
    assert "Q: double" in samples
    # resume re-imports the plugin from the run's own config
    TASKS.pop("doubling")
    sys.modules.pop("ponder_plugin_doubling")
    assert main(["run", "--quiet", "--resume", "runs/doubling"]) == 0


ENTRY_MODULE = '''
"""Tripling, a task from an installed package."""
from dataclasses import dataclass
from ponder.tasks import BaseTask
from ponder.types import Problem


@dataclass(frozen=True)
class TriplingConfig:
    max_value: int = 30


class Tripling(BaseTask):
    name = "tripling"
    Config = TriplingConfig

    def __init__(self, config=None, **kwargs):
        self.config = config or TriplingConfig(**kwargs)

    def make_problem(self, rng):
        x = rng.randint(0, self.config.max_value)
        return str(x), Problem(id=str(x), prompt=f"Q: triple {x}\\n", answer=str(3 * x))
'''


def _install(site: Path, entry: str) -> None:
    """A package `tripling_pkg` with a dist-info declaring `entry` in the ponder.tasks group."""
    (site / "tripling_pkg").mkdir(parents=True)
    (site / "tripling_pkg" / "__init__.py").write_text(ENTRY_MODULE)
    info = site / "tripling_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tripling-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ponder.tasks]\n{entry}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield tmp_path / "site"
    monkeypatch.undo()
    TASKS.pop("tripling", None)
    for m in [m for m in sys.modules if m.startswith("tripling_pkg")]:
        del sys.modules[m]
    load_entry_points(register, force=True)  # forget nothing else: re-read what is really installed


def test_an_installed_entry_point_is_found_by_name(site, tmp_path, capsys):
    _install(site, "tripling = tripling_pkg:Tripling")
    load_entry_points(register, force=True)
    recipe = tmp_path / "r.toml"
    recipe.write_text('[task]\nname = "tripling"\nmax_value = 12\n')
    cfg = load_recipe(str(recipe))
    task = cfg.make_task()
    assert type(task).__module__ == "tripling_pkg" and task.config.max_value == 12
    assert all(int(p.answer) == 3 * int(p.id) <= 36 for p in task.problems("train", 10, 0))
    assert main(["tasks"]) == 0
    assert re.search(r"^tripling\s+Tripling, a task from an installed package\.\s+\[tripling_pkg\]$",
                     capsys.readouterr().out, re.MULTILINE)


def test_an_entry_point_must_carry_the_class_name(site):
    _install(site, "triple = tripling_pkg:Tripling")
    with pytest.raises(TaskError, match="entry point 'triple'.*its name is 'tripling'"):
        load_entry_points(register, force=True)
    with pytest.raises(ConfigError, match=r"task\.name: task entry point 'triple'"):
        plugins._loaded_groups.clear()
        load_recipe(None, ["task.name=nothing"])


def test_plugin_errors_name_the_plugin_and_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.py").write_text("raise RuntimeError('half-written plugin')\n")
    (tmp_path / "empty.py").write_text("x = 1\n")
    cases = {
        "missing.py": r"task\.plugin: task plugin 'missing\.py': no such file \(relative paths are from ",
        "broken.py": r"task\.plugin: task plugin 'broken\.py' failed to import: RuntimeError: half-written plugin",
        "no_such_module_xyz": r"task\.plugin: task plugin 'no_such_module_xyz': no module named 'no_such_module_xyz'",
        "empty.py": r"task\.name: unknown task 'doubling' \(known: arithmetic, countdown",
    }
    for plugin, pattern in cases.items():
        with pytest.raises(ConfigError, match=pattern) as e:
            load_recipe(None, ["task.name=doubling", f"task.plugin={plugin}"])
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"unknown task 'doubling'.*needs \[task\] plugin = "):
        load_recipe(None, ["task.name=doubling"])
    with pytest.raises(ConfigError, match=r"task\.plugin must be a string"):
        load_recipe(None, ["task.plugin=3"])


def test_switching_task_by_set_or_extends_drops_the_other_tasks_settings(tmp_path):
    cfg = load_recipe(None, ["task.name=countdown"])
    assert cfg.task == {"name": "countdown"}
    recipe = tmp_path / "r.toml"
    recipe.write_text('extends = "default"\n[task]\nname = "countdown"\n')
    assert load_recipe(str(recipe)).task == {"name": "countdown"}
    recipe.write_text('extends = "default"\n[task]\ndigits = 2\n')  # the same task: settings still merge
    task = load_recipe(str(recipe)).task
    assert task["digits"] == 2 and task["styles"] == ["column"] and task["misconception"] == 0.7
