"""The over-optimisation experiment: best-of-N chosen by a proxy reward model, scored by the verifier.

A proxy process reward model trained on little data is a flawed stand-in for the verifier (the gold
reward). Choosing the best of N samples by the proxy first helps, then, as N grows and the search
finds more samples the proxy over-rates, can help less or even hurt ("Scaling Laws for Reward Model
Overoptimization"; "Reward Model Ensembles Help Mitigate Overoptimization"). This module trains
`members` proxies, each on its own bootstrap resample of a small labelled set and its own seed, and
reports for each N the verifier's accuracy of the sample chosen by: one proxy, the ensemble's mean,
its worst case (WCO) and its uncertainty-weighted score (UWO); beside the oracle (pass@N) and the
proxy's own mean score of what it chose (which keeps rising when gold accuracy does not).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ponder.eval import score_groups
from ponder.reward.ensemble import ensemble_scores
from ponder.reward.labels import label_examples
from ponder.reward.metrics import best_of_n_curve
from ponder.reward.model import RewardModel, train_reward_model
from ponder.reward.pipeline import RewardConfig, RewardData, collect
from ponder.tasks.base import Task, stable_seed
from ponder.types import Problem, Sample

RULES = ("mean", "wco", "uwo")


def train_proxies(policy, task: Task, data: RewardData, cfg: RewardConfig, *, members: int, seed: int,
                  progress: bool = True) -> list[RewardModel]:
    """`members` process reward models, each on a bootstrap resample of `data` with its own seed."""
    examples = label_examples(task, data.problems, data.texts, data.step_labels, kind="process")
    proxies = []
    for m in range(members):
        rng = random.Random(stable_seed(seed, "bootstrap", m))
        sample = [examples[rng.randrange(len(examples))] for _ in examples] if members > 1 else examples
        rm = RewardModel.from_policy(policy, kind="process", aggregation=cfg.aggregation, likelihood=cfg.likelihood)
        train_reward_model(rm, sample, cfg.train, seed=stable_seed(seed, "proxy", m), phase=f"proxy{m}",
                           progress=progress)
        proxies.append(rm)
    return proxies


def expected_max(scores: Sequence[float], n: int) -> float:
    """Expected maximum of `n` of `scores` drawn without replacement: what a best-of-n selector
    believes it achieves. The j-th smallest (1-based) is the maximum with probability
    C(j-1, n-1) / C(M, n)."""
    m = len(scores)
    if not 1 <= n <= m:
        raise ValueError(f"n must be in [1, {m}], got {n}")
    ordered = sorted(scores)
    total = math.comb(m, n)
    return sum(ordered[j - 1] * math.comb(j - 1, n - 1) for j in range(n, m + 1)) / total


def overoptimization_curves(proxies: Sequence[RewardModel], task: Task, problems: Sequence[Problem],
                            groups: Sequence[Sequence[Sample]], ns: Sequence[int], *, uwo_coef: float = 1.0) -> dict:
    """Gold (verifier) accuracy of best-of-N by each selector at each N, plus the proxy's mean score of
    its own choice. `groups` hold at least max(ns) samples per problem."""
    correct = [[task.verify(p, s.text) for s in g] for p, g in zip(problems, groups)]
    per_member = [score_groups(rm, problems, groups) for rm in proxies]  # member x problem x sample
    curves = {"oracle": best_of_n_curve(correct, correct, ns), "proxy": best_of_n_curve(per_member[0], correct, ns)}
    for rule in RULES:
        combined = [ensemble_scores([m[i] for m in per_member], rule, uwo_coef) for i in range(len(problems))]
        curves[f"ensemble_{rule}"] = best_of_n_curve(combined, correct, ns)
    curves["proxy_belief"] = {n: sum(expected_max(row, n) for row in per_member[0]) / len(problems) for n in ns}
    return {"ns": [int(n) for n in ns], "members": len(proxies),
            "curves": {k: [v[n] for n in ns] for k, v in curves.items()}}


def run_overoptimization(policy, task: Task, cfg: RewardConfig, problems: Sequence[Problem],
                         groups: Sequence[Sequence[Sample]], ns: Sequence[int], *, train_problems: int, members: int,
                         seed: int, progress: bool = True) -> dict:
    """Label a small training set with `cfg` (only `train_problems` problems), train the proxies, and
    return the curves with the size of the proxies' training set."""
    small = replace(cfg, problems=train_problems)
    data = collect(policy, task, small, seed=stable_seed(seed, "overopt-data"), progress=progress)
    proxies = train_proxies(policy, task, data, small, members=members, seed=seed, progress=progress)
    out = overoptimization_curves(proxies, task, problems, groups, ns)
    out["train_solutions"] = len(data.texts)
    return out


def plot_overoptimization(result: dict, path: str | Path) -> bool:
    """Gold accuracy of best-of-N against N (log scale), one line per selector; True if written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = result["ns"]
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"oracle": ":", "proxy": "-", "proxy_belief": "--"}
    for name, ys in result["curves"].items():
        label = {"proxy_belief": "proxy's own score of its pick"}.get(name, name.replace("_", " "))
        ax.plot(ns, ys, styles.get(name, "-."), marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (samples per problem)")
    ax.set_ylabel("verifier accuracy of the chosen sample")
    ax.set_title(f"Best-of-N by a proxy PRM ({result['members']} members, {result.get('train_solutions', '?')} "
                 "training solutions)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
