"""Self-evolution (ReST-MCTS*, rStar-Math): the policy and its process reward model improve each other.

One round:

1. **Search** with the current PRM on the round's fresh training problems (with `easy_samples`, only on
   those that plain sampling does not solve): PRM-guided MCTS (the trees
   of `ponder.learn.distill`) or step-level beam search (`search = "beam"`). What it kept: the verified
   traces of each problem, up to `traces_per_tree` distinct ones (the search's answer first, then
   other verified finished paths it reached), and for MCTS every visited node's backed-up value.
2. **The policy learns** from those traces by SFT (`sft`, at most `epochs` passes); with MCTS and
   `dpo.train.steps` > 0, then also by DPO on the trees' step preference pairs (at every node, its
   highest-valued child over its lowest when their values differ by at least `pair_gap`; each step
   continues the prompt and its prefix, as Xie et al. 2024 and ReST-MCTS* draw them), the reference
   being the policy after the SFT. Pairs teach the step choice at the branch points where greedy
   decoding goes wrong, which verified traces alone only show by example.
3. **The PRM follows the policy.** The updated policy samples `prm_samples` solutions to
   `prm_problems` other fresh problems; their steps are labelled (`labels`: the task's gold labels or
   Monte-Carlo rollouts of the updated policy). Before it is refitted, the PRM that guided this round
   is judged on those samples, which it has never seen: AUROC of its outcome score and first-error F1
   against gold labels where the task has them. So each round measures how far the policy moved away
   from what its PRM knows. Then the PRM is fine-tuned on them for `prm_steps` steps (plus, with
   `tree_values`, the MCTS nodes' values) and kept in the run, so the next round searches with it and
   every later evaluation scores with it; the evaluation also keeps reporting the reward phase's PRM
   as `prm0`, so a frozen PRM and the co-evolving one compare on the same samples.

Diversity is measured, not assumed: each round reports the updated policy's entropy on its own
samples (nats per token, built-in engine) and its pass@k on the PRM samples (any of k verified). A
narrowing policy shows here first (the Countdown rounds of expert iteration lost 9.5 points of
oracle@16 in three rounds); several traces per tree, a moderate search temperature and few SFT
passes are the knobs that keep it.

The search half (`search`) and the learning half (`learn`) are separate, as for every offline learner:
the run keeps what search found, and a stopped round retrains without searching again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ponder.eval import generate_in_chunks
from ponder.learn.base import Learner, Round
from ponder.learn.distill import DistillConfig, prefix_cached, search_round, search_stats, train_round, verified_texts
from ponder.learn.dpo import DPOConfig, train_dpo
from ponder.learn.scoring import score_completions
from ponder.policy.base import Policy
from ponder.reward.labels import label_examples, label_steps
from ponder.reward.model import PreferencePair, RewardExample, train_reward_model
from ponder.reward.pipeline import evaluate_reward_models
from ponder.search.beam import BeamConfig, beam_search
from ponder.tasks.base import Task, is_verified, stable_seed
from ponder.training import SFTConfig
from ponder.types import Cost, Problem, Sample, Sampling

SEARCHES = ("mcts", "beam")
LABELS = ("gold", "mc_soft", "mc_hard")


@dataclass(frozen=True)
class SelfEvolveConfig:
    """Settings of self-evolution."""

    search: str = "mcts"
    """The round's search: "mcts" (PRM-valued tree search) or "beam" (step-level beam search)."""
    simulations: int = 16
    """MCTS simulations per problem."""
    width: int = 4
    """Beam width."""
    expansions: int = 4
    """Candidate next steps sampled per expansion."""
    c_puct: float = 1.0
    """MCTS exploration constant."""
    temperature: float = 0.7
    """Sampling temperature of the search's expansions and of the PRM samples."""
    max_new_tokens: int = 64
    """Token cap of one step of the search."""
    traces_per_tree: int = 4
    """Most distinct verified traces kept per problem (several keep the policy's diversity)."""
    easy_samples: int = 0
    """Before searching, sample this many plain solutions per problem (at `temperature`); a problem one of
    them solves is easy and is neither searched nor learned from, so the round learns where search found
    what sampling does not (0: search every problem)."""
    epochs: float = 2.0
    """Passes over the round's traces; a round trains min(sft.steps, epochs * kept / batch) steps (0: sft.steps)."""
    sft: SFTConfig = SFTConfig(steps=150, lr=1e-3, warmup=10)
    """The policy's SFT on the kept traces."""
    dpo: DPOConfig = DPOConfig(train=SFTConfig(steps=0, batch_size=32, lr=3e-5, warmup=3, min_lr_ratio=1.0))
    """DPO on the MCTS trees' step pairs after the SFT: `dpo.train.steps` a round (0: none), `beta`,
    `nll_coef`, and the loop's batch size and learning rate (its iterative-DPO keys are not used)."""
    pair_gap: float = 0.2
    """Least difference of value between a node's two children that makes them a preference pair."""
    prm_problems: int = 200
    """Fresh problems the updated policy samples for the PRM's refit (and its judgement); 0: the PRM stays."""
    prm_samples: int = 4
    """Solutions sampled per such problem."""
    prm_max_new_tokens: int = 64
    """Token cap of one such solution (and of a Monte-Carlo rollout)."""
    labels: str = "gold"
    """Step labels of those samples: gold (the task's own), mc_soft or mc_hard (rollouts of the updated policy)."""
    rollouts: int = 2
    """Monte-Carlo rollouts per step prefix (mc labels)."""
    tree_values: bool = False
    """MCTS: also fit the PRM to the trees' backed-up node values (distill's targets)."""
    min_visits: int = 2
    """Nodes visited fewer times give no value target."""
    prm_steps: int = 100
    """PRM fine-tuning steps a round."""
    prm_lr: float = 1e-4
    """Learning rate of that fine-tuning."""
    prefix_cache_mb: float = 256.0
    """Prefix KV cache during search (policies that have one); 0: none."""

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {self.search!r}")
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {self.labels!r}")
        for name in ("simulations", "width", "expansions", "max_new_tokens", "traces_per_tree", "prm_samples",
                     "prm_max_new_tokens", "rollouts", "min_visits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "c_puct", "prefix_cache_mb", "prm_problems", "prm_steps", "easy_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.temperature > 0 and self.prm_lr > 0):
            raise ValueError(f"temperature and prm_lr must be > 0, got {self.temperature}, {self.prm_lr}")
        if not 0 < self.pair_gap <= 1:
            raise ValueError(f"pair_gap must be in (0, 1], got {self.pair_gap}")
        if self.dpo.train.steps and self.search != "mcts":
            raise ValueError(f'dpo.train.steps > 0 needs search = "mcts": {self.search} search keeps no tree to draw '
                             "step preference pairs from")

    def as_distill(self) -> DistillConfig:
        """The same search and SFT as distill's settings (distill never refits the PRM here)."""
        return DistillConfig(simulations=self.simulations, expansions=self.expansions, c_puct=self.c_puct,
                             temperature=self.temperature, max_new_tokens=self.max_new_tokens,
                             traces_per_tree=self.traces_per_tree, epochs=self.epochs, sft=self.sft, prm_steps=0,
                             min_visits=self.min_visits, prefix_cache_mb=self.prefix_cache_mb)


