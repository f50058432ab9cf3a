"""Section 8: where a whole run spends its time, phase by phase and by activity (`ponder.timing`).

With a finished run of this version at `--phases-run` (its `metrics.jsonl` has each phase's split), the
table is that run's. Otherwise a reduced default recipe runs here first (`REDUCED`, in a temporary
directory; `--quick`: smaller still), so the shares are those of the demo's phases at a smaller size.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from harness import Report

from ponder.timing import ACTIVITIES, phase_times, time_line

REDUCED = ["init.sft.steps=200", "init.demos=4000", "reward.problems=50", "reward.train.steps=50",
           "eval.problems=50", "search.problems=20", "learn.problems=200"]
"""The default recipe, about a quarter of each phase's work."""
QUICK = ["init.sft.steps=20", "init.demos=200", "reward.problems=8", "reward.samples=4", "reward.train.steps=5",
         "eval.problems=8", "eval.n=[1,2]", "search.problems=4", 'search.majority=[1,2]',
         'search.weighted_vote=[2]', 'search.best_of_n=[1,2]', 'search.beam=[1,2]', 'search.mcts=[2,4]',
         "learn.problems=20", "learn.rl.steps=1", "learn.rl.prompts_per_step=4", "learn.rl.group_size=2",
         "learn.rounds=1"]


def has_phase_times(run_dir: Path) -> bool:
    metrics = run_dir / "metrics.jsonl"
    return metrics.is_file() and any('"activities"' in line for line in metrics.read_text().splitlines())


def sec_phases(opts, rep: Report, state: dict) -> None:
    run_dir = Path(opts.phases_run)
    source = f"the finished run {run_dir}"
    tmp = None
    if not has_phase_times(run_dir):
        from ponder.cli import main as ponder_main

        tmp = tempfile.TemporaryDirectory(prefix="ponder-bench-")
        sets = QUICK if opts.quick else REDUCED
        args = ["run", "--quiet", "--runs-dir", tmp.name, "--name", "phases"]
        for s in sets:
            args += ["--set", s]
        with contextlib.redirect_stdout(io.StringIO()):  # the run's own tables: the section prints its own
            code = ponder_main(args)
        if code != 0:
            raise RuntimeError("the reduced default recipe failed")
        run_dir = Path(tmp.name) / "phases"
        source = "the default recipe reduced here (" + ", ".join(sets) + ")"
    try:
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    finally:
        if tmp is not None:
            tmp.cleanup()
    rows = phase_times(metrics)
    total = rows[-1]["seconds"] if rows else 0
    cols = ["phase", "seconds", *ACTIVITIES, "other"]
    rep.table("phases", [*cols, "share of the run"],
              [{**{c: r.get(c) for c in cols}, "share of the run": f"{r['seconds'] / total:.0%}" if total else "n/a"}
               for r in rows],
              [(f"Seconds per phase of {source}, split by activity (innermost charged; `ponder.timing`). "
               f"{time_line(rows)}.")])
    if rows and total:
        for name in ACTIVITIES:
            rep.ratio(f"share of a run's time: {name}", rows[-1][name] / total,
                      f"fraction of the run's wall time spent {name} (section 8)")
