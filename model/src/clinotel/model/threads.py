"""Background threads that never die quietly: one that stops by itself is logged and reported, so
its process can stop acknowledging and exit instead of accepting what nobody will store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["guarded"]

logger: Final = logging.getLogger("clinotel")


def guarded(
    target: Callable[[], None],
    name: str,
    on_death: Callable[[str], None],
    expected: tuple[type[BaseException], ...] = (),
) -> threading.Thread:
    """A daemon thread running `target`; if `target` raises, the error is logged (with its
    traceback, unless it is one of the `expected` kinds) and `on_death` gets a one-line reason.
    A normal return is not a death."""

    def run() -> None:
        try:
            target()
        except BaseException as e:  # whatever stops the thread is reported
            reason = f"{name} stopped: {e}" if isinstance(e, expected) else f"{name} stopped: {type(e).__name__}: {e}"
            logger.critical("%s", reason, exc_info=not isinstance(e, expected))
            on_death(reason)

    return threading.Thread(target=run, name=name, daemon=True)
