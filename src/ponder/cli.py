"""The `ponder` command: run recipes, rebuild reports, list tasks and recipes, train and evaluate reward
models (`ponder reward`, in `ponder.cli_reward`).

Errors a user can cause (a bad recipe key or value, a missing file, an existing run directory) end
the command with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ponder.config import RECIPE_DIR, ConfigError, load_recipe, recipe_source, to_dict, to_toml
from ponder.policy.tiny import PolicyLoadError
from ponder.preflight import check_context
from ponder.reward.model import RewardModelLoadError
from ponder.reward.pairs import PairsFileError
from ponder.runs import Run, RunDirError, write_atomic, write_json
from ponder.signals import Interrupted, install_handlers
from ponder.tasks import TASKS, register
from ponder.tasks.base import TaskError
from ponder.tasks.plugins import load_entry_points
from ponder.timing import phase_times, time_line
from ponder.training import TrainingDiverged

USER_ERRORS = (ConfigError, RunDirError, TaskError, PolicyLoadError, RewardModelLoadError, PairsFileError)


def _results_table(summary: dict) -> str:
    lines = [f"{'phase':<10} {'greedy':>7}   " + "   ".join(
        f"{r['method']}@{r['n']}" for r in next(iter(summary["search"].values()), []))]
    for p in summary["phases"]:
        rows = summary["search"].get(p["phase"], [])
        lines.append(f"{p['phase']:<10} {p['greedy_accuracy']:>7.1%}   " + "   ".join(
            f"{r['accuracy']:>{len(r['method']) + 1 + len(str(r['n']))}.1%}" for r in rows))
    return "\n".join(lines)


def positive_int(text: str) -> int:
    """argparse type of --seeds: an integer >= 1, else one clear message."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip():
        raise argparse.ArgumentTypeError(f"must be a positive integer (how many seeds to run), got {text!r}")
    return value


def claims_lines(claims: list[dict]) -> str:
    """The computed claims, one line each: verdict, effect and interval, statement."""
    from ponder.report import claim_effect

    return "\n".join(f"  {c['verdict']:<13} {claim_effect(c):<32} {c['statement']}" for c in claims)


def _check_run_flags(args: argparse.Namespace, cfg) -> None:
    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    if args.ray_address and not args.workers:
        raise ConfigError("--ray-address needs --workers N (how many policy copies to start on the cluster)")
    if args.workers and cfg.policy.backend != "tiny":
        raise ConfigError(f"--workers fans out the built-in engine; backend {cfg.policy.backend!r} scales with its own "
                          "devices (use backend 'vllm' on GPUs)")


def _new_run(cfg, path: Path, force: bool) -> Run:
    run = Run.create(path, force=force)
    write_atomic(run.path / "config.toml", to_toml(to_dict(cfg)))
    write_json(run.path / "config.json", to_dict(cfg))
    return run


def _execute(cfg, run: Run, task, args: argparse.Namespace, resume_hint: Path) -> int:
    """Run (or resume) one run to its report; 0 when it finished."""
    from ponder.loop import run_loop
    from ponder.report import write_report

    print(f"run directory: {run.path}", file=sys.stderr)
    install_handlers()
    try:
        run_loop(cfg, run, task=task, progress=not args.quiet, echo=lambda s: print(s, file=sys.stderr),
                 workers=args.workers, ray_address=args.ray_address)
    except Interrupted as e:
        print(f"\nponder: stopped during {e}; progress is saved. Continue with:\n"
              f"  ponder run --resume {resume_hint}", file=sys.stderr)
        return 130
    except TrainingDiverged as e:
        last = run.state.get("last_checkpoint")
        kept = f"the last good checkpoint is {run.checkpoint_dir(last)}" if last else "no phase had finished"
        print(f"ponder: error: {e}; training stopped ({kept}). "
              "Start a new run with a lower learning rate, or check the data.", file=sys.stderr)
        return 1
    finally:
        run.close()
    summary = write_report(run.path)
    print(_results_table(summary))
    print("\nclaims (computed from the intervals):\n" + claims_lines(summary["claims"]))
    if line := time_line(phase_times(run.metrics())):
        print("\n" + line)
    print(f"\nreport: {run.path / 'report.html'}\nsummary: {run.path / 'summary.json'}")
    return 0


