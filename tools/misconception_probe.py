"""How firmly a policy holds the arithmetic task's misconception: its chance of the right step on the
steps where the teacher may forget the incoming carry, per digit sum of the column.

    python tools/misconception_probe.py runs/default/seed0/checkpoints/init runs/default/seed0/checkpoints/round1

For held-out 3-digit addition problems (`--problems`, `--seed`), every column with a carry coming in and
digits that sum to 9 or more is scored twice from the true trace before it: the right line
(`4+5+1=10 c1`) and the forgotten carry's (`4+5+0=9 c0`). The printed chance is the right line's share of
the two, p = sigmoid(log p(right) - log p(wrong)), averaged per digit sum; greedy decoding takes the
right step where p > 1/2. A uniform misconception leaves every sum at about the same p, so learning
tips them all at once; a graded one (`task.misconception = [lo, hi]`) spreads them. The policies are
tiny checkpoints (`checkpoints/<phase>` of a run). Seconds on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict

import torch

from ponder.policy.tiny import TinyPolicy
from ponder.tasks.arithmetic import Arithmetic


def chances(problems: int, seed: int, digits: int) -> list[tuple[str, str, str, int]]:
    """(prompt and true steps before the column, right line, forgotten-carry line, digit sum) of every
    step where the misconception applies."""
    task = Arithmetic(digits=digits, op="+", styles=("column",))
    rng = random.Random(seed)
    rows = []
    for _ in range(problems):
        _, problem = task.make_problem(rng)
        trace = task.trace(problem, "column")
        da, db = (str(problem.meta[k]).zfill(digits)[::-1] for k in ("a", "b"))
        carry = 0
        for i, (x, y) in enumerate(zip(map(int, da), map(int, db))):
            if carry and x + y >= 9:
                before = problem.prompt + "".join(step + "\n" for step in trace[:i])
                rows.append((before, f"{x}+{y}+1={x + y + 1} c{(x + y + 1) // 10}\n", f"{x}+{y}+0={x + y} c{(x + y) // 10}\n",
                             x + y))
            carry = (x + y + carry) // 10
    return rows


def right_step_chance(policy: TinyPolicy, rows: list[tuple[str, str, str, int]]) -> torch.Tensor:
    prompts = [r[0] for r in rows]
    with torch.no_grad():
        right, rmask = policy.logprobs(prompts, [r[1] for r in rows], eos=False)
        wrong, wmask = policy.logprobs(prompts, [r[2] for r in rows], eos=False)
    return torch.sigmoid((right * rmask).sum(1) - (wrong * wmask).sum(1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="tiny policy checkpoint directories")
    ap.add_argument("--problems", type=int, default=600, help="problems drawn (default 600)")
    ap.add_argument("--seed", type=int, default=123, help="seed of their draw (default 123)")
    ap.add_argument("--digits", type=int, default=3)
    args = ap.parse_args(argv)
    rows = chances(args.problems, args.seed, args.digits)
    sums = sorted({r[3] for r in rows})
    print(f"{len(rows)} steps where the misconception applies, from {args.problems} problems")
    print("| checkpoint | mean p | share p > 1/2 | " + " | ".join(f"sum {s}" for s in sums) + " |")
    print("|---|---|---|" + "---|" * len(sums))
    for path in args.checkpoints:
        p = right_step_chance(TinyPolicy.load(path), rows)
        by_sum = defaultdict(list)
        for row, v in zip(rows, p.tolist()):
            by_sum[row[3]].append(v)
        cells = " | ".join(f"{sum(by_sum[s]) / len(by_sum[s]):.2f}" for s in sums)
        print(f"| {path} | {p.mean():.3f} | {(p > 0.5).float().mean():.3f} | {cells} |")


if __name__ == "__main__":
    main()
