"""Progress output: live bars on a terminal, a bounded number of whole lines anywhere else."""

from __future__ import annotations

import io
import time

from ponder.progress import LOG_INTERVAL_S, LineWriter, bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_line_writer_turns_redraws_into_lines_and_drops_blanks_and_repeats():
    out = io.StringIO()
    w = LineWriter(out)
    w.write("\rstep 1   ")
    w.write("\rstep 2")
    w.write("\rstep 2")
    w.write("\r      \r")
    w.write("step 3\n")
    assert out.getvalue() == "step 1\nstep 2\nstep 3\n"


def test_a_log_gets_a_first_and_a_last_line_for_a_fast_loop(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    out = io.StringIO()
    assert sum(bar(range(20_000), desc="sampling", stream=out)) == sum(range(20_000))
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 3, lines
    assert lines[-1].startswith("sampling: 100%") and "20000/20000" in lines[-1]


def test_a_log_gets_at_most_one_line_per_interval(monkeypatch):
    """Over a loop of a few seconds, a log gets at most wall / interval + 2 lines (tqdm's own
    TQDM_MININTERVAL sets the interval)."""
    monkeypatch.setenv("TQDM_MININTERVAL", "0.5")
    out = io.StringIO()
    start = time.monotonic()
    for _ in bar(range(300), desc="train", stream=out):
        time.sleep(0.01)
    wall = time.monotonic() - start
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 3 <= len(lines) <= wall / 0.5 + 2, (wall, lines)
    assert lines[-1].startswith("train: 100%")


def test_the_default_log_interval_is_seconds_not_updates():
    assert LOG_INTERVAL_S >= 5


def test_a_terminal_gets_a_live_bar_that_redraws_in_place():
    out = _Terminal()
    for _ in bar(range(3), desc="eval", stream=out):
        pass
    assert "\r" in out.getvalue() and "eval" in out.getvalue()


def test_disabled_progress_writes_nothing():
    for stream in (io.StringIO(), _Terminal()):
        assert list(bar(range(5), desc="x", enabled=False, stream=stream)) == [0, 1, 2, 3, 4]
        assert stream.getvalue() == ""


def test_a_manual_bar_with_initial_and_total_resumes_its_count(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    out = io.StringIO()
    b = bar(range(7, 10), desc="sft", initial=7, total=10, stream=out)
    for _ in b:
        pass
    assert out.getvalue().splitlines()[-1].startswith("sft: 100%") and "10/10" in out.getvalue()


def test_a_log_does_not_repeat_a_final_count_it_already_wrote(monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "0")
    out = io.StringIO()
    b = bar(total=3, desc="sweep", stream=out)
    for _ in range(3):
        b.update(1)
    b.close()
    lines = out.getvalue().splitlines()
    assert sum("3/3" in line for line in lines) == 1, lines
    assert lines[-1].startswith("sweep: 100%")
