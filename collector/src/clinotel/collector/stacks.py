"""`kill -USR1 PID`: every thread's Python stack on stderr, and the collector runs on.

The dump is written by a thread of its own that waits for the signal (`sigwait`), with the signal
blocked in the threads started after it (the engine's among them), and it walks the other
threads' frames holding the GIL: no Python runs meanwhile, so no frame changes under it.

Not `faulthandler.register`: its handler runs on whichever thread the kernel hands the signal to,
often one of the embedded engine's, and walks the frames of threads that are running. Under load
it crashed there; the engine caught the crash as a fatal error of its own and refused every insert
after it (found on 2026-12-03: 40 signals to a loaded collector, two dumps, then no span stored).
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
from typing import Final, TextIO

__all__ = ["DUMP_SIGNAL", "dump_stacks", "install_stack_dump"]

DUMP_SIGNAL: Final = getattr(signal, "SIGUSR1", None)
"""The signal that asks for the dump (None where the platform has no SIGUSR1)."""


def dump_stacks(file: TextIO | None = None) -> None:
    """Every thread's Python stack on `file` (default: stderr), from the calling thread."""
    out = file if file is not None else sys.stderr
    out.flush()
    faulthandler.dump_traceback(file=out, all_threads=True)


def install_stack_dump() -> bool:
    """Dump every thread's stack on SIGUSR1 for the rest of the process. Call it from the main
    thread before starting others: they inherit the blocked signal, so the kernel hands it to the
    waiting thread. A thread started before still has it unblocked; if it gets the signal, the
    main thread dumps. False where the platform cannot (no SIGUSR1 or no `sigwait`)."""
    signum = DUMP_SIGNAL
    if signum is None or not hasattr(signal, "sigwait") or threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signum, lambda _signum, _frame: dump_stacks())
    signal.pthread_sigmask(signal.SIG_BLOCK, {signum})

    def wait() -> None:
        while True:
            signal.sigwait({signum})
            dump_stacks()

    threading.Thread(target=wait, name="clinotel-stacks", daemon=True).start()
    return True
