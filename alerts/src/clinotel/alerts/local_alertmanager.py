"""A Prometheus Alertmanager on loopback, for the demo and the tests: routes every alert to one
webhook, groups by rule, tenant and kind, waits one second, and sends resolutions."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Final

__all__ = ["LocalAlertmanager", "find_binary"]


def find_binary() -> str | None:
    """Debian's `prometheus-alertmanager`, or an `alertmanager` on the PATH."""
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


_WITH_PARENT: Final = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"  # PR_SET_PDEATHSIG: SIGTERM when the parent ends
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(0)\n"  # it ended before the line above
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)
"""Runs a command that ends with the thread that started it, however that ends (an `os._exit`
skips every `stop`: a demo whose engine failed left its Alertmanager running). Through a short
interpreter of its own, not `preexec_fn`, which is unsafe in a process with threads."""


def _with_parent(command: list[str]) -> list[str]:
    """`command` ending with this process's calling thread where Linux allows it, else as it is."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-c", _WITH_PARENT, str(os.getpid()), *command]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalAlertmanager:
    """Start with `start()`; `url` is its API; `stop()` ends it, and so does the end of the thread
    that started it (on Linux), however that ends. Its log is kept in `workdir`."""

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
            _with_parent([
                self.binary, f"--config.file={config}", f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=warn",
            ]),
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
