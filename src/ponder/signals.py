"""Graceful stops: SIGINT/SIGTERM set a flag that long loops check between steps.

A training loop that sees the flag finishes its step, writes a checkpoint and raises `Interrupted`;
a sampling loop raises it between chunks (its phase is redone on resume). The CLI turns it into a
message saying how to resume. A second signal restores the default handler, so a second Ctrl-C
kills at once.
"""

from __future__ import annotations

import signal
import threading

STOP = threading.Event()


class Interrupted(Exception):
    """Raised by a loop that stopped because SIGINT/SIGTERM asked it to."""


def stop_requested() -> bool:
    return STOP.is_set()


def check_stop(where: str) -> None:
    """Raise `Interrupted` if a stop was requested."""
    if STOP.is_set():
        raise Interrupted(where)


def install_handlers() -> None:
    """Make SIGINT and SIGTERM request a graceful stop (main thread only)."""
    STOP.clear()

    def handler(signum, frame):
        STOP.set()
        signal.signal(signum, signal.SIG_DFL)  # a second signal stops at once

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
