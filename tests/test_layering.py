"""The package's floors: lower folders never import higher ones, and the loop names no learner.

The data flows task -> policy -> reward -> search -> learn -> loop (DESIGN.md); a module may import
its own floor and the ones below. The optimisation loop (`ponder.training`) sits below reward and
learn, so reward models train without importing the learners."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ponder.learn.rounds import LEARNERS

SRC = Path(__file__).resolve().parents[1] / "src" / "ponder"
ABOVE = {  # floor -> packages it must not import
    "tasks": ("ponder.policy", "ponder.reward", "ponder.search", "ponder.learn", "ponder.loop"),
    "reward": ("ponder.search", "ponder.learn", "ponder.loop"),
    "search": ("ponder.learn", "ponder.loop"),
    "learn": ("ponder.loop", "ponder.cli"),
}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("floor", list(ABOVE))
def test_no_floor_imports_a_higher_one(floor):
    bad = [f"{path.relative_to(SRC)} imports {mod}" for path in sorted((SRC / floor).rglob("*.py"))
           for mod in sorted(_imports(path)) if mod.startswith(ABOVE[floor])]
    assert not bad, bad


def test_the_training_loop_imports_no_model_or_learner():
    assert not [m for m in _imports(SRC / "training.py") if m.startswith(("ponder.reward", "ponder.learn",
                                                                           "ponder.policy"))]


@pytest.mark.parametrize("module", ["loop.py", "learn/rounds.py", "config.py", "preflight.py"])
def test_the_modules_that_drive_learners_name_none(module):
    """A learner's name appears only in its own file and the registry's list, never in a branch."""
    tree = ast.parse((SRC / module).read_text())
    compared = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Compare)
                and any(isinstance(c, ast.Constant) and c.value in LEARNERS for c in [node.left, *node.comparators])]
    assert not compared, compared
