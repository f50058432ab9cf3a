"""What a learner is: the one interface through which `ponder run` drives every learning round.

A learner is an object with a `name` (what `[learn] learner = ...` says), the `[learn.<table>]` that
holds its settings, and two methods:

- `search(policy, cfg, rnd) -> (data, stats)`: for an **offline** learner (`offline = True`), what it
  learns from, made from the current policy (samples kept by the verifier, tree-search traces). The
  run saves `data` (plain JSON-able values) and `stats` before training, so a stopped round resumes
  by training on the same data without searching again. On-policy learners do not implement it.
- `learn(policy, cfg, rnd, data, stats, checkpointing) -> figures`: train the policy in place and
  return the round's figures. Offline learners get what their `search` made and a `Checkpointing`
  (mid-round saves: a stopped round continues from its last save); **on-policy** learners
  (`offline = False`) sample and update in one go, get `data=None`, and a stopped round restarts
  from the previous round's checkpoint with the same seed (so the same result).

Every learner reports the same compute figures, so runs with different learners can be compared at
equal training compute: `sample_tokens` (tokens the policy generated to make training data, search
included) and `train_tokens` (tokens trained on; a token trained in k epochs counts k times), plus
`train_steps`.

What a learner carries from round to round besides the policy (PPO's value head, a PRM it refines)
it keeps in the run directory itself, through `Round.store`: `store.path(name)` is where this round
saves a file or directory, `store.previous(name)` what the latest earlier round saved under that
name (None in the first round), and `store.prm()` / `store.save_prm(model)` read and refine the
run's process reward model (later rounds and evaluations use the newest one).

`ponder.learn.rounds` holds the registry of built-in learners and `register_learner` for new ones;
the README's "Adding a learner" shows a whole one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ponder.tasks.base import Task
from ponder.types import Problem

if TYPE_CHECKING:
    from ponder.learn.rounds import LearnConfig
    from ponder.training import Checkpointing


class RoundStore(Protocol):
    """The run directory as a learner sees it (see the module docstring)."""

    def path(self, name: str) -> Path:
        """Where this round saves what it carries under `name` (a file or a directory)."""
        ...

    def previous(self, name: str) -> Path | None:
        """What the latest earlier round saved under `name`, or None if none did."""
        ...

    def prm(self) -> Any:
        """The run's current process reward model (the newest a round refined, else the reward phase's)."""
        ...

    def save_prm(self, model: Any) -> None:
        """Keep `model` as this round's refined PRM: later rounds and evaluations use it."""
        ...


@dataclass(frozen=True)
class Round:
    """One learning round as the loop hands it to a learner."""

    phase: str
    """The round's phase name (round1, round2, ...)."""
    seed: int
    """The round's seed (from the recipe seed and the phase name)."""
    task: Task
    """The recipe's task."""
    problems: Sequence[Problem]
    """`learn.problems` fresh training problems drawn for this round."""
    reward: Any
    """What scores samples: the task's verifier (spread over Ray workers when the run has them)."""
    store: RoundStore
    """Where the learner keeps what it carries between rounds."""
    log: Callable[[dict], None] | None = None
    """The run's metrics log (one dict a line)."""
    progress: bool = True
    """Whether to show progress bars."""


class Learner:
    """Base of a learner: set the class attributes, implement `learn` (and `search` if offline).

    Subclasses are plain: one level, no hooks to discover. A learner object is stateless (it may be
    shared across runs); what a round carries forward goes through `Round.store`."""

    name: str = ""
    """The name recipes give in `[learn] learner = ...`."""
    table: str = ""
    """The `[learn.<table>]` of its settings (several learners may share one, as the RL family does).
    A learner from outside ponder uses "options": the recipe's free `[learn.options]` table, built
    into its `Settings`."""
    Settings: type | None = None
    """With table "options": the frozen dataclass of its settings (None: the table as a plain dict)."""
    offline: bool = False
    """True: `search` makes data the run keeps, then `learn` trains on it; False: on-policy `learn`."""
    needs_prm: bool = False
    """True: the recipe must train a process reward model (`reward.models` has "prm")."""
    builtin_only: bool = False
    """True: works with the built-in policy only (it needs its weights for a value head or a PRM)."""

    def settings(self, cfg: LearnConfig) -> Any:
        """This learner's settings object, from the recipe's `[learn]`; a ValueError naming the key
        for an unknown or bad one."""
        if self.table != "options":
            return getattr(cfg, self.table)
        options = dict(cfg.options)
        if self.Settings is None:
            return options
        allowed = [f.name for f in dataclasses.fields(self.Settings)]
        for key in options:
            if key not in allowed:
                raise ValueError(f"unknown key 'learn.options.{key}' for learner {self.name!r} "
                                 f"(allowed: {', '.join(allowed)})")
        try:
            return self.Settings(**options)
        except (TypeError, ValueError) as e:
            raise ValueError(f"learn.options (learner {self.name!r}): {e}") from None

    def max_new_tokens(self, cfg: LearnConfig) -> int | None:
        """The generation cap of its samples, if it has one (the pre-flight check measures prompts
        against it)."""
        return getattr(self.settings(cfg), "max_new_tokens", None)

    def search(self, policy, cfg: LearnConfig, rnd: Round) -> tuple[Any, dict]:
        """Offline learners: the data this round learns from, and its stats (logged and kept)."""
        raise NotImplementedError(f"learner {self.name!r} is on-policy: it has no search half")

    def learn(self, policy, cfg: LearnConfig, rnd: Round, data: Any = None, stats: dict | None = None,
              checkpointing: Checkpointing | None = None) -> dict:
        """Train `policy` in place for one round; the round's figures."""
        raise NotImplementedError
