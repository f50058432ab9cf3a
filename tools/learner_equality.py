"""Same behaviour before and after a refactor: every built-in learner's reduced recipe run with two source
trees, and whether their results agree.

    git worktree add /tmp/before <commit>
    python tools/learner_equality.py /tmp/before/src src runs/equality [--recipe addition]

Each learner runs `ponder run` (2-digit addition, a 2-layer model, 300 init SFT steps, two rounds on 32
problems, 40 held-out problems) once per tree, the tree put first on PYTHONPATH. The overrides apply to
each tree's own default recipe, or to `--recipe NAME` where both trees have it: compare trees whose
recipe agrees (the default changed at 70ddfff; `addition` is the one before it). The table compares
summary.json and the state's results, timings aside (a claim only one side has is listed, not counted
as a difference), and the md5 of each round-2 checkpoint. The recipes make the tiny policy worse: they
check equality, not learning. About 4 minutes a tree on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

LEARNERS = ["expert_iteration", "distill", "reinforce", "rloo", "grpo", "dr_grpo", "ppo", "dpo"]
BASE = ["task.digits=2", 'task.styles=["column"]', "model.n_layer=2", "model.d_model=64", "model.max_seq_len=48",
        "eval.problems=40", "eval.n=[1,4]", "eval.max_new_tokens=38", "learn.problems=32", "reward.models=[]",
        "search.methods=[]", "init.demos=2000", "init.sft.steps=300", "init.sft.batch_size=32", "learn.rounds=2"]
OWN = {
    "expert_iteration": ["learn.expert_iteration.samples=2", "learn.expert_iteration.max_new_tokens=38",
                         "learn.expert_iteration.sft.steps=6", "learn.expert_iteration.sft.batch_size=8"],
    "distill": ['reward.models=["prm"]', "reward.problems=8", "reward.samples=2", "reward.max_new_tokens=38",
                "reward.train.steps=4", "reward.train.batch_size=8", "learn.distill.simulations=3",
                "learn.distill.max_new_tokens=12", "learn.distill.sft.steps=4", "learn.distill.sft.batch_size=8",
                "learn.distill.prm_steps=3", "learn.distill.min_visits=1"],
    "ppo": ["learn.ppo.steps=2", "learn.ppo.prompts_per_step=4", "learn.ppo.samples_per_prompt=2",
            "learn.ppo.max_new_tokens=38", "learn.ppo.epochs_per_batch=2", 'learn.ppo.critic="separate"',
            "learn.ppo.value_warmup=1"],
    "dpo": ["learn.dpo.prompts_per_round=6", "learn.dpo.samples=3", "learn.dpo.max_new_tokens=38",
            "learn.dpo_iterations=2", "learn.dpo.train.batch_size=4"],
}
RL = ["learn.rl.steps=3", "learn.rl.prompts_per_step=8", "learn.rl.group_size=4", "learn.rl.max_new_tokens=38"]
CODE = "import sys; from ponder.cli import main; sys.exit(main(sys.argv[1:]))"


def run_all(src: Path, out: Path, recipe: str | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "RAY_AUTH_MODE": "disabled"}
    for learner in LEARNERS:
        if (out / learner / "summary.json").is_file():
            continue
        args = ["run", *([recipe] if recipe else []), "--quiet", "--runs-dir", str(out), "--name", learner,
                "--set", f"learn.learner={learner}"]
        for s in BASE + OWN.get(learner, RL):
            args += ["--set", s]
        subprocess.run([sys.executable, "-c", CODE, *args], env=env, check=True)


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if "seconds" not in k and "per_s" not in k}
    return [_strip(v) for v in x] if isinstance(x, list) else x


def differences(a, b, path: str = ""):
    """Paths where two JSON values differ (NaN equals NaN)."""
    if type(a) is not type(b):
        yield path
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            yield from ([f"{path}.{k} (one side)"] if k not in a or k not in b else differences(a[k], b[k], f"{path}.{k}"))
    elif isinstance(a, list):
        if len(a) != len(b):
            yield f"{path} (length)"
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                yield from differences(x, y, f"{path}[{i}]")
    elif a != b and not (isinstance(a, float) and math.isnan(a) and math.isnan(b)):
        yield f"{path}: {a!r} != {b!r}"


def compare(before: Path, after: Path) -> list[str]:
    rows = ["| learner | greedy init / round 1 / round 2, before | after | results identical | round-2 weights (md5) |",
            "|---|---|---|---|---|"]
    for learner in LEARNERS:
        sa, sb = (json.loads((d / learner / "summary.json").read_text()) for d in (before, after))
        ids = {c["id"] for c in sa["claims"]} & {c["id"] for c in sb["claims"]}
        for s in (sa, sb):
            s["claims"] = [c for c in s["claims"] if c["id"] in ids]
        ra, rb = (json.loads((d / learner / "state.json").read_text())["results"] for d in (before, after))
        diff = [*differences(_strip(sa), _strip(sb)), *differences(_strip(ra), _strip(rb))]
        md5 = [hashlib.md5((d / learner / "checkpoints" / "round2" / "model.safetensors").read_bytes()).hexdigest()[:8]
               for d in (before, after)]
        greedy = [" / ".join(f"{100 * p['greedy_accuracy']:.1f}" for p in s["phases"]) for s in (sa, sb)]
        same = "yes" if not diff else "NO: " + "; ".join(diff[:4])
        rows.append(f"| {learner} | {greedy[0]} | {greedy[1]} | {same} | {md5[0]} / {md5[1]} |")
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path, help="the source tree before (its src directory)")
    parser.add_argument("after", type=Path, help="the source tree after")
    parser.add_argument("out", type=Path, help="where the runs go (kept: a rerun only runs what is missing)")
    parser.add_argument("--recipe", help="a recipe both trees have (default: each tree's default recipe)")
    args = parser.parse_args(argv)
    for src, name in ((args.before, "before"), (args.after, "after")):
        run_all(src, args.out / name, args.recipe)
    print("\n".join(compare(args.out / "before", args.out / "after")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
