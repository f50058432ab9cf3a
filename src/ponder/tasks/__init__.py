"""Built-in tasks and the registry that recipes name them by.

A recipe's `[task]` table names a task (`name = "arithmetic"`) and sets the fields of that task's
`Config` dataclass; `make_task` builds it. To add a task, write a class with the `Task` methods
(subclass `BaseTask` for the shared parts), give it a frozen `Config` dataclass, and `register` it;
`ponder.tasks.plugins` says how a recipe reaches a task defined outside ponder (an entry point of an
installed package, or `[task] plugin = "file.py"`).
"""

from __future__ import annotations

from ponder.tasks.arithmetic import Arithmetic, ArithmeticConfig
from ponder.tasks.base import BaseTask, Task, TaskError, is_verified, join_steps, split_steps
from ponder.tasks.countdown import Countdown, CountdownConfig
from ponder.tasks.gym import GymConfig, ReasoningGymTask
from ponder.tasks.humaneval import HumanEval, HumanEvalConfig
from ponder.tasks.jsonl import JsonlConfig, JsonlTask
from ponder.tasks.plugins import import_plugin, load_entry_points

TASKS: dict[str, type] = {}


def register(cls: type) -> type:
    """Make a task class available to recipes under `cls.name`. Usable as a decorator."""
    TASKS[cls.name] = cls
    return cls


register(Arithmetic)
register(Countdown)
register(JsonlTask)
register(ReasoningGymTask)
register(HumanEval)


def task_class(name: str, plugin: str | None = None) -> type:
    """The task class a recipe names: after importing its `plugin` (if any), from the registry, or
    failing that from the installed `ponder.tasks` entry points. TaskError lists the known names."""
    if plugin:
        import_plugin(plugin)
    if name not in TASKS:
        load_entry_points(register)
    if name not in TASKS:
        hint = "" if plugin else "; a task of your own needs [task] plugin = \"its_module.py\" or an entry point"
        raise TaskError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))}){hint}")
    return TASKS[name]


def make_task(name: str, config: object | None = None, *, verified_at: float | None = None) -> Task:
    """Build a registered task from its (already validated) config object. `verified_at`, where
    given, sets the score at or above which a solution counts as verified (`is_verified`)."""
    cls = task_class(name)
    task = cls(config) if config is not None else cls()
    if verified_at is not None:
        task.verified_at = float(verified_at)
    return task


__all__ = [
    "TASKS",
    "Arithmetic",
    "ArithmeticConfig",
    "BaseTask",
    "Task",
    "TaskError",
    "is_verified",
    "join_steps",
    "make_task",
    "register",
    "split_steps",
    "task_class",
]
__all__ += ["Countdown", "CountdownConfig", "GymConfig", "JsonlConfig", "JsonlTask", "ReasoningGymTask"]
__all__ += ["HumanEval", "HumanEvalConfig"]
