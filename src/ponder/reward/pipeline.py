"""Reward design as one pipeline: sample solutions with a policy, label them, train reward models,
and measure them. The run loop's `reward` phase and the `ponder reward` command both call it.

`RewardConfig` (the recipe's `[reward]` table) says which models to train:

- `prm`: a process reward model on step labels (`labels`: Monte-Carlo soft or hard, or gold);
- `orm`: an outcome reward model on the verifier's labels of the same solutions;
- `implicit`: an implicit PRM trained on outcome labels only (log-likelihood ratio to the policy);
- `preference`: a Bradley-Terry model on (verified, failed) pairs of solutions to one problem.

`evaluate_reward_models` reports, per model, the AUROC of its outcome score, ProcessBench-style
first-error F1 against gold step labels where the task has them, and best-of-N accuracy.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ponder.eval import generate_in_chunks, score_groups
from ponder.reward.base import AGGREGATIONS
from ponder.reward.implicit import ImplicitPRM, train_implicit_prm
from ponder.reward.labels import gold_labels, label_examples, label_steps
from ponder.reward.metrics import auroc, best_of_n_curve, first_error_index, predicted_first_error, process_bench_f1
from ponder.reward.model import PreferencePair, RewardModel, train_reward_model
from ponder.reward.pairs import load_pairs_jsonl
from ponder.tasks.base import Task, is_verified, stable_seed
from ponder.training import Checkpointing, SFTConfig
from ponder.types import Cost, Problem, Sample, Sampling

MODELS = ("prm", "orm", "implicit", "preference")
LABELS = ("mc_soft", "mc_hard", "gold")


@dataclass(frozen=True)
class RewardConfig:
    """Which reward models a run trains, on what data."""

    models: tuple[str, ...] = ("prm", "orm")
    """Reward models to train: prm, orm, implicit, preference. Empty: none (the verifier only)."""
    problems: int = 500
    """Training problems whose sampled solutions make the reward models' data."""
    samples: int = 4
    """Solutions sampled per training problem."""
    temperature: float = 1.0
    """Sampling temperature of those solutions (high: more mistakes to learn from)."""
    max_new_tokens: int = 64
    """Generation cap for solutions and rollouts."""
    labels: str = "mc_soft"
    """PRM step labels: mc_soft (fraction of rollouts that verify), mc_hard (any verifies), gold."""
    rollouts: int = 4
    """Monte-Carlo rollouts per step prefix."""
    aggregation: str = "min"
    """How a PRM's step scores make one score: last, min, product, mean."""
    beta: float = 0.1
    """Implicit PRM: scale of the log-likelihood ratio."""
    pairs_file: str = ""
    """Preference model: train on {"prompt", "chosen", "rejected"} lines of this JSONL file instead of
    (verified, failed) pairs of the sampled solutions."""
    likelihood: bool = False
    """PRM and ORM: add the body's own log-likelihood of the solution so far (a learned multiple of it)
    to the head's logit, so the model starts from the policy's confidence and learns what to add."""
    train: SFTConfig = SFTConfig(steps=300, batch_size=64, lr=1e-3, warmup=20)
    """Optimisation of every reward model."""

    def __post_init__(self) -> None:
        bad = [m for m in self.models if m not in MODELS]
        if bad or len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be distinct names from {', '.join(MODELS)}, got {list(self.models)}")
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {self.labels!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}")
        for name in ("problems", "samples", "rollouts", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0 or self.beta <= 0:
            raise ValueError("temperature and beta must be > 0")


@dataclass
class RewardData:
    """Sampled solutions with their outcome and step labels, and what making them cost."""

    problems: list[Problem]
    texts: list[str]
    outcomes: list[float]
    step_labels: list[list[float]]
    cost: Cost

    def verified(self, task: Task) -> int:
        """How many of the solutions count as verified (`is_verified`)."""
        return sum(is_verified(task, y) for y in self.outcomes)

    def to_json(self) -> dict:
        return {"problems": [[p.id, p.prompt, p.answer] for p in self.problems], "texts": self.texts,
                "outcomes": self.outcomes, "step_labels": self.step_labels, "cost": self.cost.as_dict()}

    @classmethod
    def from_json(cls, data: dict, task_problems: dict[str, Problem]) -> RewardData:
        problems = [task_problems.get(pid) or Problem(id=pid, prompt=prompt, answer=answer)
                    for pid, prompt, answer in data["problems"]]
        return cls(problems, list(data["texts"]), list(data["outcomes"]), [list(r) for r in data["step_labels"]],
                   Cost(**data["cost"]))


def collect(policy, task: Task, cfg: RewardConfig, *, seed: int, progress: bool = True) -> RewardData:
    """Sample `cfg.samples` solutions for `cfg.problems` training problems and label every step."""
    problems = task.problems("train", cfg.problems, seed)
    sampling = Sampling(n=cfg.samples, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=seed)
    groups = generate_in_chunks(policy, [p.prompt for p in problems], sampling, desc="reward data", progress=progress)
    flat_p = [p for p, g in zip(problems, groups) for _ in g]
    flat_t = [s.text for g in groups for s in g]
    rollout = Sampling(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=stable_seed(seed, "rollouts"))
    labels, label_cost = label_steps(task, policy, flat_p, flat_t, how=cfg.labels, rollouts=cfg.rollouts,
                                     sampling=rollout, progress=progress)
    cost = Cost.total(s.cost for g in groups for s in g) + label_cost
    outcomes = [task.verify(p, t) for p, t in zip(flat_p, flat_t)]
    return RewardData(flat_p, flat_t, outcomes, labels, cost)


def preference_pairs(data: RewardData, task: Task, *, seed: int, per_problem: int = 4) -> list[PreferencePair]:
    """(verified, failed) pairs of solutions to the same problem, at most `per_problem` each
    (`is_verified` draws the line, so partial credit below the task's threshold counts as failed)."""
    by_problem: dict[str, tuple[Problem, list[str], list[str]]] = {}
    for p, t, y in zip(data.problems, data.texts, data.outcomes):
        entry = by_problem.setdefault(p.id, (p, [], []))
        entry[1 if is_verified(task, y) else 2].append(t)
    rng = random.Random(seed)
    pairs = []
    for p, good, bad in by_problem.values():
        combos = [(g, b) for g in good for b in bad]
        rng.shuffle(combos)
        pairs += [PreferencePair(p.prompt, g, b) for g, b in combos[:per_problem]]
    return pairs


def train_models(policy, task: Task, data: RewardData, cfg: RewardConfig, *, seed: int, out_dir: str | Path,
                 log: Callable[[dict], None] | None = None, progress: bool = True, only: Sequence[str] | None = None
                 ) -> dict[str, dict]:
    """Train each model of `cfg.models` (or `only` those) on `data`, saving it to `out_dir/<name>`."""
    stats: dict[str, dict] = {}
    # no mid-training saves (a stopped run retrains from the kept data), but Ctrl-C / SIGTERM stop it
    stoppable = Checkpointing(save=lambda tensors, meta: None)
    for name in only if only is not None else cfg.models:
        phase = f"reward_{name}"
        model_seed = stable_seed(seed, name)
        if name == "implicit":
            model = ImplicitPRM.from_policy(policy, beta=cfg.beta, aggregation=cfg.aggregation)
            examples = label_examples(task, data.problems, data.texts, data.step_labels, kind="outcome")
            st = train_implicit_prm(model, examples, cfg.train, seed=model_seed, log=log, phase=phase,
                                    progress=progress, checkpointing=stoppable)
        else:
            kind = {"prm": "process", "orm": "outcome", "preference": "preference"}[name]
            model = RewardModel.from_policy(policy, kind=kind, aggregation=cfg.aggregation,
                                            likelihood=cfg.likelihood)
            if name == "preference":
                if cfg.pairs_file:
                    train_data = load_pairs_jsonl(cfg.pairs_file)
                else:
                    train_data = preference_pairs(data, task, seed=model_seed)
                if not train_data:
                    raise ValueError("preference reward model: no problem has both a verified and a failed solution")
            else:
                train_data = label_examples(task, data.problems, data.texts, data.step_labels, kind=kind)
            st = train_reward_model(model, train_data, cfg.train, seed=model_seed, log=log, phase=phase,
                                    progress=progress, checkpointing=stoppable)
        model.save(Path(out_dir) / name)
        stats[name] = {"train_tokens": st["tokens"], "final_loss": st["final_loss"], "examples": len(data.texts)}
    return stats


def load_model(path: str | Path):
    """A trained reward model from its directory, whichever kind it is."""
    path = Path(path)
    if (path / "implicit.json").is_file():
        return ImplicitPRM.load(path)
    return RewardModel.load(path)


def evaluate_reward_models(models: dict[str, object], task: Task, problems: Sequence[Problem],
                           groups: Sequence[Sequence[Sample]], *, ns: Sequence[int]) -> dict[str, dict]:
    """Per model: AUROC of its score for verified vs failed samples (`is_verified`), first-error F1
    against gold step labels (if the task has them; process models only), and best-of-N accuracy (the
    mean verifier score of the pick, partial credit included) at each N."""
    correct = [[task.verify(p, s.text) for s in g] for p, g in zip(problems, groups)]
    flat_p = [p for p, g in zip(problems, groups) for _ in g]
    flat_t = [s.text for g in groups for s in g]
    flat_y = [int(is_verified(task, y)) for row in correct for y in row]
    try:
        gold = [first_error_index(row) for row in gold_labels(task, flat_p, flat_t)]
    except ValueError:
        gold = None
    out: dict[str, dict] = {}
    for name, model in models.items():
        scores = score_groups(model, problems, groups)
        flat_s = [s for row in scores for s in row]
        res: dict = {"auroc": auroc(flat_s, flat_y) if 0 < sum(flat_y) < len(flat_y) else float("nan")}
        if gold is not None and hasattr(model, "step_scores") and getattr(model, "kind", "process") == "process":
            steps = model.step_scores(flat_p, flat_t)
            pred = [predicted_first_error(row) for row in steps]
            res.update({f"first_error_{k}": v for k, v in process_bench_f1(pred, gold).items()})
        res["best_of_n"] = {int(n): acc for n, acc in best_of_n_curve(scores, correct, ns).items()}
        out[name] = res
    return out


