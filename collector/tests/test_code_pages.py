"""The engine's start-up code given back (`release_engine_code`): the library's resident pages
fall, the engine answers as before, and only the library's read-only mappings are advised."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clinotel.collector.store.code_pages import _read_only_mappings, engine_library_dir

CHILD = r"""
import json, sys
from pathlib import Path
from clinotel.collector.store.code_pages import engine_library_dir, release_engine_code
from clinotel.collector.store.embedded import connect

def library_rss_kb():
    prefix, total, inside = f"{engine_library_dir()}/", 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):
            inside = len(fields) > 5 and fields[5].startswith(prefix)
        elif fields[0] == "Rss:" and inside:
            total += int(fields[1])
    return total

client = connect(Path(sys.argv[1]))
client.command("CREATE TABLE t (n UInt64) ENGINE = MergeTree ORDER BY n")
client.command("INSERT INTO t SELECT number FROM numbers(100000)")
before = library_rss_kb()
released = release_engine_code()
after = library_rss_kb()
answer = client.query("SELECT sum(n), uniqExact(n % 7) FROM t").result_rows[0]
print(json.dumps({"before": before, "after": after, "released": released, "answer": list(answer),
                  "again": library_rss_kb()}))
"""


@pytest.mark.alone  # a page another process maps (an engine of a test beside it) stays resident
def test_the_engine_gives_back_its_start_up_code_and_answers_as_before(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("madvise(MADV_PAGEOUT) is Linux's")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "data")], capture_output=True, text=True, timeout=120, check=True
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["released"] == 0:
        pytest.skip("this kernel does not know MADV_PAGEOUT (Linux < 5.4)")
    assert out["answer"] == [sum(range(100_000)), 7]
    # most of what start-up ran is gone; what the query ran came back, not the rest
    assert out["after"] < out["before"] * 0.5, out
    assert out["again"] < out["before"] * 0.8, out


def test_only_the_librarys_read_only_mappings_are_advised() -> None:
    directory = engine_library_dir()
    assert directory is not None
    maps = b"\n".join(
        (
            b"7f0000000000-7f0000100000 r--p 00000000 08:01 1 %s/_chdb.abi3.so" % bytes(directory),
            b"7f0000100000-7f0000300000 r-xp 00100000 08:01 1 %s/_chdb.abi3.so" % bytes(directory),
            b"7f0000300000-7f0000310000 rw-p 00300000 08:01 1 %s/_chdb.abi3.so" % bytes(directory),
            b"7f0000400000-7f0000500000 r-xp 00000000 08:01 2 /usr/lib/libc.so.6",
            b"7f0000500000-7f0000600000 r-xp 00000000 08:01 3 %s-other/evil.so" % bytes(directory),
            b"7f0000600000-7f0000700000 r--p 00000000 08:01 4 /tmp/caf\xe9-latin1.bin",  # any bytes
            b"7f0000700000-7f0000800000 rw-p 00000000 00:00 0",
            b"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]",
        )
    )
    assert _read_only_mappings(directory, maps) == [(0x7F0000000000, 0x100000), (0x7F0000100000, 0x200000)]
