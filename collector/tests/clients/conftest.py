"""The clients of the matrix, installed once per test session into a temporary directory: the
pinned npm packages of `node/package.json`. Node.js and npm come from the system
(scripts/system-packages.sh installs them); only where they cannot be installed do these tests
skip, and never in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"
NPM_TIMEOUT_S = 300
PYTHON_JSON_EXPORTER = "opentelemetry-exporter-otlp-json-http==0.66b1"
"""OpenTelemetry Python's OTLP/JSON exporter pins SDK companions that differ from the project's
(see constraints.txt), so it gets a virtual environment of its own."""


def missing(tool: str) -> None:
    """Skip for a tool that is not here, except in CI, where its absence is a failure."""
    message = f"{tool} is not installed (scripts/system-packages.sh installs it where apt-get can)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def node_clients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the pinned Node.js clients installed and the matrix's scripts beside them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        missing("Node.js and npm")
    directory = tmp_path_factory.mktemp("node-clients")
    for item in NODE_DIR.iterdir():
        shutil.copy(item, directory / item.name)
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"npm install failed: {done.stderr[-2000:]}"
    return directory


def run_node(directory: Path, script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs one of the matrix's scripts; its stdout, or a failure with its stderr."""
    done = subprocess.run(
        [shutil.which("node") or "node", script, *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert done.returncode == 0, f"node {script} {' '.join(args)} failed: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="session")
def python_json_exporter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python interpreter of a virtual environment with the official OTLP/JSON exporter."""
    directory = tmp_path_factory.mktemp("python-json-exporter")
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, timeout=120)
    python = directory / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", PYTHON_JSON_EXPORTER],
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"pip install {PYTHON_JSON_EXPORTER} failed: {done.stderr[-2000:]}"
    return python
