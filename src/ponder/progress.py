"""Progress for long phases: a live tqdm bar on a terminal, a bounded number of plain lines in a log.

tqdm redraws its bar in place with carriage returns. On a terminal that is what a person wants; in a
file (`make demo > log`, `nohup`, CI) every redraw stays, and a ten-minute run wrote a quarter of a
megabyte of them. So where the stream is not a terminal, `bar` keeps tqdm (its rate, ETA and
formatting) but redraws at most once every `LOG_INTERVAL_S` seconds, writes each redraw as its own
line, and leaves the final state as the phase's last line. A phase of T seconds then writes at most
about T / LOG_INTERVAL_S + 2 lines.

tqdm's own environment settings still apply: `TQDM_MININTERVAL=2` makes log lines every 2 seconds,
`TQDM_DISABLE=1` silences every bar.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm.auto import tqdm

LOG_INTERVAL_S = 10.0
"""Seconds between progress lines when the stream is not a terminal (TQDM_MININTERVAL overrides it)."""


class LineWriter:
    """A file-like wrapper that turns tqdm's carriage-return redraws into whole lines.

    Each redraw becomes one line with its trailing padding removed; blank redraws (tqdm clearing its
    bar) and a repeat of the line just written are dropped."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self._last = None

    def write(self, s: str) -> int:
        for piece in s.replace("\r", "\n").split("\n"):
            line = piece.rstrip()
            if line and line != self._last:
                self.stream.write(line + "\n")
                self._last = line
        return len(s)

    def flush(self) -> None:
        getattr(self.stream, "flush", lambda: None)()


class _LogBar(tqdm):
    """tqdm for a log: a new postfix (the loss, the current method) waits for the next timed redraw
    instead of forcing one, so a loop that sets it every step still writes one line per interval."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh=False)

    def close(self):
        # the final count is already the last line: tqdm's closing redraw would repeat it with the overall rate
        if not self.disable and getattr(self, "last_print_n", None) == self.n:
            self.leave = False
        super().close()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def bar(iterable: Iterable | None = None, *, desc: str, enabled: bool = True, total: int | None = None,
        initial: int = 0, stream: IO[str] | None = None) -> Any:
    """A progress bar over `iterable` (or a manual one with `total`), drawn on `stream` (stderr).

    `enabled=False` gives a silent pass-through (the `--quiet` flag). On a terminal the bar redraws in
    place and disappears when done; elsewhere see the module docstring."""
    stream = sys.stderr if stream is None else stream
    common = {"desc": desc, "total": total, "initial": initial, "disable": not enabled}
    if _is_terminal(stream):
        return tqdm(iterable, file=stream, leave=False, dynamic_ncols=True, **common)
    return _LogBar(iterable, file=LineWriter(stream), leave=True, ncols=100, ascii=True, mininterval=log_interval(),
                **common)


def log_interval() -> float:
    """Seconds between log lines: TQDM_MININTERVAL where it is set (read at each call, not only when
    tqdm is imported), else LOG_INTERVAL_S."""
    try:
        return max(0.0, float(os.environ["TQDM_MININTERVAL"]))
    except (KeyError, ValueError):
        return LOG_INTERVAL_S
