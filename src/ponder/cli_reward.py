"""`ponder reward train|eval`: train reward models on a policy's samples and measure them, on any task.

    ponder reward train [RECIPE] --policy runs/default/checkpoints/init --out runs/rm
    ponder reward eval  [RECIPE] --policy runs/default/checkpoints/init --models runs/rm [--overopt]

Both read the recipe's `[task]`, `[reward]` and `[eval]` tables (with `--set` overrides). `train`
writes one directory per model under `--out`, plus the labelled data and training statistics.
`eval` samples held-out problems with the policy and writes `eval.json`, plots and `report.html`
into the models directory: AUROC, first-error F1, best-of-N accuracy per N, and with `--overopt` the
over-optimisation experiment (proxies trained on little data, single versus ensemble).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ponder.config import load_recipe, to_dict
from ponder.runs import RunDirError, write_json

MODEL_FILES = ("config.json", "implicit.json")


def _policy(path: str, cfg):
    from ponder.policy.tiny import TinyPolicy

    return TinyPolicy.load(path, dtype=cfg.policy.dtype, batch_size=cfg.policy.batch_size)


def cmd_train(args: argparse.Namespace) -> int:
    from ponder.reward.pipeline import collect, train_models
    from ponder.tasks.base import stable_seed

    cfg = load_recipe(args.recipe, args.set)
    task = cfg.make_task()
    policy = _policy(args.policy, cfg)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise RunDirError(f"{out}: already exists and is not empty (use --force to overwrite)")
    if not cfg.reward.models:
        raise RunDirError("the recipe's reward.models is empty: nothing to train (e.g. --set 'reward.models=[\"prm\"]')")
    out.mkdir(parents=True, exist_ok=True)
    seed = stable_seed(cfg.seed, "reward")
    print(f"[reward] sampling {cfg.reward.samples} solutions for {cfg.reward.problems} {task.name} problems "
          f"and labelling them ({cfg.reward.labels})", file=sys.stderr)
    data = collect(policy, task, cfg.reward, seed=seed, progress=not args.quiet)
    write_json(out / "reward_data.json", data.to_json())
    stats = train_models(policy, task, data, cfg.reward, seed=seed, out_dir=out, progress=not args.quiet)
    write_json(out / "train.json", {"recipe": to_dict(cfg), "policy": str(args.policy), "models": stats,
                                    "solutions": len(data.texts), "verified": data.verified(task),
                                    "label_cost": data.cost.as_dict()})
    print(f"{len(data.texts)} solutions ({data.verified(task) / max(len(data.texts), 1):.1%} verified), "
          f"labelling generated {data.cost.tokens_generated:,} tokens")
    for name, st in stats.items():
        print(f"  {name:<11} final loss {st['final_loss']:.4f}  -> {out / name}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ponder.eval import generate_in_chunks
    from ponder.report import page, reward_model_rows, reward_section
    from ponder.reward.overopt import plot_overoptimization, run_overoptimization
    from ponder.reward.pipeline import evaluate_reward_models, load_model
    from ponder.runs import write_atomic
    from ponder.tasks.base import stable_seed
    from ponder.types import Sampling

    cfg = load_recipe(args.recipe, args.set)
    task = cfg.make_task()
    policy = _policy(args.policy, cfg)
    root = Path(args.models)
    if not root.is_dir():
        raise RunDirError(f"{root}: no such directory")
    dirs = [root] if any((root / f).is_file() for f in MODEL_FILES) else sorted(
        d for d in root.iterdir() if d.is_dir() and any((d / f).is_file() for f in MODEL_FILES))
    if not dirs:
        raise RunDirError(f"{root}: no reward model directories in it (train some with `ponder reward train`)")
    models = {d.name: load_model(d) for d in dirs}
    ns = sorted({int(x) for x in args.n.split(",")})
    problems = task.problems("test", args.problems or cfg.eval.problems, cfg.test_seed)
    sampling = Sampling(n=max(ns), temperature=cfg.eval.temperature, top_p=cfg.eval.top_p,
                        max_new_tokens=cfg.eval.max_new_tokens, seed=stable_seed(cfg.seed, "reward_eval"))
    groups = generate_in_chunks(policy, [p.prompt for p in problems], sampling, chunk=max(1, 512 // max(ns)),
                                desc=f"sampling x{max(ns)}", progress=not args.quiet)
    metrics = evaluate_reward_models(models, task, problems, groups, ns=ns)
    result = {"policy": str(args.policy), "problems": len(problems), "ns": ns, "models": metrics}
    parts = [f"<h1>ponder reward models: {root}</h1>", reward_section(metrics, "Reward-model metrics")]
    if args.overopt:
        over = run_overoptimization(policy, task, cfg.reward, problems, groups, ns, train_problems=args.overopt_problems,
                                    members=args.members, seed=stable_seed(cfg.seed, "overopt"),
                                    progress=not args.quiet)
        result["overoptimization"] = over
        plot_overoptimization(over, root / "plots" / "overopt.png")
        parts += ["<h2>Over-optimisation</h2>", '<img src="plots/overopt.png" alt="overoptimization">']
    write_json(root / "eval.json", result)
    write_atomic(root / "report.html", page(f"ponder reward models: {root}", parts))
    rows = reward_model_rows(metrics)
    cols = list(dict.fromkeys(c for r in rows for c in r))
    print("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print("  ".join(f"{r.get(c, ''):>14.3f}" if isinstance(r.get(c), float) else f"{r.get(c, '')!s:>14}"
                        for c in cols))
    if args.overopt:
        print("\nover-optimisation (verifier accuracy of best-of-N)\n" + json.dumps(result["overoptimization"]["curves"]))
    print(f"\nreport: {root / 'report.html'}")
    return 0


def add_parser(sub) -> None:
    """Register `ponder reward train|eval` on the main parser's subcommands."""
    rw = sub.add_parser("reward", help="train and evaluate reward models (ORM, PRM, implicit PRM, Bradley-Terry)",
                        description="Train reward models on a policy's samples, and measure them.")
    rsub = rw.add_subparsers(dest="reward_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("recipe", nargs="?", help="recipe file or built-in name for [task], [reward], [eval] "
                        "(default: default)")
    common.add_argument("--policy", required=True, metavar="DIR", help="policy checkpoint directory, "
                        "e.g. runs/default/checkpoints/init")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    t = rsub.add_parser("train", parents=[common], help="sample, label and train the recipe's reward.models")
    t.add_argument("--out", required=True, metavar="DIR", help="where the trained models go")
    t.add_argument("--force", action="store_true", help="write into a non-empty --out")
    t.set_defaults(fn=cmd_train)
    e = rsub.add_parser("eval", parents=[common], help="AUROC, first-error F1 and best-of-N of trained models")
    e.add_argument("--models", required=True, metavar="DIR", help="a model directory or a directory of them")
    e.add_argument("--n", default="1,2,4,8,16,32,64", help="best-of-N sizes, comma separated (default 1..64)")
    e.add_argument("--problems", type=int, default=0, help="held-out problems (default: the recipe's eval.problems)")
    e.add_argument("--overopt", action="store_true", help="also run the over-optimisation experiment")
    e.add_argument("--members", type=int, default=4, help="ensemble members for --overopt (default 4)")
    e.add_argument("--overopt-problems", type=int, default=50,
                   help="training problems for the small proxies of --overopt (default 50)")
    e.set_defaults(fn=cmd_eval)
