"""Evaluation: greedy accuracy, and accuracy versus sampling compute for each selection method.

For N-sample methods the largest N is sampled once per problem and each smaller N uses the first N
samples, so the curve costs one sampling pass and the methods compare on identical candidates.
Each row reports the tokens the method generated (the first N samples of every problem), so
accuracy can be plotted against honest compute.

Methods: `oracle` picks a sample the verifier accepts if there is one (best-of-N with the gold
reward: the upper bound, pass@N); `majority` picks the most frequent extracted answer
(self-consistency); each trained reward model adds its own best-of-N and weighted-vote rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ponder.policy.base import Policy
from ponder.progress import bar as progress_bar
from ponder.reward.base import OutcomeReward
from ponder.reward.verifier import VerifierReward
from ponder.search.best_of_n import select_best
from ponder.search.voting import majority_vote, weighted_vote
from ponder.signals import check_stop
from ponder.tasks.base import Task
from ponder.types import Cost, Problem, Sample, Sampling


def generate_in_chunks(policy: Policy, prompts: Sequence[str], sampling: Sampling, *, chunk: int = 64,
                       desc: str = "sampling", progress: bool = True) -> list[list[Sample]]:
    """`policy.generate` over `prompts` in fixed-size chunks with a progress bar. The chunk size is
    fixed, so results do not depend on anything but the seed."""
    out: list[list[Sample]] = []
    for i in progress_bar(range(0, len(prompts), chunk), desc=desc, enabled=progress):
        check_stop(desc)
        seed = None if sampling.seed is None else sampling.seed + i
        out.extend(policy.generate(prompts[i : i + chunk], Sampling(**{**sampling.__dict__, "seed": seed})))
    return out


def greedy_scores(policy: Policy, task: Task, problems: Sequence[Problem], *, max_new_tokens: int,
                  progress: bool = True) -> tuple[list[float], Cost, list[Sample]]:
    """Each problem's verifier score of its greedy completion, the cost, and the completions."""
    groups = generate_in_chunks(policy, [p.prompt for p in problems],
                                Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens),
                                chunk=256, desc="greedy", progress=progress)
    samples = [g[0] for g in groups]
    hits = [float(task.verify(p, s.text)) for p, s in zip(problems, samples)]
    return hits, Cost.total(s.cost for s in samples), samples


def greedy_accuracy(policy: Policy, task: Task, problems: Sequence[Problem], *, max_new_tokens: int,
                    progress: bool = True) -> tuple[float, Cost, list[Sample]]:
    """Fraction of problems whose greedy completion verifies, the cost, and the completions."""
    hits, cost, samples = greedy_scores(policy, task, problems, max_new_tokens=max_new_tokens, progress=progress)
    return sum(hits) / max(len(problems), 1), cost, samples


def selection_table(problems: Sequence[Problem], groups: Sequence[Sequence[Sample]], task: Task,
                    ns: Sequence[int], rewards: Mapping[str, OutcomeReward] | None = None) -> list[dict]:
    """Accuracy and generated tokens of each selection method at each N, from shared samples.

    Besides `oracle` and `majority`, each named reward model adds two methods: `<name>` (best-of-N
    by its score) and `<name>_vote` (majority vote weighted by its score). Each row keeps its per-problem
    scores (`per_problem`, in `problems` order), from which intervals and paired differences are drawn."""
    verifier = VerifierReward(task)
    correct = [verifier.score([p] * len(g), [s.text for s in g]) for p, g in zip(problems, groups)]
    answers = [[task.extract_answer(s.text) for s in g] for g in groups]
    scored = {name: score_groups(model, problems, groups) for name, model in (rewards or {}).items()}
    rows = []
    for n in ns:
        tokens = sum(s.cost.tokens_generated for g in groups for s in g[:n])
        flops = sum(s.cost.flops for g in groups for s in g[:n])
        methods = {"oracle": [c[select_best(c[:n])] for c in correct],
                   "majority": [_pick(c, majority_vote(a[:n])) for c, a in zip(correct, answers)]}
        for name, scores in scored.items():
            methods[name] = [c[select_best(s[:n])] for c, s in zip(correct, scores)]
            methods[f"{name}_vote"] = [_pick(c, weighted_vote(a[:n], s[:n])) for c, a, s in zip(correct, answers, scores)]
        for method, hits in methods.items():
            calls = 0 if method in ("oracle", "majority") else n * len(problems)
            rows.append({"method": method, "n": n, "accuracy": sum(hits) / max(len(hits), 1),
                         "tokens_generated": tokens, "flops": flops, "reward_calls": calls,
                         "per_problem": [float(h) for h in hits]})
    return rows


def _pick(correct: Sequence[float], index: int | None) -> float:
    return 0.0 if index is None else correct[index]


def score_groups(model: OutcomeReward, problems: Sequence[Problem], groups: Sequence[Sequence[Sample]]
                 ) -> list[list[float]]:
    """A reward's score of every sample, grouped like `groups`, in one batched call."""
    flat = model.score([p for p, g in zip(problems, groups) for _ in g], [s.text for g in groups for s in g])
    out, i = [], 0
    for g in groups:
        out.append(flat[i : i + len(g)])
        i += len(g)
    return out


def evaluate(policy: Policy, task: Task, problems: Sequence[Problem], *, ns: Sequence[int], temperature: float,
             top_p: float, max_new_tokens: int, seed: int, progress: bool = True,
             rewards: Mapping[str, OutcomeReward] | None = None) -> dict:
    """Greedy accuracy plus the selection table; also returns the samples for the run directory."""
    greedy_hits, greedy_cost, greedy_samples = greedy_scores(policy, task, problems, max_new_tokens=max_new_tokens,
                                                             progress=progress)
    greedy = sum(greedy_hits) / max(len(problems), 1)
    sampling = Sampling(n=max(ns), temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    groups = generate_in_chunks(policy, [p.prompt for p in problems], sampling, chunk=max(1, 512 // max(ns)),
                                desc=f"sampling x{max(ns)}", progress=progress)
    return {"greedy_accuracy": greedy, "greedy_tokens": greedy_cost.tokens_generated, "greedy_per_problem": greedy_hits,
            "search": selection_table(problems, groups, task, ns, rewards),
            "greedy_samples": greedy_samples, "samples": groups}
