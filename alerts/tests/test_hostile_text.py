"""A tenant's stored text (service names, change events) reaches the evaluator's console and the
change listings: it is shown as text, never run as Rich markup or terminal control (2026-12-07
review: `service=pharmacy[/x]` ended `alerts evaluate` with a MarkupError, for every tenant)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from rich.console import Console

import clinotel.alerts.cli as cli
from clinotel.alerts.cli import _report
from clinotel.model.changes import Change
from clinotel.model.terminal import printable

HOSTILE = "pharmacy[/x] [link=http://evil.example]click[/link] \x1b[2J\x1b]0;T\x07\r\n- forged line \u202e"


def _summary(labels: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(
        skipped=None, transitions=[("sdk_phi_dropped", labels, "firing")], errors=[("sdk_phi_dropped", HOSTILE)],
        undelivered=[], attempts=[], rules=1, instances=1,
    )  # fmt: skip


def test_a_pass_prints_hostile_labels_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(cli, "_console", lambda err=False: Console(file=errors, force_terminal=True, width=400))
    errors = err
    assert _report(_summary({"service": HOSTILE}), Console(file=out, force_terminal=True, width=400), None)
    shown = out.getvalue() + err.getvalue()
    assert "pharmacy[/x] [link=http://evil.example]click[/link]" in shown, shown
    for raw in ("\x1b[2J", "\x1b]0", "\x07", "\r", "\u202e", "\x1b]8;"):  # no clear, title, bell, CR, RLO, link
        assert raw not in shown, (raw, shown)
    assert "\\x1b[2J" in shown


def test_a_change_is_one_line_whatever_its_text() -> None:
    change = Change(
        timestamp=datetime(2026, 12, 7, 11, 20, tzinfo=UTC), tenant="evil", service=HOSTILE, kind="deploy",
        name="ed-triage", version="v5",
    )  # fmt: skip
    line = change.line()
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert line.startswith("2026-12-07 11:20 UTC deploy ed-triage -> v5 by pharmacy[/x]")


def test_printable_keeps_only_what_it_is_told() -> None:
    assert printable("a\tb\nc\x00\x7f\x85\u200b") == "a\\x09b\\x0ac\\x00\\x7f\\x85\\u200b"
    assert printable("a\tb\nc\x1b", keep="\n\t") == "a\tb\nc\\x1b"
    assert printable("ESI-2 naïve 北") == "ESI-2 naïve 北"


def test_an_alert_of_no_tenant_lists_no_tenants_changes() -> None:
    """The collector's own rules (`spans_refused`, no tenant label) listed every tenant's change
    events, unlabelled, in the operator's page: they list none, and read nothing for them."""
    from clinotel.alerts.evaluator import Evaluator

    class ReadError(BaseException):  # not an Exception: `_changes` would swallow that
        pass

    class Unread:
        def query(self, *args: object, **kwargs: object) -> None:
            raise ReadError("no change is read for an alert of no tenant")

    evaluator = SimpleNamespace(changes_hours=6, client=Unread(), database="clinotel")
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert Evaluator._changes(evaluator, {"rule": "spans_refused"}, now) == ""  # type: ignore[arg-type]
    assert Evaluator._changes(evaluator, {"tenant": ""}, now) == ""  # type: ignore[arg-type]


def test_printable_escapes_what_shows_as_nothing_or_moves_text() -> None:
    """A third review found format characters and fillers the first list missed: isolates and
    their deprecated kin, tag characters, Arabic number signs, Hangul fillers, variation
    selectors, line separators."""
    for hidden in ("\u206a", "\U000e0041", "\u0600", "\u3164", "\ufe0f", "\u2028", "\u2029", "\u034f", "\u115f"):
        shown = printable(f"a{hidden}b")
        assert hidden not in shown, repr(hidden)
        assert shown.startswith("a\\")
        assert shown.endswith("b")


def test_an_engine_error_quoting_stored_text_is_one_printable_line() -> None:
    from clinotel.model.store import error_line

    said = error_line(RuntimeError("Code: 6. DB::Exception: Cannot parse string 'svc\x1b]0;T\x07\u202e' as Int32. "
                                   "(CANNOT_PARSE_TEXT) (version 26.9.2.1)"))  # fmt: skip
    assert said == "CANNOT_PARSE_TEXT (6): Cannot parse string 'svc\\x1b]0;T\\x07\\u202e' as Int32"


def test_printable_escapes_unassigned_code_points_and_a_leading_combining_mark() -> None:
    """Fourth review: unassigned code points (U+2065) drew as nothing, a combining mark at the
    start (U+0336) drew over what the terminal showed before it."""
    assert printable("a\u2065b") == "a\\u2065b"
    assert printable("\u0336x") == "\\u0336x"
    assert printable("e\u0301") == "e\u0301", "a mark on its own letter is text"


def test_an_engine_error_is_read_from_its_first_exception_and_a_servers_version() -> None:
    """Fourth review: a quoted `DB::Exception: ` in the data replaced the message; an official
    server's `(version 24.8.4.13 (official build))` was not cut and hid the name."""
    from clinotel.model.store import engine_message

    quoted = "Code: 395. DB::Exception: throwIf: 'msg DB::Exception: evil (READONLY)'. (FUNCTION_THROW) (version 26.9)"
    assert engine_message(quoted) == ("throwIf: 'msg DB::Exception: evil (READONLY)'", "FUNCTION_THROW")
    official = (
        "Code: 60. DB::Exception: Table default.x does not exist. (UNKNOWN_TABLE) (version 24.8.4.13 (official build))"
    )
    assert engine_message(official) == ("Table default.x does not exist", "UNKNOWN_TABLE")
