"""Every command, given bad input, answers with one line (`Error: …`) and exit code 1 or 2: never
a Python traceback, and nothing created before the input was checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from clinotel.alerts import default_rules_path
from clinotel.cli import main
from clinotel.collector.tokens import TokenError, Tokens
from tests.net import free_port
from tests.one_line import refused_in_one_line

UNREACHABLE = f"http://127.0.0.1:{free_port()}"
TOKEN = "a-token-of-twenty-characters"
DUPLICATE_TOKENS = f"""# two grants, one token
[[token]]
tenant = "st-marys"
token = "{TOKEN}"

[[token]]
tenant = "general"
role = "read"
token = "other-token-0123456789"

[[token]]
tenant = "general"
sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"
"""
FILES = {
    "bad.yaml": "rules:\n  - name: x_rule\n    metric: fallback_rate\n    threshold: 1\n    window: soon\n"
    "    severity: page\n    summary: bad window\n",
    "not-yaml.yaml": "rules: [oops\n",
    "dup.toml": DUPLICATE_TOKENS,
    "broken.toml": "[[token\n",
    "a-file": "",
}
DEFAULT_RULES = str(default_rules_path())

CASES: list[tuple[str, list[str], int, str]] = [
    ("demo: negative workflows", ["demo", "--workflows", "-5"], 2, "-5 is not in the range"),
    ("demo: hours not a number", ["demo", "--hours", "soon"], 2, "'soon' is not a valid float"),
    ("demo: zero alert step", ["demo", "--alert-step-min", "0"], 2, "not in the range"),
    ("semconv: output under a file", ["semconv", "docs", "--out", "a-file/docs.md"], 1, "a-file"),
    ("schema show: ttl 0", ["schema", "show", "--ttl-days", "0"], 2, "ttl_days must be a positive"),
    ("schema apply: two stores", ["schema", "apply", "--data-dir", "d", "--clickhouse-url", "http://x"], 2, "not both"),
    ("schema apply: not a URL", ["schema", "apply", "--clickhouse-url", "ftp://x"], 1, "http:// or https://"),
    ("schema apply: unreachable", ["schema", "apply", "--clickhouse-url", UNREACHABLE], 1, "connection refused"),
    ("schema proto: out is a file", ["schema", "proto", "--out", "a-file"], 2, "is a file"),
    ("serve: port 99999", ["serve", "--otlp-http", "127.0.0.1:99999"], 2, "99999 is not a port"),
    ("serve: no port", ["serve", "--otlp-grpc", "localhost"], 2, "expected HOST:PORT"),
    (
        "serve: a port in superscript digits",
        ["serve", "--otlp-http", "127.0.0.1:\u00b9\u00b2"],
        2,
        "expected HOST:PORT",
    ),
    ("serve: an address with a scheme", ["serve", "--otlp-http", "http://127.0.0.1:24318"], 2, "without a scheme"),
    (
        "serve: one address for two listeners",
        ["serve", "--insecure-no-auth", "--otlp-http", "127.0.0.1:24318", "--http", "127.0.0.1:24318"],
        1,
        "--otlp-http and --http both name 127.0.0.1:24318: give each listener a port of its own",
    ),
    ("serve: no tokens", ["serve"], 1, "give --tokens FILE, or --insecure-no-auth"),
    (
        "serve: a database named like a view's alias",
        ["serve", "--insecure-no-auth", "--database", "m"],
        1,
        "at least 3 characters",
    ),
    ("serve: engine memory 0", ["serve", "--insecure-no-auth", "--memory-mb", "0"], 2, "0 is not in the range"),
    ("serve: engine memory not a number", ["serve", "--memory-mb", "lots"], 2, "'lots' is not a valid integer"),
    (
        "serve: engine memory past any machine",
        ["serve", "--insecure-no-auth", "--memory-mb", str(1 << 40)],
        2,
        "is not in the range",
    ),
    (
        "serve: engine memory below its floor",
        ["serve", "--insecure-no-auth", "--memory-mb", "64"],
        2,
        "64 is not in the range 448<=x<=",
    ),
    (
        "serve: rollup interval negative",
        ["serve", "--insecure-no-auth", "--rollup-interval-s", "-1"],
        2,
        "is not in the range",
    ),
    (
        "serve: rollup interval not a number",
        ["serve", "--insecure-no-auth", "--rollup-interval-s", "nan"],
        1,
        "--rollup-interval-s: from 1 to 3600 seconds",
    ),
    (
        "serve: rollup interval under a second",
        ["serve", "--insecure-no-auth", "--rollup-interval-s", "0.01"],
        1,
        "--rollup-interval-s: from 1 to 3600 seconds (0: never)",
    ),
    (
        "serve: retry window not a number",
        ["serve", "--insecure-no-auth", "--retry-window-s", "nan"],
        1,
        "--retry-window-s: from 0 to 3600 seconds (0: never)",
    ),
    (
        "serve: retry window negative",
        ["serve", "--insecure-no-auth", "--retry-window-s", "-1"],
        2,
        "is not in the range",
    ),
    (
        "serve: retry window of a day",
        ["serve", "--insecure-no-auth", "--retry-window-s", "86400"],
        2,
        "not in the range",
    ),
    (
        "serve: new days a second not a number",
        ["serve", "--insecure-no-auth", "--new-days-per-s", "nan"],
        1,
        "--new-days-per-s: from 32 to 100000 (0: unpaced)",
    ),
    (
        "serve: new days a second so few a request would wait for hours",
        ["serve", "--insecure-no-auth", "--new-days-per-s", "1e-320"],
        1,
        "--new-days-per-s: from 32 to 100000 (0: unpaced)",
    ),
    (
        "serve: new days a second negative",
        ["serve", "--insecure-no-auth", "--new-days-per-s", "-5"],
        2,
        "not in the range",
    ),
    (
        "serve: new days a second infinite",
        ["serve", "--insecure-no-auth", "--new-days-per-s", "inf"],
        2,
        "not in the range",
    ),
    (
        "serve: rollup window of no days",
        ["serve", "--insecure-no-auth", "--rollup-window-days", "0"],
        2,
        "0 is not in the range",
    ),
    (
        "serve: rollup window past a year",
        ["serve", "--insecure-no-auth", "--rollup-window-days", "100000"],
        2,
        "is not in the range",
    ),
    ("refresh-rollups: no store here", ["schema", "refresh-rollups", "--data-dir", "none"], 1, "no clinotel store at"),
    (
        "refresh-rollups: not a day",
        ["schema", "refresh-rollups", "--since", "2026-13-40"],
        2,
        "does not match the format",
    ),
    (
        "refresh-rollups: both stores",
        ["schema", "refresh-rollups", "--data-dir", "d", "--clickhouse-url", "http://127.0.0.1:1"],
        2,
        "give --data-dir or --clickhouse-url, not both",
    ),
    (
        "serve: open off loopback",
        ["serve", "--insecure-no-auth", "--http", "0.0.0.0:8123"],
        1,
        "refused on a non-loopback",
    ),
    ("serve: bad rules", ["serve", "--insecure-no-auth", "--rules", "bad.yaml"], 1, "bad.yaml:5: rules.0.window"),
    (
        "serve: bad interval",
        ["serve", "--insecure-no-auth", "--rules", DEFAULT_RULES, "--evaluate-every", "soon"],
        2,
        "a duration such as",
    ),
    (
        "serve: zero interval",
        ["serve", "--insecure-no-auth", "--rules", DEFAULT_RULES, "--evaluate-every", "0s"],
        2,
        "above zero",
    ),
    (
        "serve: pages without rules",
        ["serve", "--insecure-no-auth", "--alertmanager", "http://am:9093"],
        2,
        "give --rules FILE too",
    ),
    (
        "serve: alertmanager not a URL",
        ["serve", "--insecure-no-auth", "--rules", DEFAULT_RULES, "--alertmanager", "am:9093"],
        2,
        "an http:// or https:// URL",
    ),
    (
        "serve: a pager without rules",
        ["serve", "--insecure-no-auth", "--pagerduty"],
        2,
        "give --rules FILE too",
    ),
    (
        "serve: webhook with a header in it",
        ["serve", "--insecure-no-auth", "--rules", DEFAULT_RULES, "--webhook", "http://h.test/\r\nX-Evil: 1"],
        2,
        "without spaces or control characters",
    ),
    (
        "serve: unknown sink",
        ["serve", "--insecure-no-auth", "--rules", DEFAULT_RULES, "--sink", "slack"],
        2,
        "unknown alert sink 'slack'; known: alertmanager, pagerduty, webhook",
    ),
    (
        "serve: no routing key",
        ["serve", "--insecure-no-auth", "--rules", DEFAULT_RULES, "--pagerduty"],
        2,
        "PAGERDUTY_ROUTING_KEY",
    ),
    ("serve: missing rules", ["serve", "--insecure-no-auth", "--rules", "nowhere.yaml"], 1, "nowhere.yaml"),
    (
        "serve: two stores",
        ["serve", "--insecure-no-auth", "--data-dir", "d", "--clickhouse-url", "http://x"],
        2,
        "not both",
    ),
    (
        "serve: server not a URL",
        ["serve", "--insecure-no-auth", "--clickhouse-url", "ftp://x"],
        1,
        "http:// or https://",
    ),
    ("serve: missing tokens file", ["serve", "--tokens", "nowhere.toml"], 2, "does not exist"),
    ("serve: broken tokens", ["serve", "--tokens", "broken.toml"], 1, "broken.toml"),
    (
        "serve: one token, two tenants",
        ["serve", "--tokens", "dup.toml"],
        1,
        "dup.toml:10: the same token as line 2 (st-marys, write)",
    ),
    ("serve: request limit 0", ["serve", "--insecure-no-auth", "--max-request-mb", "0"], 2, "not in the range"),
    ("query: no SQL", ["query"], 2, "Missing argument 'SQL'"),
    ("query: two stores", ["query", "--server", "http://x", "--data-dir", "d", "SELECT 1"], 2, "not both"),
    ("query: not a URL", ["query", "--server", "ftp://x", "SELECT 1"], 1, "http:// or https://"),
    ("query: unreachable", ["query", "--server", UNREACHABLE, "SELECT 1"], 1, "connection refused"),
    ("query: no store", ["query", "--data-dir", "nowhere", "SELECT 1"], 1, "no clinotel store at"),
    ("dashboards build: no --out", ["dashboards", "build"], 2, "Missing option '--out'"),
    ("dashboards check: unreachable", ["dashboards", "check", "--server", UNREACHABLE], 1, "connection refused"),
    ("report: no store", ["report", "--data-dir", "nowhere"], 1, "no clinotel store at"),
    ("report: rules missing", ["report", "--data-dir", "nowhere", "--rules", "nowhere.yaml"], 2, "nowhere.yaml"),
    ("report: rules not YAML", ["report", "--data-dir", "nowhere", "--rules", "not-yaml.yaml"], 2, "not valid YAML"),
    ("report: bad rules", ["report", "--data-dir", "nowhere", "--rules", "bad.yaml"], 2, "bad.yaml:5: rules.0.window"),
    ("report: rules a directory", ["report", "--data-dir", "nowhere", "--rules", "."], 2, "is a directory"),
    ("alerts check: missing file", ["alerts", "check", "--rules", "nowhere.yaml"], 1, "nowhere.yaml"),
    ("alerts check: not YAML", ["alerts", "check", "--rules", "not-yaml.yaml"], 1, "not valid YAML"),
    ("alerts evaluate: bad interval", ["alerts", "evaluate", "--every", "soon"], 2, "a duration such as"),
    ("alerts evaluate: not a URL", ["alerts", "evaluate", "--once", "--webhook", "hooks"], 2, "an http:// or https://"),
    ("alerts evaluate: no routing key", ["alerts", "evaluate", "--once", "--pagerduty"], 2, "PAGERDUTY_ROUTING_KEY"),
    ("alerts evaluate: no store", ["alerts", "evaluate", "--once"], 1, "no clinotel store at"),
    (
        "alerts evaluate: unknown sink",
        ["alerts", "evaluate", "--once", "--sink", "slack"],
        2,
        "unknown alert sink 'slack'; known: alertmanager, pagerduty, webhook",
    ),
    ("alerts evaluate: odd sink name", ["alerts", "evaluate", "--once", "--sink", "../x"], 2, "a sink name"),
    (
        "alerts evaluate: sink without URL",
        ["alerts", "evaluate", "--once", "--sink", "alertmanager"],
        2,
        "needs --alertmanager URL",
    ),
    (
        "alerts evaluate: unreachable",
        ["alerts", "evaluate", "--once", "--server", UNREACHABLE],
        1,
        "connection refused",
    ),
    (
        "alerts export: bad rules",
        ["alerts", "export", "--out", "x", "--rules", "bad.yaml", "--alertmanager", "http://am:9093"],
        1,
        "rules.0.window",
    ),
    ("alerts export: nowhere to page", ["alerts", "export", "--out", "x"], 2, "nowhere to go"),
    ("compose generate: no compose dir", ["compose", "generate", "--dir", "."], 2, "has no compose.yaml"),
    ("unknown command", ["nosuch"], 2, "No such command"),
]


@pytest.mark.parametrize(("argv", "code", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_1_or_2(
    argv: list[str],
    code: int,
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY", raising=False)
    for name, text in FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        (tmp_path / name).chmod(0o600)  # a tokens file others can read is refused before its content
    refused_in_one_line(argv, code, says, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES), "nothing created"


def test_one_token_listed_under_two_tenants_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(DUPLICATE_TOKENS, encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(TokenError) as refused:
        Tokens.load(path)
    assert str(refused.value) == f"{path}:10: the same token as line 2 (st-marys, write); one token, one grant"


def test_alerts_check_prints_the_whole_table_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from clinotel.alerts.rules import load

    with pytest.raises(SystemExit) as exited:
        main(["alerts", "check"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "…" not in out, "nothing cut short"
    for rule in load(default_rules_path()).rules:
        row = next(line for line in out.splitlines() if f" {rule.name} " in line)
        assert f" {rule.metric} " in row, row
        assert f" {rule.severity} " in row, row
