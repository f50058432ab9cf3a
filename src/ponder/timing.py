"""Where a run spends its time: wall-clock seconds by activity, for the loop's per-phase breakdown.

The code that samples, trains or scores marks itself with `activity(name)`; the loop measures each
phase with `span()`. Activities nest and the innermost one is charged: a search that samples spends
its sampling time in `sampling` and only the rest in the phase's `other`. The activities:

- `sampling`: a policy's `generate` (the decode loop, its prefix cache included);
- `training`: optimizer steps (forward, backward, clipping, the update) of SFT, RL, PPO's critic and the
  reward models;
- `scoring`: forward passes without gradients (a policy's `logprobs` outside training, reward models'
  scores).

Only this process's time is seen: with Ray workers the driver's wait for them counts as the activity the
driver was in. Wall-clock figures vary from run to run, so they go to `metrics.jsonl` and the report,
never into `summary.json` (equal seeds give equal summaries).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

ACTIVITIES = ("sampling", "training", "scoring")
"""The activities code marks, in the order reports show them (then `other`)."""

F = TypeVar("F", bound=Callable)


class ActivityClock:
    """Seconds per activity, each second charged to the innermost open activity."""

    def __init__(self) -> None:
        self._open: list[list] = []  # [name, time it last started or resumed being the innermost]
        self._totals: dict[str, float] = {}

    def _flush(self, now: float) -> None:
        if self._open:
            top = self._open[-1]
            self._totals[top[0]] = self._totals.get(top[0], 0.0) + now - top[1]
            top[1] = now

    @contextmanager
    def activity(self, name: str | None) -> Iterator[None]:
        """Charge the block's time to `name` (minus the activities nested in it); None: no activity."""
        if name is None:
            yield
            return
        self._flush(time.perf_counter())
        self._open.append([name, time.perf_counter()])
        try:
            yield
        finally:
            now = time.perf_counter()
            self._flush(now)
            self._open.pop()
            if self._open:
                self._open[-1][1] = now

    def totals(self) -> dict[str, float]:
        """Seconds charged so far to each activity, the open ones up to now."""
        self._flush(time.perf_counter())
        return dict(self._totals)

    def span(self) -> Span:
        """Start measuring: `Span.stop()` (or leaving it as a context manager) gives the breakdown."""
        return Span(self)


class Span:
    """A measured stretch of time: started at creation; `stop()` returns `seconds` (its wall time),
    the seconds of each activity inside it, and `other` for the rest, rounded to milliseconds."""

    def __init__(self, clock: ActivityClock) -> None:
        self.clock = clock
        self.before, self.t0 = clock.totals(), time.perf_counter()
        self.result: dict[str, float] = {}

    def stop(self) -> dict[str, float]:
        after, total = self.clock.totals(), time.perf_counter() - self.t0
        spent = {k: v - self.before.get(k, 0.0) for k, v in after.items() if v - self.before.get(k, 0.0) > 0}
        self.result.clear()
        self.result["seconds"] = round(total, 3)
        for name in [*ACTIVITIES, *sorted(set(spent) - set(ACTIVITIES))]:
            self.result[name] = round(spent.get(name, 0.0), 3)
        self.result["other"] = round(max(0.0, total - sum(spent.values())), 3)
        return self.result

    def __enter__(self) -> dict[str, float]:
        return self.result  # filled in on exit

    def __exit__(self, *exc) -> None:
        self.stop()


clock = ActivityClock()
"""The process's clock: what `activity`, `timed` and the loop's spans use."""


def activity(name: str | None):
    """`clock.activity(name)`: a context manager charging its block to `name`."""
    return clock.activity(name)


def timed(name: str) -> Callable[[F], F]:
    """Decorator: every call of the function is charged to activity `name`."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with clock.activity(name):
                return fn(*args, **kwargs)
        return inner  # type: ignore[return-value]
    return wrap


def scoring(fn: F) -> F:
    """Decorator for a forward pass: a call made without gradients is charged to `scoring`; one made
    with them belongs to the training step around it."""
    import torch

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        with clock.activity(None if torch.is_grad_enabled() else "scoring"):
            return fn(*args, **kwargs)
    return inner  # type: ignore[return-value]


def phase_times(metrics: list[dict]) -> list[dict]:
    """Per phase, from a run's metrics log (`phase_done` events): its wall seconds and the seconds of
    each activity, then a `total` row (phases of runs older than this breakdown count as `other`)."""
    rows = []
    for m in metrics:
        if m.get("event") != "phase_done" or m.get("seconds") is None:
            continue
        spent = m.get("activities") or {"other": m["seconds"]}
        rows.append({"phase": m["phase"], "seconds": m["seconds"], **spent})
    if rows:
        names = [*ACTIVITIES, *sorted({k for r in rows for k in r} - {*ACTIVITIES, "phase", "seconds", "other"}),
                 "other"]
        rows = [{"phase": r["phase"], "seconds": r["seconds"], **{n: r.get(n, 0.0) for n in names}} for r in rows]
        rows.append({"phase": "total", **{k: round(sum(r[k] for r in rows), 3) for k in ("seconds", *names)}})
    return rows


def time_line(rows: list[dict]) -> str:
    """One line: the run's wall time and each activity's share of it (from `phase_times`)."""
    if not rows or not rows[-1]["seconds"]:
        return ""
    total = rows[-1]
    shares = ", ".join(f"{k} {v / total['seconds']:.0%}" for k, v in total.items() if k not in ("phase", "seconds"))
    return f"time: {total['seconds']:.0f} s ({shares})"
