"""Self-evolution rounds from a saved policy and PRM, without a run: for trying `[learn.self_evolve]` settings.

    python tools/evolve_probe.py runs/cd_init/checkpoints/init runs/ce_a/reward/prm --recipe countdown_evolve \\
        --rounds 2 --set sft.steps=20 --set sft.lr=3e-4 --set traces_per_tree=1
    python tools/evolve_probe.py runs/cd_init/checkpoints/init runs/ce_a/reward/prm --recipe countdown_evolve \\
        --control-demos --set sft.steps=20 --set sft.lr=3e-4

Each round calls the learner's own halves (`search` with the current PRM on `learn.problems` fresh
problems, the policy's SFT on the kept traces, then `follow_policy`: the PRM judged on and refitted to
the updated policy's samples), then evaluates greedy decoding and 16 samples a problem on the recipe's
held-out problems, scored with the refitted PRM and with the frozen one it started from. One line per
evaluation and per round. `--control-demos` instead trains the same SFT once on the task's own
demonstrations of fresh problems (what the policy was initialized on), which separates what a restarted
optimizer does to a converged policy from what the search traces do (docs/self-evolution.md).
`--set` takes `[learn.self_evolve]` keys, dotted for its tables (`sft.lr`, `dpo.train.steps`). Minutes on 2 CPU cores for Countdown.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time

import torch

from ponder.config import load_recipe
from ponder.eval import evaluate
from ponder.learn.distill import train_round
from ponder.learn.self_evolve import SelfEvolveConfig, follow_policy, search_half, step_dpo
from ponder.learn.sft import train_sft
from ponder.policy.tiny import TinyPolicy
from ponder.reward.pipeline import load_model


def settings(base: SelfEvolveConfig, assignments: list[str]) -> SelfEvolveConfig:
    """`base` with `key=value` assignments, dotted for nested tables (`sft.lr=3e-4`, `dpo.train.steps=20`);
    top-level keys first, so `search=mcts` holds before DPO steps are checked. A ValueError names a bad key."""
    for a in sorted(assignments, key=lambda a: "." in a.partition("=")[0]):
        key, sep, value = a.partition("=")
        if not sep:
            raise ValueError(f"--set {a!r}: expected KEY=VALUE")
        base = _assign(base, key.split("."), value, a)
    return base


def _assign(obj, path: list[str], value: str, a: str):
    names = [f.name for f in dataclasses.fields(obj)]
    if path[0] not in names:
        raise ValueError(f"--set {a!r}: expected KEY=VALUE with KEY one of {', '.join(names)} (dotted for a "
                         "nested table: sft.lr, dpo.train.steps)")
    current = getattr(obj, path[0])
    if dataclasses.is_dataclass(current) != (len(path) > 1):
        raise ValueError(f"--set {a!r}: {path[0]} is {'a table: set one of its keys' if len(path) == 1 else 'not a table'}")
    if len(path) > 1:
        return dataclasses.replace(obj, **{path[0]: _assign(current, path[1:], value, a)})
    kind = type(current)
    return dataclasses.replace(obj, **{path[0]: value.lower() in ("1", "true", "yes") if kind is bool else kind(value)})


def evaluation(policy, task, problems, rewards: dict, seed: int) -> dict:
    """Greedy accuracy and, at 16 samples, oracle, majority and each reward's weighted vote."""
    res = evaluate(policy, task, problems, ns=[16], temperature=0.7, top_p=1.0, max_new_tokens=64, seed=seed,
                   progress=False, rewards=rewards)
    return {"greedy": res["greedy_accuracy"], **{f"{r['method']}@16": r["accuracy"] for r in res["search"]
                                                 if r["method"] in ("oracle", "majority") or r["method"].endswith("_vote")}}


def line(label: str, figures: dict, start: float) -> str:
    return f"{label}: " + " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()) \
        + f" [{time.time() - start:.0f}s]"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policy", help="a built-in policy checkpoint directory (checkpoints/<phase> of a run)")
    ap.add_argument("prm", help="a process reward model directory (reward/prm of a run)")
    ap.add_argument("--recipe", default="countdown_evolve", help="the recipe whose task, [learn] and [eval] to use")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a [learn.self_evolve] setting")
    ap.add_argument("--control-demos", action="store_true", help="one SFT on the task's demonstrations instead")
    ap.add_argument("--eval-seed", type=int, default=7, help="the evaluation's sampling seed")
    args = ap.parse_args(argv)
    recipe = load_recipe(args.recipe)
    task, cfg = recipe.make_task(), settings(recipe.learn.self_evolve, args.set)
    torch.manual_seed(recipe.seed)
    policy = TinyPolicy.load(args.policy, dtype="float32", batch_size=recipe.policy.batch_size)
    frozen = load_model(args.prm)
    prm = copy.deepcopy(frozen)
    test = task.problems("test", recipe.eval.problems, recipe.test_seed)
    start = time.time()
    print(line("init", evaluation(policy, task, test, {"prm": prm}, args.eval_seed), start), flush=True)
    if args.control_demos:
        demos = [(p.prompt, task.demonstration(p)) for p in task.problems("train", 2000, 4242)]
        train_sft(policy, demos, cfg.sft, seed=0, progress=False)
        print(line(f"after {cfg.sft.steps} SFT steps on demonstrations", evaluation(policy, task, test, {}, args.eval_seed),
                   start), flush=True)
        return
    for r in range(1, args.rounds + 1):
        seed = r - 1  # round r's problems, search and SFT seeds, and its PRM samples' (50 + seed)
        problems = task.problems("train", recipe.learn.problems, 1000 + seed)
        data, stats = search_half(policy, prm, task, problems, cfg, seed=seed, progress=False)
        trained = train_round(policy, None, data, stats, cfg.as_distill(), seed=seed, phase=f"round{r}", progress=False)
        trained.update(step_dpo(policy, cfg, data, seed=seed, phase=f"round{r}", progress=False))
        follow = follow_policy(policy, prm, task, cfg, data, seed=50 + seed, phase=f"round{r}", progress=False) \
            if cfg.prm_problems else {}
        keep = ("prm_before_auroc", "prm_before_first_error_f1", "verified_share", f"pass@{cfg.prm_samples}", "entropy")
        found = {k: stats[k] for k in ("easy",) if k in stats}
        print(line(f"round {r}", {**found, "searched": stats["searched"], "kept": stats["kept"],
                                  "search_accuracy": stats["search_accuracy"], "train_steps": trained["train_steps"],
                                  **{k: trained[k] for k in ("dpo_pairs", "dpo_reward_accuracy") if trained.get(k) is not None},
                                  **{k: follow[k] for k in keep if follow.get(k) is not None}}, start), flush=True)
        print(line(f"after round {r}", evaluation(policy, task, test, {"prm": prm, "prm0": frozen}, args.eval_seed),
                   start), flush=True)


if __name__ == "__main__":
    main()
