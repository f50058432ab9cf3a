"""The recipe's `[learn]` table and the registry of learners it names.

`ponder run` iterates rounds of: draw `problems` fresh training problems, let the learner make its
training data from the current policy (sampling, tree search or on-policy rollouts) and learn from
it, then evaluate. How the loop drives a learner, and what a learner must provide, is in
`ponder.learn.base`; this module only maps names to learner objects:

- built in: expert_iteration, distill and self_evolve (offline: a search half the run keeps, then SFT
  with mid-round checkpoints), reinforce, rloo, grpo, dr_grpo, ppo and dpo (on-policy);
- added: `register_learner(obj)` from any module, which a recipe can import before its learner is
  looked up with `[learn] plugin = "my_learner.py"` (a file, relative to the current directory) or
  `"my_package.learners"` (a module); or an installed package's entry point in the `ponder.learners`
  group (a Learner object or class, whose `name` the entry point carries), loaded the first time a
  recipe names a learner ponder does not know.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from ponder.learn import distill, dpo, expert_iteration, ppo, rl, self_evolve
from ponder.learn.base import Learner
from ponder.learn.distill import DistillConfig
from ponder.learn.dpo import DPOConfig
from ponder.learn.expert_iteration import ExpertIterationConfig
from ponder.learn.ppo import PPOConfig
from ponder.learn.rl import RLConfig
from ponder.learn.self_evolve import SelfEvolveConfig
from ponder.tasks.base import TaskError
from ponder.tasks.plugins import import_plugin, load_entry_points

GROUP = "ponder.learners"
"""The entry-point group through which installed packages declare learners."""
LEARNERS: dict[str, Learner] = {}
"""Every learner a recipe can name, by name (the built-in ones first, in the order of the docs)."""


def register_learner(learner: Learner) -> Learner:
    """Add `learner` to the registry under its `name` (replacing one of the same name); returns it."""
    if not isinstance(learner, Learner) or not learner.name or not isinstance(learner.name, str):
        raise TypeError(f"register_learner takes a Learner object with a name, got {learner!r}")
    if not learner.table:
        raise TypeError(f"learner {learner.name!r} names no settings table (`table`)")
    LEARNERS[learner.name] = learner
    return learner


for _learner in (expert_iteration.LEARNER, distill.LEARNER, self_evolve.LEARNER, *rl.LEARNERS, ppo.LEARNER, dpo.LEARNER):
    register_learner(_learner)


def _register_entry(obj) -> None:
    register_learner(obj() if inspect.isclass(obj) else obj)


def get_learner(name: str) -> Learner:
    """The registered learner `name` (installed packages' `ponder.learners` entry points are loaded the
    first time a name is unknown); a ValueError listing the known ones if there is none."""
    if name not in LEARNERS:
        load_entry_points(_register_entry, group=GROUP, kind="learner")
    try:
        return LEARNERS[name]
    except KeyError:
        raise ValueError(f"learner must be one of {', '.join(LEARNERS)}, got {name!r} (a learner of your own: "
                         "register it, and name its module or file in [learn] plugin)") from None


@dataclass(frozen=True)
class LearnConfig:
    """Learning rounds after initialization: which learner, how many rounds, on how many problems."""

    learner: str = "expert_iteration"
    """expert_iteration (sample, keep verified, SFT), distill (MCTS with the PRM, SFT on verified traces),
    self_evolve (search with the PRM, SFT on verified traces, then the PRM refitted on the new policy's samples),
    reinforce, rloo, grpo, dr_grpo (policy gradient; they differ only in the advantage), ppo, dpo
    (iterative DPO on best-versus-worst sampled pairs), or one a `plugin` registers."""
    rounds: int = 2
    """Learn-then-evaluate rounds."""
    problems: int = 1000
    """Fresh training problems drawn per round (the pool on-policy learners draw their batches from)."""
    expert_iteration: ExpertIterationConfig = ExpertIterationConfig()
    """Settings of learner expert_iteration."""
    distill: DistillConfig = DistillConfig()
    """Settings of learner distill (needs "prm" in reward.models)."""
    self_evolve: SelfEvolveConfig = SelfEvolveConfig()
    """Settings of learner self_evolve (needs "prm" in reward.models)."""
    rl: RLConfig = RLConfig(steps=40, prompts_per_step=32, group_size=8, temperature=0.7, max_new_tokens=64,
                            lr=1e-4)
    """Settings of learners reinforce, rloo, grpo and dr_grpo, per round (`advantage` is set by `learner`)."""
    ppo: PPOConfig = PPOConfig(steps=15, prompts_per_step=64, samples_per_prompt=8, temperature=0.7,
                               max_new_tokens=64, lr=1e-4, warmup=5, epochs_per_batch=2, kl_coef=0.02,
                               value_warmup=5, value_epochs=2, lam=1.0)
    """Settings of learner ppo, per round."""
    dpo: DPOConfig = DPOConfig(max_new_tokens=64, temperature=0.7)
    """Settings of learner dpo."""
    dpo_iterations: int = 10
    """dpo: sample-pair-train iterations per round."""

    options: dict[str, Any] = field(default_factory=dict)
    """Settings of a learner from outside ponder (`table = "options"`): a free table its `Settings` reads."""
    plugin: str = ""
    """A module (`my_package.learners`) or .py file (relative to the current directory) to import before
    the learner is looked up: where a learner of your own calls `register_learner`."""

    def __post_init__(self) -> None:
        if self.plugin:
            try:
                import_plugin(self.plugin, kind="learner")
            except TaskError as e:
                raise ValueError(f"plugin: {e}") from None
        learner = get_learner(self.learner)
        if not hasattr(self, learner.table):
            raise ValueError(f"learner {learner.name!r} reads its settings from [learn.{learner.table}], which "
                             "ponder does not have (a learner of your own: table = \"options\")")
        learner.settings(self)  # a bad [learn.options] is refused now, naming its key
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        if self.problems < 1 or self.dpo_iterations < 1:
            raise ValueError(f"problems and dpo_iterations must be >= 1, got {self.problems}, {self.dpo_iterations}")

    @property
    def learner_object(self) -> Learner:
        """The registered learner this table names."""
        return get_learner(self.learner)
