"""ponder.timing: seconds charged to the innermost activity, spans, and the per-phase table."""

from __future__ import annotations

import pytest
import torch

from ponder import timing
from ponder.timing import ActivityClock, phase_times, scoring, time_line


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake(monkeypatch):
    t = FakeTime()
    monkeypatch.setattr(timing.time, "perf_counter", t)
    return t


def test_nested_activities_charge_the_innermost(fake):
    clock = ActivityClock()
    span = clock.span()
    with clock.activity("sampling"):
        fake.now += 1.0
        with clock.activity("scoring"):
            fake.now += 2.0
        fake.now += 0.5
        with clock.activity(None):  # no activity: the time stays with the one around it
            fake.now += 0.25
    fake.now += 4.0
    assert span.stop() == {"seconds": 7.75, "sampling": 1.75, "training": 0.0, "scoring": 2.0, "other": 4.0}


def test_a_span_counts_only_its_own_stretch_of_an_open_activity(fake):
    clock = ActivityClock()
    with clock.activity("training"):
        fake.now += 3.0
        with clock.span() as spent:
            fake.now += 1.0
        fake.now += 5.0
    assert spent == {"seconds": 1.0, "sampling": 0.0, "training": 1.0, "scoring": 0.0, "other": 0.0}
    assert clock.totals() == {"training": 9.0}


def test_an_exception_closes_the_activity(fake):
    clock = ActivityClock()
    with pytest.raises(ValueError), clock.activity("sampling"):
        fake.now += 1.0
        raise ValueError("boom")
    fake.now += 2.0
    assert clock.totals() == {"sampling": 1.0}


def test_scoring_counts_only_passes_without_gradients(fake):
    clock = ActivityClock()

    @scoring
    def forward():
        fake.now += 1.0

    original = timing.clock
    timing.clock = clock
    try:
        with torch.no_grad():
            forward()
        with clock.activity("training"):
            forward()  # with gradients: part of the training step around it
    finally:
        timing.clock = original
    assert clock.totals() == {"scoring": 1.0, "training": 1.0}


def test_phase_times_adds_a_total_row_and_reads_older_logs():
    metrics = [
        {"phase": "init", "step": 10, "loss": 1.0},
        {"phase": "init", "event": "phase_done", "seconds": 10.0,
         "activities": {"sampling": 1.0, "training": 8.0, "scoring": 0.0, "other": 1.0}},
        {"phase": "eval_init", "event": "phase_done", "seconds": 4.0},  # a log from before the breakdown
    ]
    rows = phase_times(metrics)
    assert rows == [
        {"phase": "init", "seconds": 10.0, "sampling": 1.0, "training": 8.0, "scoring": 0.0, "other": 1.0},
        {"phase": "eval_init", "seconds": 4.0, "sampling": 0.0, "training": 0.0, "scoring": 0.0, "other": 4.0},
        {"phase": "total", "seconds": 14.0, "sampling": 1.0, "training": 8.0, "scoring": 0.0, "other": 5.0},
    ]
    assert time_line(rows) == "time: 14 s (sampling 7%, training 57%, scoring 0%, other 36%)"
    assert phase_times([]) == [] and time_line([]) == ""
