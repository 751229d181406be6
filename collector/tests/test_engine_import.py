"""The embedded engine is opened without pyarrow (about 40 MB of a collector's memory), and a
process that wants pyarrow still gets it. Run in a fresh interpreter: the test process may have
loaded pyarrow through another test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_OPEN = """
import json, sys
from pathlib import Path
{before}
from clinotel.collector.store.embedded import connect
client = connect(Path(sys.argv[1]) / "data", memory_bytes=512 << 20)
answer = client.command("SELECT 40 + 2")
loaded = sys.modules.get("pyarrow") is not None
numpy = "numpy" in sys.modules
import pyarrow
print(json.dumps({{"answer": answer, "pyarrow": loaded, "numpy": numpy, "later": pyarrow.__name__}}))
"""


def _run(tmp_path: Path, before: str = "") -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _OPEN.format(before=before), str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_the_engine_opens_and_answers_without_loading_pyarrow_or_numpy(tmp_path: Path) -> None:
    result = _run(tmp_path)
    assert result == {"answer": 42, "pyarrow": False, "numpy": False, "later": "pyarrow"}


def test_a_process_that_loaded_pyarrow_first_keeps_it(tmp_path: Path) -> None:
    result = _run(tmp_path, before="import pyarrow")
    assert result["answer"] == 42
    assert result["pyarrow"] is True


def test_the_read_port_opens_the_engine_without_pyarrow(tmp_path: Path) -> None:
    script = """
import json, sys
from pathlib import Path
from clinotel.collector.readport.reader import SqlReader
from clinotel.collector.store.embedded import connect
from clinotel.collector.store import schema
client = connect(Path(sys.argv[1]) / "data", memory_bytes=512 << 20)
schema.apply(client, schema.SchemaOptions())
reader = SqlReader(Path(sys.argv[1]) / "data", "clinotel", ["otel_traces"])
print(json.dumps({"version": bool(reader.version), "pyarrow": sys.modules.get("pyarrow") is not None}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"version": True, "pyarrow": False}
