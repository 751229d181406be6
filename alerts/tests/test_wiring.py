"""One alerting configuration, one construction: sinks found by name in the `clinotel.alert_sinks`
entry points (the shipped three, and a plug-in installed as a real distribution on sys.path),
routed by role, with the configured client, timeout, retries and lease; every field a user sets
refused when it is wrong."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from clinotel.alerts.config import AlertingConfig
from clinotel.alerts.lease import DEFAULT_LEASE_S
from clinotel.alerts.rules import RulePack
from clinotel.alerts.sinks import AlertmanagerSink, PagerDutySink, SinkConfigError, WebhookSink
from clinotel.alerts.wiring import build_evaluator, build_outbox, known_sinks

AM = "http://127.0.0.1:9093"
HOOK = "http://127.0.0.1:8080/hook"
KEY = {"PAGERDUTY_ROUTING_KEY": "R" * 32}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(202))) as client:
        yield client


def test_the_shipped_sinks_are_registered_by_name() -> None:
    assert {"alertmanager", "pagerduty", "webhook"} <= set(known_sinks())


def test_pages_go_to_the_pagers_and_tickets_to_the_webhook(http: httpx.Client) -> None:
    config = AlertingConfig(alertmanager=(AM,), pagerduty=True, webhook=(HOOK,))
    outbox = build_outbox(config, http, env=KEY)
    assert [type(s) for s in outbox.page] == [AlertmanagerSink, PagerDutySink]
    assert [type(s) for s in outbox.ticket] == [WebhookSink]
    assert all(getattr(s, "http", None) is http for s in outbox.page + outbox.ticket), "one injected client"
    pagerduty = outbox.page[1]
    assert isinstance(pagerduty, PagerDutySink)
    assert pagerduty.routing_key == "R" * 32


def test_without_a_pager_pages_go_to_the_ticket_sinks(http: httpx.Client) -> None:
    outbox = build_outbox(AlertingConfig(webhook=(HOOK,)), http, env={})
    assert outbox.page == outbox.ticket
    assert [s.name for s in outbox.sinks("page")] == ["webhook"]


def test_several_urls_are_several_receivers_with_stable_names(http: httpx.Client) -> None:
    config = AlertingConfig(alertmanager=(AM, "http://127.0.0.2:9093"), webhook=(HOOK, HOOK + "2"))
    outbox = build_outbox(config, http, env={})
    assert [s.name for s in outbox.page] == ["alertmanager", "alertmanager-2"]
    assert [s.name for s in outbox.ticket] == ["webhook", "webhook-2"]


def test_the_routing_key_is_read_from_the_variable_the_configuration_names(http: httpx.Client) -> None:
    config = AlertingConfig(pagerduty=True, routing_key_env="PD_KEY_CLINICAL")
    [sink] = build_outbox(config, http, env={"PD_KEY_CLINICAL": " k-123 "}).page
    assert isinstance(sink, PagerDutySink)
    assert sink.routing_key == "k-123"
    with pytest.raises(SinkConfigError, match="needs the routing key in PD_KEY_CLINICAL"):
        build_outbox(config, http, env={"PAGERDUTY_ROUTING_KEY": "R" * 32, "PD_KEY_CLINICAL": "  "})


def test_an_unknown_sink_fails_at_start_naming_the_known_ones() -> None:
    with pytest.raises(SinkConfigError) as unknown:
        build_outbox(AlertingConfig(webhook=(HOOK,), sinks=("slack",)), env={})
    assert str(unknown.value) == f"unknown alert sink 'slack'; known: {', '.join(known_sinks())}"


@pytest.mark.parametrize(("name", "says"), [("alertmanager", "--alertmanager URL"), ("webhook", "--webhook URL")])
def test_a_sink_named_without_its_settings_is_refused(name: str, says: str) -> None:
    with pytest.raises(SinkConfigError, match=says):
        build_outbox(AlertingConfig(sinks=(name,)), env={})


def test_the_outbox_owns_and_closes_the_client_it_made_with_the_configured_timeout() -> None:
    outbox = build_outbox(AlertingConfig(webhook=(HOOK,), timeout_s=2.5, attempts=5, backoff_s=(0.1, 1.0)), env={})
    [sink] = outbox.ticket
    assert isinstance(sink, WebhookSink)
    assert sink.http is not None
    assert sink.http.timeout == httpx.Timeout(2.5)
    assert sink.http.follow_redirects is False
    assert (outbox.attempts, outbox.backoff_s) == (5, (0.1, 1.0))
    outbox.close()
    assert sink.http.is_closed


def test_an_injected_client_is_left_open(http: httpx.Client) -> None:
    build_outbox(AlertingConfig(webhook=(HOOK,)), http, env={}).close()
    assert not http.is_closed


PLUGIN = """
from dataclasses import dataclass, field