def _run_seeds(cfg, root: Path, seeds: list[int], args: argparse.Namespace, fresh: bool) -> int:
    """Each seed's run in root/seed<S>, one after another (a finished one is skipped, an interrupted one
    resumed), then the aggregate summary and report."""
    from dataclasses import replace

    from ponder.loop import phase_names
    from ponder.replicate import seed_dir, write_aggregate

    for seed in seeds:
        scfg = replace(cfg, seed=seed)
        path = seed_dir(root, seed)
        if not fresh and (path / "state.json").is_file():
            run = Run.open(path)
            if all(run.done(p) for p in phase_names(scfg)):
                print(f"seed {seed}: finished already ({path})", file=sys.stderr)
                continue
        else:
            run = _new_run(scfg, path, force=False)
        print(f"seed {seed} ({seeds.index(seed) + 1} of {len(seeds)})", file=sys.stderr)
        code = _execute(scfg, run, scfg.make_task(), args, resume_hint=root)
        if code:
            return code
    agg = write_aggregate(root)
    print(f"\n{len(seeds)} seeds; claims over seeds (t-interval of the mean effect):\n" + "\n".join(
        f"  {c['verdict']:<13} holds in {c['holds_in']} of {len(seeds)} seeds  {c['statement']}" for c in agg["claims"]))
    print(f"\nreport: {root / 'report.html'}\naggregate: {root / 'aggregate.json'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ponder.replicate import create_root, read_manifest

    if args.resume:
        if args.set or args.recipe or args.seeds:
            raise ConfigError("--resume continues a run with its own config.toml; drop RECIPE, --set and --seeds")
        manifest = read_manifest(args.resume)
        if manifest is not None:
            cfg = load_recipe(str(Path(args.resume) / "config.toml"))
            _check_run_flags(args, cfg)
            return _run_seeds(cfg, Path(args.resume), manifest["seeds"], args, fresh=False)
        run = Run.open(args.resume)
        cfg = load_recipe(str(Path(args.resume) / "config.toml"))
        task = cfg.make_task()
        _check_run_flags(args, cfg)
        return _execute(cfg, run, task, args, resume_hint=run.path)
    cfg = load_recipe(args.recipe, args.set)
    task = cfg.make_task()  # data files are read and checked before any work
    _check_run_flags(args, cfg)
    check_context(cfg, task, source=recipe_source(args.recipe, args.set))
    path = Path(args.runs_dir) / (args.name or cfg.name)
    if args.seeds:
        seeds = [cfg.seed + i for i in range(args.seeds)]
        root = create_root(path, cfg, seeds, force=args.force)
        return _run_seeds(cfg, root, seeds, args, fresh=True)
    return _execute(cfg, _new_run(cfg, path, args.force), task, args, resume_hint=path)


def cmd_report(args: argparse.Namespace) -> int:
    from ponder.markdown import run_markdown
    from ponder.replicate import read_manifest, write_aggregate
    from ponder.report import write_report

    if read_manifest(args.run_dir) is not None:
        agg = write_aggregate(args.run_dir)
        print(run_markdown(args.run_dir) if args.markdown else
              f"{len(agg['seeds'])} seeds\nreport: {Path(args.run_dir) / 'report.html'}")
        return 0
    if not (Path(args.run_dir) / "state.json").is_file():
        raise RunDirError(f"{args.run_dir}: not a ponder run directory (no state.json)")
    summary = write_report(args.run_dir)
    if args.markdown:
        print(run_markdown(args.run_dir), end="")
        return 0
    print(_results_table(summary))
    print(f"\nreport: {Path(args.run_dir) / 'report.html'}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    load_entry_points(register)
    for name, cls in sorted(TASKS.items()):
        doc = ((sys.modules[cls.__module__].__doc__ or cls.__doc__ or "").strip().splitlines() or [""])[0]
        where = "" if cls.__module__.startswith("ponder.") else f"  [{cls.__module__}]"
        print(f"{name:<12} {doc}{where}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    if args.show:
        cfg = load_recipe(args.show, args.set)
        print(to_toml(to_dict(cfg)), end="")
        return 0
    for f in sorted(RECIPE_DIR.glob("*.toml")):
        first = f.read_text().splitlines()[0].lstrip("# ").strip() if f.read_text() else ""
        print(f"{f.stem:<16} {first}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ponder", description="Reproducible o1-style reasoning on a laptop: "
                                "policy initialization, reward design, search and learning, iterated and measured.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a recipe end to end (default: the built-in demo)",
                       description="Run a recipe: initialize a policy, evaluate it with search, learn from search, "
                       "evaluate again, and write a report into runs/<name>/.")
    r.add_argument("recipe", nargs="?", help="recipe file or built-in recipe name (default: default)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set init.sft.steps=100 (repeatable)")
    r.add_argument("--name", help="run name (default: the recipe's name)")
    r.add_argument("--runs-dir", default="runs", help="parent of run directories (default: runs)")
    r.add_argument("--force", action="store_true", help="overwrite an existing run directory of the same name")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last finished phase")
    r.add_argument("--seeds", type=positive_int, metavar="K",
                   help="run the recipe once per seed (its seed, seed+1, ..., seed+K-1), each in RUN/seed<S>, then "
                        "write an aggregate summary and report (mean, spread and interval over seeds)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--workers", type=int, default=0, metavar="N",
                   help="fan generation and verification out over N Ray workers, each holding a policy copy "
                        "(0: in process; same seed, same results)")
    r.add_argument("--ray-address", metavar="ADDR",
                   help="connect to this Ray cluster (e.g. auto or ray://host:10001) instead of starting one locally")
    r.set_defaults(fn=cmd_run)

    rep = sub.add_parser("report", help="rebuild summary.json, plots and report.html of a run")
    rep.add_argument("run_dir", help="a run directory, e.g. runs/default, or a multi-seed one (ponder run --seeds)")
    rep.add_argument("--markdown", action="store_true",
                     help="print the headline, scaling and claims tables as Markdown (the README's figures)")
    rep.set_defaults(fn=cmd_report)

    t = sub.add_parser("tasks", help="list the built-in tasks")
    t.set_defaults(fn=cmd_tasks)

    rc = sub.add_parser("recipes", help="list built-in recipes, or print one fully resolved")
    rc.add_argument("--show", metavar="RECIPE", help="print this recipe with every default filled in")
    rc.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override before printing")
    rc.set_defaults(fn=cmd_recipes)

    from ponder.cli_reward import add_parser as add_reward_parser

    add_reward_parser(sub)
    from ponder.cli_search import add_parser as add_search_parser

    add_search_parser(sub)
    from ponder.cli_compare import add_parser as add_compare_parser

    add_compare_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except USER_ERRORS as e:
        print(f"ponder: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nponder: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

