"""Import the embedded engine without pyarrow.

chDB's connection module imports pyarrow when it is loaded, for the Arrow results it can return
(`ArrowTable`, record batches), and pyarrow imports numpy. The collector reads the engine through
clickhouse-connect's Native format and never asks chDB for Arrow, yet the two libraries stayed
resident: about 40 MB of a collector's memory (measured 2026-12-05: an idle engine's process 291 →
252 MB; file pages 207 → 179, anonymous 85 → 73). chDB supports running without pyarrow (its
Arrow APIs then say so when called), so the engine is imported with pyarrow hidden; a process that
imported pyarrow already keeps it, and anything importing it afterwards gets it as usual.
"""

from __future__ import annotations

import sys
import threading
from typing import Final

__all__ = ["ARROW_MODULE", "import_engine"]

ARROW_MODULE: Final = "pyarrow"
_ENGINE_MODULE: Final = "chdb.state.sqlitelike"
"""chDB's module that imports pyarrow when loaded (the others import it when an Arrow API is called)."""
_lock: Final = threading.Lock()


def import_engine() -> None:
    """Import chDB (its connection module included) without loading pyarrow, unless this process
    has loaded pyarrow already. Call before the first `chdb.connect` or clickhouse-connect client
    on a chdb:// DSN; later calls do nothing."""
    with _lock:
        if _ENGINE_MODULE in sys.modules:
            return
        hidden = ARROW_MODULE not in sys.modules
        if hidden:
            sys.modules[ARROW_MODULE] = None  # type: ignore[assignment]  # `import pyarrow` raises ImportError
        try:
            import chdb.state.sqlitelike  # noqa: F401
        finally:
            if hidden and sys.modules.get(ARROW_MODULE, False) is None:
                del sys.modules[ARROW_MODULE]
