"""`ponder search`: the test-time scaling sweep on a run's checkpoint, written into the run's report.

    ponder search runs/default                      # the last checkpoint, the recipe's [search] table
    ponder search runs/default --checkpoint init --set 'search.beam=[1,2,4,8]' --set search.problems=200

Every method of `search.methods` runs at each of its sizes over held-out problems, guided and scored
by the run's process reward model (`runs/<name>/reward/prm`); the verifier only grades. The table,
the compute-optimal curve and the plot go to `search/<checkpoint>.json` and
`plots/scaling_<checkpoint>.png`, and `ponder report` shows them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ponder.config import ConfigError, apply_overrides, build
from ponder.runs import RunDirError, write_json


def _search_config(run_dir: Path, overrides: list[str]):
    from ponder.config import RunConfig

    data = json.loads((run_dir / "config.json").read_text())
    if overrides:
        bad = [o for o in overrides if not o.strip().startswith("search.")]
        if bad:
            raise ConfigError(f"--set: only search.* settings can change for a sweep, got {bad[0]!r}")
        data = apply_overrides(data, overrides)
    return build(RunConfig, data, "", f"{run_dir / 'config.json'}" + (" (with --set)" if overrides else ""))


def cmd_search(args: argparse.Namespace) -> int:
    from ponder.loop import reward_dir
    from ponder.policy.tiny import TinyPolicy
    from ponder.reward.pipeline import load_model
    from ponder.search.scaling import METHODS, compute_optimal, estimate_difficulty, plot_scaling, sweep
    from ponder.tasks.base import stable_seed

    run_dir = Path(args.run_dir)
    if not (run_dir / "state.json").is_file():
        raise RunDirError(f"{run_dir}: not a ponder run directory (no state.json)")
    cfg = _search_config(run_dir, args.set)
    sc = cfg.search if cfg.search.methods else type(cfg.search)(**{**cfg.search.__dict__, "methods": METHODS})
    state = json.loads((run_dir / "state.json").read_text())
    checkpoint = args.checkpoint or state.get("last_checkpoint")
    if not checkpoint or not (run_dir / "checkpoints" / checkpoint).is_dir():
        raise RunDirError(f"{run_dir}: no checkpoint {checkpoint!r} (finished phases: {', '.join(state['done'])})")
    if not (reward_dir(run_dir) / "prm").is_dir():
        raise RunDirError(f"{run_dir}: no process reward model at reward/prm (the recipe's reward.models needs \"prm\")")
    task = cfg.make_task()
    policy = TinyPolicy.load(run_dir / "checkpoints" / checkpoint, dtype=cfg.policy.dtype,
                             batch_size=cfg.policy.batch_size)
    prm = load_model(reward_dir(run_dir) / "prm")
    problems = task.problems("test", sc.problems, cfg.test_seed)
    seed = stable_seed(cfg.seed, "search", checkpoint)
    rows = sweep(problems, policy, prm, task, sc, seed=seed, progress=not args.quiet)
    difficulty = estimate_difficulty(problems, policy, task, sc.difficulty_samples, sc.temperature,
                                     stable_seed(seed, "difficulty"), top_p=sc.top_p, max_new_tokens=sc.max_new_tokens)
    optimal = compute_optimal(rows, difficulty, sc.difficulty_bins, holdout=sc.holdout)
    table = [{k: v for k, v in r.items() if not k.startswith("per_problem")} for r in rows]
    result = {"checkpoint": checkpoint, "problems": len(problems), "rows": table, "compute_optimal": optimal}
    write_json(run_dir / "search" / f"{checkpoint}.json", result)
    plot_scaling(rows + optimal, run_dir / "plots" / f"scaling_{checkpoint}.png")
    print(f"{'method':<14} {'size':>5} {'accuracy':>9} {'tokens/problem':>15} {'encoded/gen':>12}")
    for r in table:
        ratio = "" if r["encode_ratio"] is None else f"{r['encode_ratio']:.2f}"
        print(f"{r['method']:<14} {r['size']:>5} {r['accuracy']:>9.1%} {r['tokens_generated']:>15.1f} {ratio:>12}")
    for c in optimal:
        print(f"{'optimal':<14} {'':>5} {c['accuracy']:>9.1%} {c['tokens_generated']:>15.1f}")
    from ponder.report import write_report

    write_report(run_dir)
    print(f"\nsaved: {run_dir / 'search' / (checkpoint + '.json')}\nreport: {run_dir / 'report.html'}", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    """Register `ponder search` on the main parser's subcommands."""
    s = sub.add_parser("search", help="accuracy versus compute of every searcher on a run's checkpoint",
                       description="Run the test-time scaling sweep (greedy, majority, weighted vote, best-of-N, "
                       "beam, DVTS, MCTS) on a run's checkpoint, guided by the run's PRM, and add it to the report.")
    s.add_argument("run_dir", help="a run directory with a trained PRM, e.g. runs/default")
    s.add_argument("--checkpoint", help="which phase's checkpoint (default: the last one)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a search.* setting, e.g. --set 'search.mcts=[8,16,32]' (repeatable)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(fn=cmd_search)
