"""Reading the configuration files an operator writes (rules, the flag inventory, a flagd file):
bounded, because they are kilobytes and a path to something endless (`/dev/zero`, a log) must fail
with a clear error rather than fill the memory of the process that pages people."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["MAX_CONFIG_BYTES", "ConfigTooLargeError", "read_config"]

MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024
"""The largest configuration file read: far above any real rules file or flag inventory."""


class ConfigTooLargeError(ValueError):
    """A configuration file over the limit."""


def read_config(path: Path, limit: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of `path`. OSError when it cannot be read, ConfigTooLargeError over `limit`
    bytes, UnicodeDecodeError when it is not text."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ConfigTooLargeError(f"larger than {limit / 2**20:g} MiB: not a configuration file")
    return data.decode("utf-8")