def beam_round(policy: Policy, prm, task: Task, problems: Sequence[Problem], cfg: SelfEvolveConfig, *, seed: int
               ) -> tuple[dict, dict]:
    """The search half with beam search: the verified finished beams of each problem (the chosen one
    first), as distill's `search_round` returns them for MCTS (no value examples)."""
    sampling = Sampling(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=seed)
    beam = BeamConfig(width=cfg.width, expansions=cfg.expansions)
    with prefix_cached(policy, cfg.prefix_cache_mb):
        results = beam_search(problems, policy, prm, task, config=beam, sampling=sampling)
    traces = [[p.prompt, text] for p, r in zip(problems, results)
              for text in verified_texts(task, p, [r.text] + [c.text for c in r.candidates], cfg.traces_per_tree)]
    return {"traces": traces, "values": []}, search_stats(task, problems, results, traces, [])


def search_half(policy: Policy, prm, task: Task, problems: Sequence[Problem], cfg: SelfEvolveConfig, *, seed: int,
                progress: bool = True) -> tuple[dict, dict]:
    """A round's search half: drop the easy problems (with `easy_samples`), then search the rest with `prm`
    (MCTS or beam). Returns (data, stats) as distill's `search_round` does, the easy samples' tokens counted."""
    problems, easy = list(problems), {}
    if cfg.easy_samples:
        problems, easy = hard_problems(policy, task, problems, cfg, seed=seed, progress=progress)
    if cfg.search == "beam":
        data, stats = beam_round(policy, prm, task, problems, cfg, seed=seed)
    else:
        data, stats = search_round(policy, prm, task, problems, cfg.as_distill(), seed=seed,
                                   pair_gap=cfg.pair_gap if cfg.dpo.train.steps else None)
        if not cfg.tree_values:
            data = {**data, "values": []}
    if easy:
        stats = {**stats, **easy, "sample_tokens": stats["sample_tokens"] + easy["easy_sample_tokens"]}
    return data, stats