@dataclass
class RecordingSink:
    name: str = "recorder"
    sent: list = field(default_factory=list)
    role = "page"

    @classmethod
    def from_config(cls, config, http, env):
        return [cls()]

    def send(self, notifications):
        self.sent.extend(notifications)

class NoRole:
    @classmethod
    def from_config(cls, config, http, env):
        return []

class SameName(RecordingSink):
    role = "ticket"
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A distribution registering sinks in the group, as another package would install one."""
    (tmp_path / "clinotel_test_sinks.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = tmp_path / "clinotel_test_sinks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clinotel-test-sinks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[clinotel.alert_sinks]\nrecorder = clinotel_test_sinks:RecordingSink\nnorole = clinotel_test_sinks:NoRole\n"
        "samename = clinotel_test_sinks:SameName\nbroken = clinotel_no_such_module:Sink\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("clinotel_test_sinks", None)


@pytest.mark.usefixtures("plugin")
def test_a_plugin_sink_is_chosen_by_name_and_routed_by_its_role(http: httpx.Client) -> None:
    assert {"recorder", "alertmanager"} <= set(known_sinks())
    outbox = build_outbox(AlertingConfig(webhook=(HOOK,), sinks=("recorder",)), http, env={})
    assert [type(s).__name__ for s in outbox.page] == ["RecordingSink"]
    assert [s.name for s in outbox.ticket] == ["webhook"]


@pytest.mark.usefixtures("plugin")
@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("norole", r"^alert sink 'norole' \(clinotel_test_sinks:NoRole\) is not a sink"),
        ("broken", r"^alert sink 'broken' \(clinotel_no_such_module:Sink\) cannot be loaded: No module named"),
        ("samename", r"^two sinks named recorder"),
    ],
)
def test_a_broken_plugin_is_refused_in_one_line(name: str, says: str, http: httpx.Client) -> None:
    sinks = ("recorder", name) if name == "samename" else (name,)
    with pytest.raises(SinkConfigError, match=says):
        build_outbox(AlertingConfig(sinks=sinks), http, env={})


def test_the_lease_follows_the_interval_unless_set() -> None:
    assert AlertingConfig().lease_for(once=True) == DEFAULT_LEASE_S
    assert AlertingConfig(every="10s").lease_for() == 60.0  # type: ignore[arg-type]
    assert AlertingConfig(every="5m").lease_for() == 900.0  # type: ignore[arg-type]
    assert AlertingConfig(every="5m", lease_s=30).lease_for(once=True) == 30.0  # type: ignore[arg-type]


def test_the_evaluator_is_built_with_the_lease_and_closes_the_outbox(http: httpx.Client) -> None:
    config = AlertingConfig(webhook=(HOOK,), every=600)
    pack = RulePack(rules=())
    outbox = build_outbox(config, env={})
    store: Any = object()
    evaluator = build_evaluator(config, store, "clinotel", pack=pack, outbox=outbox, holder="h")
    assert evaluator.lease is not None
    assert (evaluator.lease.holder, evaluator.lease.ttl_s) == ("h", 1800.0)
    assert build_evaluator(config, store, "clinotel", pack=pack, outbox=outbox, alone=True).lease is None
    evaluator.lease = None  # nothing to release on a store that is not there
    evaluator.close()
    [sink] = outbox.ticket
    assert isinstance(sink, WebhookSink)
    assert sink.http is not None
    assert sink.http.is_closed


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"every": "0s"}, "above zero"),
        ({"every": "soon"}, "a duration such as"),
        ({"every": "-5s"}, "a duration such as"),
        ({"alertmanager": ("am:9093",)}, "http:// or https://"),
        ({"alertmanager": ("file:///etc/passwd",)}, "http:// or https://"),
        ({"webhook": ("http://h.test/\r\nX-Evil: 1",)}, "control characters"),
        ({"pagerduty_url": "gopher://pd.test"}, "http:// or https://"),
        ({"routing_key_env": "KEY=$(reboot)"}, "pattern"),
        ({"routing_key_env": ""}, "pattern"),
        ({"sinks": ("../evil",)}, "a sink name"),
        ({"sinks": ("Slack",)}, "a sink name"),
        ({"timeout_s": 0}, "greater than 0"),
        ({"timeout_s": 3600}, "less than or equal to 300"),
        ({"attempts": 0}, "greater than or equal to 1"),
        ({"attempts": 1000}, "less than or equal to 10"),
        ({"backoff_s": (-1.0,)}, "greater than or equal to 0"),
        ({"backoff_s": ()}, "at least 1 item"),
        ({"lease_s": 0}, "greater than 0"),
        ({"routing_key": "R" * 32}, "Extra inputs are not permitted"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_every_setting_is_checked(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        AlertingConfig.model_validate(fields)


def test_tickets_go_to_alertmanager_when_no_ticket_sink_is_configured(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """`--alertmanager` alone (`--webhook ""`) dropped every ticket: the ticket route was empty."""
    with caplog.at_level("WARNING", logger="clinotel.alerts"):
        outbox = build_outbox(AlertingConfig(alertmanager=(AM,), webhook=()), http, env={})
    assert [s.name for s in outbox.sinks("ticket")] == ["alertmanager"]
    assert [s.name for s in outbox.sinks("page")] == ["alertmanager"]
    assert "ticket" not in caplog.text
    both = build_outbox(AlertingConfig(alertmanager=(AM,), pagerduty=True), http, env=KEY)
    assert [s.name for s in both.sinks("ticket")] == ["alertmanager"], "tickets never page through PagerDuty"


def test_without_a_sink_for_tickets_a_warning_says_so_once(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="clinotel.alerts"):
        outbox = build_outbox(AlertingConfig(pagerduty=True), http, env=KEY)
    assert outbox.sinks("ticket") == [], "a ticket is not a page: never to PagerDuty"
    [warning] = [r for r in caplog.records if r.name == "clinotel.alerts"]
    assert warning.levelname == "WARNING"
    assert "no sink takes tickets" in warning.getMessage()


def test_a_ticket_is_delivered_to_alertmanager_alone() -> None:
    from datetime import UTC, datetime

    from clinotel.alerts.paging import Notification

    sent: list[Any] = []
    config = AlertingConfig(alertmanager=(AM,))
    with httpx.Client(transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200))) as client:
        outbox = build_outbox(config, client, env={})
        ticket = Notification("queue_wait_p95", {"tenant": "a"}, {"summary": "s"}, "ticket", True,
                              datetime.now(UTC), None)  # fmt: skip
        outbox.add(ticket)
        [attempt] = outbox.flush()
    assert attempt.ok
    assert attempt.sink == "alertmanager"
    assert str(sent[0].url) == f"{AM}/api/v2/alerts"


def test_the_ticket_webhook_is_read_from_its_variable_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """A webhook URL holding a token need not be on the command line, which `ps` shows to every user."""
    import click

    from clinotel.alerts.options import TICKET_WEBHOOK_ENV, alerting_options

    @click.command()
    @alerting_options("rules")
    def command(**params: Any) -> None:
        seen.append(params["webhook"])

    seen: list[tuple[str, ...]] = []
    monkeypatch.setenv(TICKET_WEBHOOK_ENV, "https://tickets.example/hook?token=s3cret https://second.example/h")
    command.main([], standalone_mode=False)
    command.main(["--webhook", "https://flag.example/h"], standalone_mode=False)
    monkeypatch.setenv(TICKET_WEBHOOK_ENV, "")
    command.main([], standalone_mode=False)
    assert seen == [
        ("https://tickets.example/hook?token=s3cret", "https://second.example/h"),
        ("https://flag.example/h",),
        (),
    ]


def test_the_runbook_base_reaches_every_notification(http: httpx.Client) -> None:
    from datetime import UTC, datetime

    config = AlertingConfig(webhook=("http://hook.test/x",), runbook_base="https://wiki.hospital.example/rb")
    assert config.runbook_base == "https://wiki.hospital.example/rb/"
    evaluator = build_evaluator(config, client=None, database="clinotel", pack=RulePack.model_validate(
        {"rules": [{"name": "model_fallback", "metric": "fallback_rate", "threshold": 0.2, "window": "15m",
                    "severity": "page", "summary": "Decisions fall back"}]}), alone=True)  # fmt: skip
    try:
        n = evaluator._notification(evaluator.pack.rules[0], {"tenant": "a"}, True, datetime.now(UTC), None, None)
    finally:
        evaluator.close()
    assert n.annotations["runbook_url"] == "https://wiki.hospital.example/rb/docs/runbooks/model_fallback.md"
