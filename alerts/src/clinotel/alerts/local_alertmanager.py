"""A Prometheus Alertmanager on loopback, for the demo and the tests: routes every alert to one
webhook, groups by rule, tenant and kind, waits one second, and sends resolutions."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import IO

__all__ = ["LocalAlertmanager", "find_binary"]


def find_binary() -> str | None:
    """Debian's `prometheus-alertmanager`, or an `alertmanager` on the PATH."""
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalAlertmanager:
    """Start with `start()`; `url` is its API; `stop()` ends it. Its log is kept in `workdir`."""

    def __init__(self, binary: str, webhook_url: str, workdir: Path) -> None:
        self.binary = binary
        self.webhook_url = webhook_url
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout_s: float = 20) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: sink\n  group_by: [alertname, tenant, kind]\n  group_wait: 1s\n"
            "  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: sink\n    webhook_configs:\n"
            f"      - url: {self.webhook_url}\n        send_resolved: true\n",
            encoding="utf-8",
        )
        self._log = (self.workdir / "alertmanager.log").open("wb")
        self._process = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        log = (self.workdir / "alertmanager.log").read_text(errors="replace")[-500:]
        raise RuntimeError(f"Alertmanager did not become ready: {log}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