def hard_problems(policy: Policy, task: Task, problems: Sequence[Problem], cfg: SelfEvolveConfig, *, seed: int,
                  progress: bool = True) -> tuple[list[Problem], dict]:
    """The problems none of `cfg.easy_samples` plain samples solves, and what finding them cost."""
    sampling = Sampling(n=cfg.easy_samples, temperature=cfg.temperature, max_new_tokens=cfg.prm_max_new_tokens,
                        seed=stable_seed(seed, "easy samples"))
    groups = generate_in_chunks(policy, [p.prompt for p in problems], sampling, desc="easy samples",
                                progress=progress)
    hard = [p for p, g in zip(problems, groups) if not any(is_verified(task, task.verify(p, s.text)) for s in g)]
    cost = Cost.total(s.cost for g in groups for s in g)
    return hard, {"easy": len(problems) - len(hard), "easy_sample_tokens": cost.tokens_generated}


def policy_entropy(policy: Policy, problems: Sequence[Problem], groups: Sequence[Sequence[Sample]],
                   chunk: int = 256) -> float | None:
    """Mean entropy of the policy's next-token distribution over the tokens of its own samples (nats per
    token, untempered), or None for a policy that cannot give it (only the built-in engine does)."""
    rows = [(p.prompt, s.text, s.finish == "eos") for p, g in zip(problems, groups) for s in g]
    total, tokens = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(rows), chunk):
            prompts, texts, eos = zip(*rows[i : i + chunk])
            _, mask, ent = score_completions(policy, prompts, texts, eos, entropy=True)
            if ent is None:
                return None
            total += float((ent * mask).sum())
            tokens += float(mask.sum())
    return total / tokens if tokens else None


def follow_policy(policy: Policy, prm, task: Task, cfg: SelfEvolveConfig, data: dict, *, seed: int, phase: str,
                  log=None, progress: bool = True) -> dict:
    """The PRM's half of a round: sample the updated policy on fresh problems, judge the current PRM on
    those samples (it has not seen them), measure the policy's diversity there, then fine-tune the PRM on
    their step labels (and the trees' values). `prm` changes in place; returns the figures."""
    problems = task.problems("train", cfg.prm_problems, stable_seed(seed, "prm problems"))
    sampling = Sampling(n=cfg.prm_samples, temperature=cfg.temperature, max_new_tokens=cfg.prm_max_new_tokens,
                        seed=stable_seed(seed, "prm samples"))
    groups = generate_in_chunks(policy, [p.prompt for p in problems], sampling, desc="prm samples",
                                progress=progress)
    cost = Cost.total(s.cost for g in groups for s in g)
    judged = evaluate_reward_models({"prm": prm}, task, problems, groups, ns=[])["prm"]
    solved = [[is_verified(task, task.verify(p, s.text)) for s in g] for p, g in zip(problems, groups)]
    out = {"prm_before_auroc": judged["auroc"], "prm_samples": sum(map(len, groups)),
           "prm_sample_tokens": cost.tokens_generated,
           "verified_share": sum(map(sum, solved)) / max(sum(map(len, solved)), 1),
           f"pass@{cfg.prm_samples}": sum(map(any, solved)) / max(len(solved), 1),
           "entropy": policy_entropy(policy, problems, groups)}
    if "first_error_f1" in judged:
        out["prm_before_first_error_f1"] = judged["first_error_f1"]
    flat_p = [p for p, g in zip(problems, groups) for _ in g]
    flat_t = [s.text for g in groups for s in g]
    rollout = Sampling(temperature=cfg.temperature, max_new_tokens=cfg.prm_max_new_tokens,
                       seed=stable_seed(seed, "prm rollouts"))
    labels, label_cost = label_steps(task, policy, flat_p, flat_t, how=cfg.labels, rollouts=cfg.rollouts,
                                     sampling=rollout, progress=progress)
    if label_cost.tokens_generated:
        out["prm_label_tokens"] = label_cost.tokens_generated
    examples = label_examples(task, flat_p, flat_t, labels, kind="process")
    if cfg.tree_values:
        examples += [RewardExample(prompt=p, text=t, targets=tuple(v)) for p, t, v in data.get("values", [])]
    if cfg.prm_steps and examples:
        train = SFTConfig(steps=cfg.prm_steps, batch_size=64, lr=cfg.prm_lr, warmup=min(10, cfg.prm_steps),
                          min_lr_ratio=1.0)
        st = train_reward_model(prm, examples, train, seed=stable_seed(seed, "prm train"), log=log,
                                phase=f"{phase}_prm", progress=progress)
        out.update(prm_examples=len(examples), prm_train_tokens=st["tokens"], prm_loss=st["final_loss"])
    return out


