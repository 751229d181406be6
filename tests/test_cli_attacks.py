"""Hostile or mistaken input to the commands added for flags, changes, drift and rollout, and
credentials in URLs: one line (`Error: …`), exit code 1 or 2, never a traceback, never a
password echoed, and nothing created."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clinotel.cli import main
from tests.net import free_port
from tests.one_line import refused_in_one_line

SECRET = "s3cret-pw-7f2"
CLOSED = f"127.0.0.1:{free_port()}"
FLAGS_OK = (
    "flags:\n  - key: x\n    owner: team-a\n    created: 2026-01-01\n    expiry: 2999-06-30\n"
    "    kill_criteria: [canary_kill_under_triage]\n"
)
FILES = {
    "bad-date.yaml": "flags:\n  - key: x\n    owner: team-a\n    created: 2026-13-45\n    expiry: 2026-06-30\n",
    "bad-date-rules.yaml": "rules:\n  - name: x_rule\n    metric: fallback_rate\n    threshold: 1\n"
    "    window: 2026-02-30\n    severity: page\n    summary: s\n",
    "flags.yaml": FLAGS_OK,
    "list.flagd.json": json.dumps({"flags": ["triage-model-v4"]}),
}
CHANGES = ["changes", "add", "deploy", "svc", "--endpoint", f"http://{CLOSED}"]
DRIFT = ["drift", "check", "--data-dir", "nowhere"]

CASES: list[tuple[str, list[str], int, str]] = [
    ("flags check: a date that is none", ["flags", "check", "--file", "bad-date.yaml"], 1, "not valid YAML"),
    ("alerts check: a date that is none", ["alerts", "check", "--rules", "bad-date-rules.yaml"], 1, "not valid YAML"),
    ("changes add: now minus forever", [*CHANGES, "--at", "now-99999999999999d"], 2, "a time such as"),
    ("changes add: now minus superscript digits", [*CHANGES, "--at", "now-\u00b2h"], 2, "a time such as"),
    ("changes add: year 1", [*CHANGES, "--at", "0001-01-01T00:00:00"], 2, "from 1970"),
    ("changes add: far future", [*CHANGES, "--at", "2999-01-01T00:00:00Z"], 2, "a day from now"),
    ("changes add: a service of two lines", [*CHANGES, "--service", "jane doe\n## forged"], 2, "a label"),
    ("changes list: hours nan", ["changes", "list", "--data-dir", "nowhere", "--hours", "nan"], 2, "hours"),
    ("drift: window past the calendar", [*DRIFT, "--window", "1000000d", "--baseline", "1d"], 2, "10 years"),
    ("drift: baseline past any int", [*DRIFT, "--window", "1d", "--baseline", "99999999999999d"], 2, "10 years"),
    ("drift: threshold nan passes all", [*DRIFT, "--window", "1d", "--baseline", "1d", "--threshold", "nan"], 2,
     "a number"),
    ("rollout gate: until forever ago", ["rollout", "gate", "--flag", "x", "--from", "canary", "--to", "full",
     "--data-dir", "nowhere", "--until", "now-99999999999999d"], 2, "a time such as"),
    ("rehearse: flags is a list", ["rollout", "rehearse", "--flags", "list.flagd.json", "--rule",
     "canary_kill_under_triage"], 1, "has no flag"),
    ("alerts check: an endless rules file", ["alerts", "check", "--rules", "/dev/zero"], 1, "larger than 4 MiB"),
    ("flags check: an endless inventory", ["flags", "check", "--file", "/dev/zero"], 1, "larger than 4 MiB"),
    ("rehearse: an endless flagd file", ["rollout", "rehearse", "--flags", "/dev/zero", "--rule",
     "canary_kill_under_triage"], 2, "no such file"),
    ("flags check: server URL with a password", ["flags", "check", "--server", f"http://reader:{SECRET}@{CLOSED}"], 1,
     "cannot reach http://***@"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "code", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_1_or_2(
    argv: list[str], code: int, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    for name, text in FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    printed = refused_in_one_line(argv, code, says, capsys)
    assert SECRET not in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES), "nothing created"


@pytest.mark.parametrize(
    "endpoint",
    [
        f"http://ci:{SECRET} X@{CLOSED}",
        f"htp://ci:{SECRET}@x@{CLOSED}",
        f"http://ci:{SECRET}@[::1",
        f"ci:{SECRET}@{CLOSED}",
        f"http://ci:{SECRET}/b64+=@{CLOSED}",
    ],
    ids=["space", "at", "ipv6", "no-scheme", "slash"],  # the port is drawn per process: not in the ids (xdist)
)
def test_changes_add_never_echoes_a_password_the_exporter_cannot_parse(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A password with a space or an `@`, an unclosed IPv6 host, no scheme: the exporter's own
    words name the endpoint whole, credentials too (2026-12-07 review); the refusal says what they
    mean, and they stay out of the process's output."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    with pytest.raises(SystemExit) as exited:
        main(["changes", "add", "deploy", "svc", "--endpoint", endpoint])
    out, err = capsys.readouterr()
    assert exited.value.code == 1
    assert SECRET not in out + err
    assert SECRET not in caplog.text, "nor in what the process logs"
    assert "Traceback" not in err


def test_changes_add_never_echoes_the_password_in_its_endpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")  # bounded: the exporter's retries end sooner
    with pytest.raises(SystemExit) as exited:
        main(["changes", "add", "deploy", "svc", "--endpoint", f"http://ci:{SECRET}@{CLOSED}"])
    out, err = capsys.readouterr()
    assert exited.value.code == 1
    assert "did not accept the change events: connection refused" in err  # and why
    assert SECRET not in out + err


def test_serve_never_echoes_the_password_in_the_server_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--insecure-no-auth", "--clickhouse-url", f"http://writer:{SECRET}@{CLOSED}",
              "--otlp-http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])  # fmt: skip
    out, err = capsys.readouterr()
    assert exited.value.code == 1
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []


@contextmanager
def _collector_stand_in(status: int) -> Iterator[tuple[int, list[tuple[str, str | None]]]]:
    """A loopback HTTP server answering every POST with `status`: (its port, the (path,
    Authorization) of each request it saw)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port, seen
    finally:
        server.shutdown()
        server.server_close()


def test_changes_add_sends_an_endpoints_credentials_as_basic_authorization() -> None:
    """The credentials of `http://user:pass@host` reach the collector as the Basic authorization
    requests makes of them, and the exporter never sees them in its URL (which it logs)."""
    import base64

    from clinotel.instrumentation.changes import ChangeSpec, SendError, send_changes

    with _collector_stand_in(401) as (port, seen), pytest.raises(SendError) as refused:
        send_changes([ChangeSpec("deploy", "svc")], endpoint=f"http://ci:{SECRET}%2Fx@127.0.0.1:{port}")
    assert [auth for _, auth in seen] == ["Basic " + base64.b64encode(f"ci:{SECRET}/x".encode()).decode()]
    assert refused.value.status == 401
    assert SECRET not in str(refused.value)


def test_changes_add_reads_an_at_in_the_path_or_query_as_no_user() -> None:
    """Splitting at the last `@` anywhere sent the events to the host after an `@` in the query
    (`?owner=ops@elsewhere`), with the collector's address as a password (fourth review)."""
    from clinotel.instrumentation.changes import ChangeSpec, send_changes

    with _collector_stand_in(200) as (port, seen):
        send_changes([ChangeSpec("deploy", "svc")], endpoint=f"http://127.0.0.1:{port}/v1/traces?owner=ops@{CLOSED}")
    assert seen == [(f"/v1/traces?owner=ops@{CLOSED}", None)]
