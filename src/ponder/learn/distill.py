"""Search distillation (ReST-MCTS* / AlphaZero style): the policy learns from its own tree search.

One round: run PRM-guided MCTS on fresh training problems, keep the verified traces of each tree (its
answer first, then other finished paths the search visited, most-visited first, up to
`traces_per_tree` distinct ones), and fine-tune the policy on those traces by SFT (the search's
improvement over sampling is what the policy is asked to absorb; ReST-MCTS* likewise keeps every
correct trace its trees reached, not only the chosen one). With `prm_steps` > 0 the process
reward model is also fine-tuned on the trees' backed-up values: every visited node's path gets, per
step, the mean value its node reached in search (ReST-MCTS*'s value targets, softened by visits),
so the PRM that guides the next round's search has seen the current policy's states.

The search half (`search_round`) and the learning half (`train_round`) are separate so that a run
can save what search found and, on resume, retrain without searching again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from ponder.learn.base import Learner, Round
from ponder.learn.sft import train_sft
from ponder.policy.base import Policy
from ponder.reward.model import RewardExample, train_reward_model
from ponder.search.mcts import MCTSConfig, Tree, mcts
from ponder.tasks.base import Task, is_verified
from ponder.training import Checkpointing, SFTConfig, steps_for
from ponder.types import Cost, Problem, Sampling, SearchResult


@dataclass(frozen=True)
class DistillConfig:
    """Settings of search distillation."""

    simulations: int = 16
    """MCTS simulations per problem."""
    expansions: int = 4
    """Candidate next steps sampled per expansion."""
    c_puct: float = 1.0
    """MCTS exploration constant."""
    temperature: float = 0.5
    """Sampling temperature of the expansions."""
    max_new_tokens: int = 64
    """Token cap of one step."""
    traces_per_tree: int = 4
    """Most distinct verified traces kept per tree: the answer, then visited finished paths by visits
    (then Q). More than one gives the SFT more, and more varied, data per search."""
    epochs: float = 0.0
    """Passes over the round's kept traces; a round trains min(sft.steps, epochs * kept / batch)
    steps (0: always sft.steps). On the default task a few hundred traces at epochs = 2 made a round
    of ~11 steps that ended at the peak learning rate and cut greedy accuracy from 79% to 40%."""
    sft: SFTConfig = SFTConfig(steps=150, lr=1e-3, warmup=10)
    """The policy's SFT on the kept traces (`steps` is the most a round trains)."""
    prm_steps: int = 0
    """Also fine-tune the PRM this many steps on the trees' node values (0: the PRM stays as trained)."""
    prm_lr: float = 1e-4
    """Learning rate of that PRM fine-tuning."""
    min_visits: int = 2
    """Nodes visited fewer times give no PRM value target (their mean value is one noisy number)."""
    prefix_cache_mb: float = 256.0
    """Prefix KV cache for the search (policies that have one), so a node's continuation encodes only
    its last step; 0: none."""

    def __post_init__(self) -> None:
        for name in ("simulations", "expansions", "max_new_tokens", "min_visits", "traces_per_tree"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "prm_steps", "c_puct", "prefix_cache_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.temperature > 0 and self.prm_lr > 0):
            raise ValueError(f"temperature and prm_lr must be > 0, got {self.temperature}, {self.prm_lr}")


def verified_traces(tree: Tree, answer: str, task: Task, k: int) -> list[str]:
    """Up to `k` distinct texts the verifier accepts: the search's `answer`, then the tree's visited
    finished nodes, most-visited first (ties: higher Q)."""
    finished = sorted((n for n in tree.nodes() if n.finished and n.visits > 0), key=lambda n: (-n.visits, -n.q))
    return verified_texts(task, tree.problem, [answer] + [n.text for n in finished], k)


def verified_texts(task: Task, problem: Problem, texts: Sequence[str], k: int) -> list[str]:
    """The first `k` distinct `texts`, in order, that the verifier accepts for `problem`."""
    out: list[str] = []
    for text in texts:
        if len(out) == k:
            break
        if text not in out and is_verified(task, task.verify(problem, text)):
            out.append(text)
    return out


def search_round(policy: Policy, prm, task: Task, problems: Sequence[Problem], cfg: DistillConfig, *, seed: int,
                 pair_gap: float | None = None) -> tuple[dict, dict]:
    """The search half: MCTS on `problems`, guided and valued by `prm`. Returns (data, stats): data
    holds the verified answer traces as [prompt, completion] pairs and the trees' value examples (and,
    with `pair_gap`, the trees' step preference pairs as [prompt + prefix, chosen step, rejected step]),
    stats what the search spent and found."""
    sampling = Sampling(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=seed)
    mc = MCTSConfig(simulations=cfg.simulations, expansions=cfg.expansions, c_puct=cfg.c_puct)
    with prefix_cached(policy, cfg.prefix_cache_mb):
        results, trees = mcts(problems, policy, prm, task, config=mc, sampling=sampling)
    traces = [[p.prompt, text] for p, r, tree in zip(problems, results, trees)
              for text in verified_traces(tree, r.text, task, cfg.traces_per_tree)]
    values = [[e.prompt, e.text, list(e.targets)] for t in trees for e in t.value_examples(cfg.min_visits)]
    data, stats = {"traces": traces, "values": values}, search_stats(task, problems, results, traces, values)
    if pair_gap is not None:
        data["pairs"] = [[q.prompt, q.chosen, q.rejected] for t in trees
                         for q in t.preference_pairs(pair_gap, cfg.min_visits)]
        stats["pairs"] = len(data["pairs"])
    return data, stats


@contextmanager
def prefix_cached(policy: Policy, mb: float):
    """A fresh prefix KV cache of `mb` MiB on `policy` while the block runs (policies that have one; 0: none)."""
    cacheable = mb > 0 and hasattr(policy, "set_prefix_cache")
    if cacheable:
        policy.set_prefix_cache(mb)
    try:
        yield
    finally:
        if cacheable:
            policy.set_prefix_cache(0)


def search_stats(task: Task, problems: Sequence[Problem], results: Sequence[SearchResult], traces: Sequence,
                 values: Sequence) -> dict:
    """What a search half spent and found: problems searched, traces kept, the share whose answer verifies,
    value examples, and the search's tokens and FLOPs."""
    cost = Cost.total(r.cost for r in results)
    solved = sum(is_verified(task, task.verify(p, r.text)) for p, r in zip(problems, results))
    return {"searched": len(problems), "kept": len(traces), "search_accuracy": solved / max(len(problems), 1),
            "value_examples": len(values), "sample_tokens": cost.tokens_generated,
            "tokens_encoded": cost.tokens_encoded, "sample_flops": cost.flops}


def train_round(policy: Policy, prm, data: dict, stats: dict, cfg: DistillConfig, *, seed: int, phase: str,
                log: Callable[[dict], None] | None = None, progress: bool = True,
                checkpointing: Checkpointing | None = None) -> dict:
    """The learning half: SFT of the policy on the kept traces, then (with `prm_steps`) the PRM's
    fine-tuning on the value examples, in place. Returns `stats` with the training figures."""
    stats = dict(stats)
    traces = [tuple(t) for t in data["traces"]]
    stats.update(train_steps=0, train_tokens=0, train_loss=float("nan"))
    if traces:
        sft_cfg = replace(cfg.sft, steps=steps_for(cfg.sft, cfg.epochs, len(traces)))
        sft = train_sft(policy, traces, sft_cfg, seed=seed + 1, log=log, phase=phase, progress=progress,
                        checkpointing=checkpointing)
        stats.update(train_steps=sft_cfg.steps, train_tokens=sft["tokens"], train_loss=sft["final_loss"])
    if cfg.prm_steps and data["values"] and prm is not None:
        examples = [RewardExample(prompt=p, text=t, targets=tuple(v)) for p, t, v in data["values"]]
        prm_cfg = SFTConfig(steps=cfg.prm_steps, batch_size=64, lr=cfg.prm_lr, warmup=min(10, cfg.prm_steps),
                            min_lr_ratio=1.0)
        st = train_reward_model(prm, examples, prm_cfg, seed=seed + 2, log=log, phase=f"{phase}_prm",
                                progress=progress)
        stats.update(prm_train_tokens=st["tokens"], prm_loss=st["final_loss"])
        stats["train_tokens"] += st["tokens"]
    return stats


class Distill(Learner):
    """The registry's `distill`: offline, the search half is PRM-guided MCTS. It refines the run's PRM
    when `prm_steps` > 0 and keeps it through the round's store, so the next round searches with it."""

    name = table = "distill"
    offline = True
    needs_prm = True
    builtin_only = True

    def search(self, policy, cfg, rnd: Round) -> tuple[dict, dict]:
        data, stats = search_round(policy, rnd.store.prm(), rnd.task, rnd.problems, self.settings(cfg), seed=rnd.seed)
        return data, {"phase": rnd.phase, **stats}

    def learn(self, policy, cfg, rnd: Round, data=None, stats=None, checkpointing=None) -> dict:
        settings, prm = self.settings(cfg), rnd.store.prm()
        out = train_round(policy, prm, data, stats, settings, seed=rnd.seed, phase=rnd.phase, log=rnd.log,
                          progress=rnd.progress, checkpointing=checkpointing)
        if settings.prm_steps:
            rnd.store.save_prm(prm)
        return out


LEARNER = Distill()
