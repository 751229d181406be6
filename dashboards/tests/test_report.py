"""The offline report: every panel drawn into one self-contained HTML file that headless
Chromium opens with no console errors and renders to a screenshot that is not blank."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from clinotel.collector.service import Collector
from collector.tests.fixtures import OPERATOR_TOKEN, WRITE_TOKEN
from dashboards.tests.demo_data import load_demo

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
)  # fmt: skip


def _distinct_rows(png: bytes) -> int:
    """How many different pixel rows a PNG has: a blank page has one or two."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, bpp = 8, b"", 0, 4
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, _, depth, color = struct.unpack(">IIBB", data[:10])
            bpp = {2: 3, 6: 4}.get(color, 4) * depth // 8
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * bpp
    return len({raw[i + 1 : i + stride] for i in range(0, len(raw), stride)})


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (make test installs it where apt-get is available)")
    return path


def test_the_report_draws_every_panel_and_chromium_renders_it(
    collector: Collector, chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinotel.dashboards.cli import report

    load_demo(collector, WRITE_TOKEN, workflows=1500)
    assert collector.admin is not None
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", OPERATOR_TOKEN)
    out = tmp_path / "report.html"
    args = ["--server", f"http://127.0.0.1:{collector.admin.port}", "--database", collector.options.database]
    result = CliRunner().invoke(report, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert re.search(r"\(\d+ panels, 0 failed", result.output)
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "self-contained: nothing fetched"
    assert page.count("<polyline") > 30
    assert "Model under-triage" in page
    assert "Alert timeline" in page

    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400",
         f"--screenshot={shot}", out.as_uri()],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert shot.exists(), done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    assert _distinct_rows(shot.read_bytes()) > 100, "the screenshot is blank"
