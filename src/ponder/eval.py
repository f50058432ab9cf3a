"""Evaluation: greedy accuracy, and accuracy versus sampling compute for each selection method.

For N-sample methods the largest N is sampled once per problem and each smaller N uses the first N
samples, so the curve costs one sampling pass and the methods compare on identical candidates.
Each row reports the tokens the method generated (the first N samples of every problem), so
accuracy can be plotted against honest compute.

Methods: `oracle` picks a sample the verifier accepts if there is one (best-of-N with the gold
reward: the upper bound, pass@N); `majority` picks the most frequent extracted answer
(self-consistency). Later reward models add their own best-of-N and weighted-vote rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from tqdm.auto import tqdm

from ponder.policy.base import Policy
from ponder.reward.verifier import VerifierReward
from ponder.search.best_of_n import select_best
from ponder.search.voting import majority_vote
from ponder.signals import check_stop
from ponder.tasks.base import Task
from ponder.types import Cost, Problem, Sample, Sampling


def generate_in_chunks(policy: Policy, prompts: Sequence[str], sampling: Sampling, *, chunk: int = 64,
                       desc: str = "sampling", progress: bool = True) -> list[list[Sample]]:
    """`policy.generate` over `prompts` in fixed-size chunks with a progress bar. The chunk size is
    fixed, so results do not depend on anything but the seed."""
    out: list[list[Sample]] = []
    for i in tqdm(range(0, len(prompts), chunk), desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        check_stop(desc)
        seed = None if sampling.seed is None else sampling.seed + i
        out.extend(policy.generate(prompts[i : i + chunk], Sampling(**{**sampling.__dict__, "seed": seed})))
    return out


def greedy_accuracy(policy: Policy, task: Task, problems: Sequence[Problem], *, max_new_tokens: int,
                    progress: bool = True) -> tuple[float, Cost, list[Sample]]:
    """Fraction of problems whose greedy completion verifies, the cost, and the completions."""
    groups = generate_in_chunks(policy, [p.prompt for p in problems],
                                Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens),
                                chunk=256, desc="greedy", progress=progress)
    samples = [g[0] for g in groups]
    acc = sum(task.verify(p, s.text) for p, s in zip(problems, samples)) / max(len(problems), 1)
    return acc, Cost.total(s.cost for s in samples), samples


def selection_table(problems: Sequence[Problem], groups: Sequence[Sequence[Sample]], task: Task,
                    ns: Sequence[int]) -> list[dict]:
    """Accuracy and generated tokens of each selection method at each N, from shared samples."""
    verifier = VerifierReward(task)
    correct = [verifier.score([p] * len(g), [s.text for s in g]) for p, g in zip(problems, groups)]
    answers = [[task.extract_answer(s.text) for s in g] for g in groups]
    rows = []
    for n in ns:
        tokens = sum(s.cost.tokens_generated for g in groups for s in g[:n])
        flops = sum(s.cost.flops for g in groups for s in g[:n])
        oracle = [c[select_best(c[:n])] for c in correct]
        majority = []
        for c, a in zip(correct, answers):
            i = majority_vote(a[:n])
            majority.append(0.0 if i is None else c[i])
        for method, hits in (("oracle", oracle), ("majority", majority)):
            rows.append({"method": method, "n": n, "accuracy": sum(hits) / max(len(hits), 1),
                         "tokens_generated": tokens, "flops": flops})
    return rows


def evaluate(policy: Policy, task: Task, problems: Sequence[Problem], *, ns: Sequence[int], temperature: float,
             top_p: float, max_new_tokens: int, seed: int, progress: bool = True) -> dict:
    """Greedy accuracy plus the selection table; also returns the samples for the run directory."""
    greedy, greedy_cost, greedy_samples = greedy_accuracy(policy, task, problems, max_new_tokens=max_new_tokens,
                                                          progress=progress)
    sampling = Sampling(n=max(ns), temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    groups = generate_in_chunks(policy, [p.prompt for p in problems], sampling, chunk=max(1, 512 // max(ns)),
                                desc=f"sampling x{max(ns)}", progress=progress)
    return {"greedy_accuracy": greedy, "greedy_tokens": greedy_cost.tokens_generated,
            "search": selection_table(problems, groups, task, ns),
            "greedy_samples": greedy_samples, "samples": groups}
