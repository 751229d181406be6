"""From an `AlertingConfig` to running parts: the sinks, found by name in the `clinotel.alert_sinks`
entry-point group (as OpenTelemetry resolves OTEL_PROPAGATORS names: an unknown name fails at
start, naming the known ones), the outbox routing to them, and the evaluator. Every place that
evaluates (`clinotel alerts evaluate`, `clinotel serve --rules`, the demo) builds through here.

A sink plug-in is an object with `role` (`page` or `ticket`) and
`from_config(config, http, env) -> list[Sink]`, registered under its name in that group."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Final, Protocol

import httpx

from clinotel.alerts import default_rules_path
from clinotel.alerts.actions import ChangeRecorder, DisableFlag, FlagdFile, FlagSwitch, Outcome, Webhook
from clinotel.alerts.config import AlertingConfig
from clinotel.alerts.evaluator import Evaluator
from clinotel.alerts.paging import Outbox, Sink
from clinotel.alerts.rules import RulePack, load
from clinotel.alerts.sinks import SinkConfigError, http_client

if TYPE_CHECKING:
    from clinotel.instrumentation.changes import ChangeSpec

__all__ = [
    "SINK_GROUP", "SinkFactory", "build_evaluator", "build_outbox", "build_switch", "change_recorder", "known_sinks",
    "load_rules", "receiver_recorder", "sink_factory",
]  # fmt: skip

SINK_GROUP: Final = "clinotel.alert_sinks"
ROLES: Final = ("page", "ticket")
TICKETS_TO: Final = "alertmanager"
"""The paging sink that takes tickets when no ticket sink is configured (Alertmanager routes them
by their `severity` label, as `alerts export`'s configuration does); never PagerDuty, which pages."""
logger: Final = logging.getLogger("clinotel.alerts")


class SinkFactory(Protocol):
    """What a `clinotel.alert_sinks` entry point loads (the shipped sinks: their classes)."""

    role: str

    def from_config(self, config: AlertingConfig, http: httpx.Client, env: Mapping[str, str]) -> list[Sink]:
        """The sinks of this kind the configuration asks for; SinkConfigError when it lacks their settings."""
        ...


def known_sinks() -> list[str]:
    """The names registered in `SINK_GROUP`, sorted."""
    return sorted({ep.name for ep in entry_points(group=SINK_GROUP)})


def sink_factory(name: str) -> SinkFactory:
    """The factory registered as `name`; SinkConfigError naming the known ones when there is none."""
    found = [ep for ep in entry_points(group=SINK_GROUP) if ep.name == name]
    if not found:
        raise SinkConfigError(f"unknown alert sink {name!r}; known: {', '.join(known_sinks()) or 'none'}")
    try:
        factory: Any = found[0].load()
    except Exception as e:  # noqa: BLE001 - a broken plug-in is named in one line, not a traceback
        raise SinkConfigError(f"alert sink {name!r} ({found[0].value}) cannot be loaded: {e}") from None
    if getattr(factory, "role", None) not in ROLES or not callable(getattr(factory, "from_config", None)):
        raise SinkConfigError(f"alert sink {name!r} ({found[0].value}) is not a sink: it needs a role and from_config")
    return factory  # type: ignore[no-any-return]


def build_outbox(
    config: AlertingConfig,
    http: httpx.Client | None = None,
    env: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outbox:
    """The configured sinks, routed by role: `page` sinks get pages (the `ticket` sinks do when
    nothing pages), `ticket` sinks tickets (Alertmanager does when no ticket sink is configured;
    with neither, a warning says tickets go nowhere). Every name is resolved before any sink is built;
    SinkConfigError for an unknown name or a sink without its settings. `http` (default: a new
    client with the configured timeout, which the outbox then closes) is every sink's client;
    `env`: where the routing key is read (default: the process environment)."""
    factories = [(name, sink_factory(name)) for name in config.sink_names()]
    client = http if http is not None else http_client(config.timeout_s)
    try:
        page: list[Sink] = []
        ticket: list[Sink] = []
        takes_tickets: list[Sink] = []
        for name, factory in factories:
            built = factory.from_config(config, client, os.environ if env is None else env)
            (page if factory.role == "page" else ticket).extend(built)
            if name == TICKETS_TO:
                takes_tickets.extend(built)
        names = [s.name for s in {id(s): s for s in page + ticket}.values()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise SinkConfigError(f"two sinks named {', '.join(twice)}: the audit trail tells receivers apart by name")
    except BaseException:
        if http is None:
            client.close()
        raise
    if not ticket and not takes_tickets:
        logger.warning(
            "no sink takes tickets (--webhook, or --alertmanager): ticket alerts are recorded in the audit trail, "
            "not sent"
        )
    return Outbox(
        page or list(ticket), ticket or takes_tickets, sleep=sleep, attempts=config.attempts,
        backoff_s=config.backoff_s, on_close=client.close if http is None else None,
        budget_s=config.delivery_budget_s, attempt_s=config.deadline_s + 5,
    )  # fmt: skip


def build_switch(config: AlertingConfig, http: httpx.Client | None = None) -> FlagSwitch | None:
    """The kill switch `config` names: its flagd file, else its flag webhook, else None."""
    if config.flagd_file is not None:
        return FlagdFile(config.flagd_file)
    if config.flag_webhook is not None:
        return Webhook(config.flag_webhook, http, config.timeout_s)
    return None


def _change_spec(action: DisableFlag, rule: str, outcome: Outcome, when: datetime) -> ChangeSpec:
    """The change event of one kill-switch action: the flag, the variant served, the rule as
    actor and the scope a change event carries."""
    from clinotel.instrumentation.changes import ChangeSpec

    scope = {k: v for k, v in action.scope.items() if k in ("site", "department", "workflow_kind", "stage")}
    return ChangeSpec("flag", action.key, action.variant, f"rule:{rule}", scope, outcome.result, when)


def change_recorder(config: AlertingConfig, env: Mapping[str, str] | None = None) -> ChangeRecorder | None:
    """Records each kill-switch action as a change event at `config.changes_endpoint` (OTLP/HTTP,
    `CLINOTEL_WRITE_TOKEN` from `env`), or None when no endpoint is configured. The event names the
    firing alert's tenant (`clinical.tenant.id`; a collector with tokens stores it under the
    token's tenant, so give the evaluator a token of the tenant it watches) and the action's scope."""
    endpoint = config.changes_endpoint
    if endpoint is None:
        return None
    token = (os.environ if env is None else env).get("CLINOTEL_WRITE_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else None

    def record(action: DisableFlag, rule: str, outcome: Outcome, when: datetime, tenant: str) -> None:
        from clinotel.instrumentation.changes import send_changes

        spec = _change_spec(action, rule, outcome, when)
        send_changes([spec], endpoint=endpoint, headers=headers, tenant=tenant or None, service="clinotel-alerts")

    return record


def receiver_recorder(receiver: Any, fallback_tenant: str) -> ChangeRecorder:
    """Records each kill-switch action as a change event straight into a collector's own receiver
    (`clinotel serve --rules`): into its write-ahead log under the firing alert's tenant (else
    `fallback_tenant`), as an OTLP export with that tenant's token would, without a token or a
    network hop."""

    def record(action: DisableFlag, rule: str, outcome: Outcome, when: datetime, tenant: str) -> None:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        from clinotel.instrumentation.changes import send_changes

        class IntoReceiver(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                body = encode_spans(spans).SerializeToString()
                receiver.export(body, content_type="application/x-protobuf", tenant=tenant or fallback_tenant)
                return SpanExportResult.SUCCESS

        spec = _change_spec(action, rule, outcome, when)
        send_changes([spec], endpoint="collector:receiver", tenant=tenant or None, service="clinotel-alerts",
                     exporter=IntoReceiver())  # fmt: skip

    return record


def load_rules(config: AlertingConfig) -> RulePack:
    """The configured rules file, or the default pack; RuleError saying what is wrong where."""
    return load(config.rules or default_rules_path())


def build_evaluator(
    config: AlertingConfig,
    client: Any,
    database: str,
    *,
    pack: RulePack | None = None,
    outbox: Outbox | None = None,
    recorder: Any | None = None,
    holder: str | None = None,
    once: bool = False,
    alone: bool = False,
    on_change: ChangeRecorder | None = None,
) -> Evaluator:
    """The evaluator of `config` on `client` (clickhouse-connect's reading calls) in `database`.
    `pack`, `outbox`: already loaded and built (a command checks them before it opens anything);
    `recorder`: where its events are inserted (default: `client`); `holder`: its lease holder's
    stable name; `once`: a single pass's lease; `alone`: no lease (alone on its store by
    construction, as the demo's replay). Closing the evaluator closes the outbox."""
    return Evaluator(
        client,
        pack if pack is not None else load_rules(config),
        outbox if outbox is not None else build_outbox(config),
        database,
        recorder=recorder,
        lease_s=None if alone else config.lease_for(once),
        holder=holder,
        switch=build_switch(config),
        dry_run=config.dry_run,
        on_change=change_recorder(config) or on_change,
        changes_hours=config.changes_hours,
        runbook_base=config.runbook_base,
    )