def step_dpo(policy: Policy, cfg: SelfEvolveConfig, data: dict, *, seed: int, phase: str, log=None,
             progress: bool = True) -> dict:
    """DPO of `policy` in place on the round's step pairs (`data["pairs"]`), each step continuing its prompt and
    prefix (no EOS), against the policy as it is now; the figures, or {} when the round trains no DPO."""
    pairs = [PreferencePair(prompt=p, chosen=c, rejected=r) for p, c, r in data.get("pairs", [])]
    if not (cfg.dpo.train.steps and pairs):
        return {"dpo_pairs": len(pairs)} if cfg.dpo.train.steps else {}
    out = train_dpo(policy, pairs, cfg.dpo, seed=stable_seed(seed, "step dpo"), eos=False, log=log,
                    progress=progress, phase=f"{phase}_dpo")
    return {"dpo_pairs": len(pairs), "dpo_steps": out["steps"], "dpo_train_tokens": out["tokens"],
            "dpo_loss": out["final_loss"], "dpo_reward_accuracy": out.get("reward_accuracy"),
            "dpo_margin": out.get("margin")}


class SelfEvolve(Learner):
    """The registry's `self_evolve`: offline; PRM-guided search makes the data, and the PRM follows the policy."""

    name = table = "self_evolve"
    offline = True
    needs_prm = True
    builtin_only = True

    def max_new_tokens(self, cfg) -> int:
        settings = self.settings(cfg)
        return max(settings.max_new_tokens, settings.prm_max_new_tokens if settings.prm_problems else 0)

    def search(self, policy, cfg, rnd: Round) -> tuple[dict, dict]:
        settings = self.settings(cfg)
        data, stats = search_half(policy, rnd.store.prm(), rnd.task, rnd.problems, settings, seed=rnd.seed,
                                  progress=rnd.progress)
        return data, {"phase": rnd.phase, "search": settings.search, **stats}

    def learn(self, policy, cfg, rnd: Round, data=None, stats=None, checkpointing=None) -> dict:
        settings, prm = self.settings(cfg), rnd.store.prm()
        out = train_round(policy, None, data, stats, settings.as_distill(), seed=rnd.seed, phase=rnd.phase,
                          log=rnd.log, progress=rnd.progress, checkpointing=checkpointing)
        out.update(step_dpo(policy, settings, data, seed=rnd.seed, phase=rnd.phase, log=rnd.log, progress=rnd.progress))
        out["train_tokens"] += out.get("dpo_train_tokens", 0)
        if settings.prm_problems:
            follow = follow_policy(policy, prm, rnd.task, settings, data, seed=rnd.seed, phase=rnd.phase,
                                   log=rnd.log, progress=rnd.progress)
            out.update(follow)
            out["train_tokens"] += follow.get("prm_train_tokens", 0)
            out["sample_tokens"] += follow["prm_sample_tokens"] + follow.get("prm_label_tokens", 0)
            if settings.prm_steps:
                rnd.store.save_prm(prm)
        return out


LEARNER = SelfEvolve()

