"""Tasks from outside ponder: installed packages by entry point, and modules or files a recipe names.

Two ways in, both ending in `register` (the registry recipes name tasks from):

- **An installed package** declares an entry point in the `ponder.tasks` group, for example in its
  `pyproject.toml`:

      [project.entry-points."ponder.tasks"]
      doubling = "my_package.tasks:Doubling"

  `load_entry_points` loads each one the first time a recipe names a task ponder does not know (or
  `ponder tasks` lists them): an object that is a task class is registered under its `name`; a
  module is imported, and registers its tasks itself with `@register`.
- **A module or file of your own**, not packaged: the recipe's `[task]` table names it,
  `plugin = "my_tasks.py"` (a path, relative to the current directory like data files) or
  `plugin = "my_package.tasks"` (an importable module). It is imported before the task name is looked
  up, so its `@register` runs first. A file is imported under the module name `ponder_plugin_<stem>`.

Failures are `TaskError`s that name the plugin: a missing file or module, an import that raises, an
entry point that cannot be loaded.

With Ray workers (`ponder run --workers N`) the task travels to the workers by its module's name, so
a task there must come from an installed package or a module the workers can import (on their
PYTHONPATH); a `plugin` file is imported in the driving process only.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from ponder.tasks.base import TaskError

GROUP = "ponder.tasks"
_loaded_groups: set[str] = set()


def import_plugin(spec: str, kind: str = "task") -> ModuleType:
    """Import a module by dotted name, or a `.py` file by path; the module, once (cached). `kind`
    names what the plugin adds in error messages (task, learner)."""
    if not isinstance(spec, str) or not spec.strip():
        raise TaskError(f"{kind} plugin must name a module or a .py file, got {spec!r}")
    spec = spec.strip()
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise TaskError(f"{kind} plugin {spec!r}: no such file (relative paths are from {Path.cwd()})")
        name = f"ponder_plugin_{path.stem}"
        resolved = str(path.resolve())
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) == resolved:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, resolved)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:  # whatever the plugin raises, name the plugin
            del sys.modules[name]
            raise TaskError(f"{kind} plugin {spec!r} failed to import: {type(e).__name__}: {e}") from e
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name and spec.startswith(e.name):
            raise TaskError(f"{kind} plugin {spec!r}: no module named {e.name!r} (a file needs its .py suffix)") from None
        raise TaskError(f"{kind} plugin {spec!r} failed to import: {type(e).__name__}: {e}") from e
    except Exception as e:
        raise TaskError(f"{kind} plugin {spec!r} failed to import: {type(e).__name__}: {e}") from e


def load_entry_points(register, *, group: str = GROUP, kind: str = "task", force: bool = False) -> None:
    """Register what every installed entry point of `group` declares (once a group, unless `force`): an
    object whose `name` matches the entry point's goes to `register`; a module is only imported (it
    registers its own). `kind` names what the group adds in error messages (task, learner)."""
    if group in _loaded_groups and not force:
        return
    _loaded_groups.add(group)
    for ep in entry_points(group=group):
        try:
            obj = ep.load()
        except Exception as e:  # whatever the plugin raises, name the plugin
            raise TaskError(f"{kind} entry point {ep.name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}"
                            ) from e
        if inspect.ismodule(obj):
            continue
        if getattr(obj, "name", None) != ep.name:
            raise TaskError(f"{kind} entry point {ep.name!r} ({ep.value}): its name is "
                            f"{getattr(obj, 'name', None)!r}; the entry point must carry the same name")
        register(obj)
