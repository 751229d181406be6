"""`serve --fsync-parts`: the embedded engine syncs every part an insert writes before the INSERT
returns (so before the writer deletes the log segment), and only when asked; a server is told to
use its own configuration; `/metrics` says which. Merged parts are synced whatever the flag. Each
engine runs in a child process (its settings are per process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clinotel.collector.service import CollectorConfig, ConfigError
from clinotel.collector.store.embedded import DURABLE_PART_SETTINGS

CHILD = r"""
import json, sys
from pathlib import Path
from clinotel.collector.store import pipeline as ingest
from collector.tests.fixtures import started_collector
from collector.tests.test_outcome_join import _scenario
work = Path(sys.argv[1])
collector = started_collector(work, fsync_parts=sys.argv[2] == "on")
client, o = collector.client, collector.options
names = ("fsync_after_insert", "fsync_part_directory")
settings = dict(client.query(
    "SELECT name, value FROM system.merge_tree_settings WHERE name IN %(n)s", parameters={"n": names}
).result_rows)
def syncs():
    return int(client.command("SELECT toUInt64(sum(value)) FROM system.events WHERE event = 'FileSync'"))
def inserted_parts():  # three inserts leave too few parts of a size for a merge to replace them
    return int(client.command(f"SELECT count() FROM system.parts WHERE database = '{o.database}' AND level = 0"))
before, parts_before = syncs(), inserted_parts()
_scenario(client, ingest.install(client, o), work)
out = {"settings": settings, "syncs": syncs() - before, "parts": inserted_parts() - parts_before}
out["metric"] = [line for line in collector.metrics().splitlines() if line.startswith("clinotel_store_parts_synced")]
collector.stop()
print(json.dumps(out))
"""


def _run(tmp_path: Path, mode: str) -> dict[str, Any]:
    work = tmp_path / mode
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(work), mode],
        capture_output=True, text=True, timeout=180, check=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_with_fsync_parts_every_inserted_part_is_synced_and_without_it_none_is(tmp_path: Path) -> None:
    on, off = _run(tmp_path, "on"), _run(tmp_path, "off")
    assert on["settings"] == DURABLE_PART_SETTINGS
    assert off["settings"] == dict.fromkeys(DURABLE_PART_SETTINGS, "0")
    assert on["parts"] >= 6, on  # three inserts, each a part in several tables
    assert off["parts"] == on["parts"]
    assert on["syncs"] >= on["parts"], f"each inserted part is synced at least once: {on}"
    assert off["syncs"] < on["parts"], f"without the flag the engine leaves parts to the kernel: {off}"
    assert on["metric"] == ["clinotel_store_parts_synced 1"]
    assert off["metric"] == ["clinotel_store_parts_synced 0"]


def test_fsync_parts_is_refused_with_a_server() -> None:
    """A server's parts follow its own configuration: the flag would change nothing there."""
    config = CollectorConfig(
        data_dir=None, clickhouse_url="http://127.0.0.1:8123", insecure_no_auth=True, fsync_parts=True
    )
    with pytest.raises(ConfigError, match="fsync_after_insert"):
        config.validate()
    CollectorConfig(data_dir=None, clickhouse_url="http://127.0.0.1:8123", insecure_no_auth=True).validate()


def test_the_parts_synced_gauge_is_left_out_for_a_server() -> None:
    """`clinotel_store_parts_synced` speaks for the embedded engine only: a server's own settings
    decide there, and a 0 would say something the collector does not know."""
    from types import SimpleNamespace

    from clinotel.collector.receiver.export import ReceiverStats
    from clinotel.collector.telemetry.metrics import collect, render
    from clinotel.collector.writer import WriterStats

    wal = SimpleNamespace(pending_bytes=0, max_bytes=1 << 20)
    shown = {
        synced: render(collect(ReceiverStats(), wal, WriterStats(), parts_synced=synced))  # type: ignore[arg-type]
        for synced in (True, False, None)
    }
    assert "clinotel_store_parts_synced 1\n" in shown[True]
    assert "clinotel_store_parts_synced 0\n" in shown[False]
    assert "clinotel_store_parts_synced" not in shown[None]
    assert "# TYPE clinotel_store_parts_synced gauge" in shown[True]


MERGE_CHILD = r"""
import json, sys
from pathlib import Path
from clinotel.collector.store import embedded
if sys.argv[2] == "engine default":
    del embedded.MERGE_TREE_SETTINGS["min_rows_to_fsync_after_merge"]
client = embedded.connect(Path(sys.argv[1]), memory_bytes=512 << 20)
client.command("CREATE TABLE default.t (k UInt64) ENGINE = MergeTree ORDER BY k")
for i in range(3):
    client.command(f"INSERT INTO default.t SELECT number FROM numbers({i * 100}, 100)")
def syncs():
    return int(client.command("SELECT toUInt64(sum(value)) FROM system.events WHERE event = 'FileSync'"))
before = syncs()
client.command("OPTIMIZE TABLE default.t FINAL")
lifetime = client.command("SELECT value FROM system.merge_tree_settings WHERE name = 'old_parts_lifetime'")
active = client.query("SELECT count(), sum(rows) FROM system.parts WHERE table = 't' AND active").result_rows[0]
print(json.dumps({"syncs": syncs() - before, "active": list(active), "old_parts_lifetime": int(lifetime)}))
"""


def _merge(tmp_path: Path, mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", MERGE_CHILD, str(tmp_path / mode.replace(" ", "-")), mode],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_merged_part_is_synced_before_it_replaces_its_sources(tmp_path: Path) -> None:
    """This engine deletes the parts a merge replaced at once (a ClickHouse server keeps them 8
    minutes against exactly this): an unsynced merged part would be the only copy of rows of any
    age until the kernel writes it back. With or without `--fsync-parts`, it is synced."""
    ours, engine = _merge(tmp_path, "collector"), _merge(tmp_path, "engine default")
    assert ours["old_parts_lifetime"] == 0, "the engine keeps replaced parts: the sync may no longer be needed"
    assert ours["active"] == engine["active"] == [1, 300]
    assert ours["syncs"] >= 1, ours
    assert engine["syncs"] == 0, engine
