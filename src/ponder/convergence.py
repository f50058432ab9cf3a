"""Has the initialized policy settled? Init's greedy accuracy part-way through SFT against at its end.

A policy initialized by SFT that stops inside a sudden learning jump lands on either side of it by
floating-point chance: the same recipe and seed gave 79% greedy on one machine and 47% on another.
So init measures greedy accuracy after `CONVERGENCE_AT` of its steps (a probe inside the training
loop, on the evaluation problems), eval_init measures it at the end, and a run that moved more than
`CONVERGENCE_POINTS` in between says so, in its log, its summary (`init_convergence`) and its report.
"""

from __future__ import annotations

CONVERGENCE_AT = 0.8  # init's greedy accuracy is also measured after this fraction of its SFT steps
CONVERGENCE_POINTS = 0.02  # more movement than this over the last 20% of init's steps: still inside a jump


def convergence(results: dict) -> dict | None:
    """How far init's greedy accuracy moved over its last 20% of SFT steps, from init's probe and
    eval_init's greedy accuracy (the same problems and budget): `moved` (a fraction) and `settled`
    (moved by at most CONVERGENCE_POINTS). None when init trained no probe (a loaded checkpoint)."""
    probe, final = (results.get("init") or {}).get("probe") or {}, results.get("eval_init")
    if "greedy_accuracy" not in probe or not final:
        return None
    moved = final["greedy_accuracy"] - probe["greedy_accuracy"]
    return {"steps": [probe["step"], probe["steps"]], "greedy_accuracy": [probe["greedy_accuracy"],
                                                                          final["greedy_accuracy"]],
            "moved": moved, "settled": abs(moved) <= CONVERGENCE_POINTS + 1e-12}


def convergence_line(conv: dict) -> str:
    """One line saying how far init moved, with the warning when it has not settled."""
    (lo, hi), (a, b) = conv["steps"], conv["greedy_accuracy"]
    line = f"[init] greedy {a:.1%} after {lo} SFT steps, {b:.1%} after {hi} ({100 * conv['moved']:+.1f} points)"
    if conv["settled"]:
        return line + ": settled"
    return (line + f": WARNING still moving (more than {100 * CONVERGENCE_POINTS:.0f} points over the last 20% "
            "of its steps), so this policy depends on where training stops; raise init.sft.steps")
