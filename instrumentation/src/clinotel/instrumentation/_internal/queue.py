"""Queue hand-off across threads and processes through a W3C trace-context carrier.

`enqueue` captures where the workflow is (traceparent), what it is (kind, site, department) and
when it was enqueued; the carrier is a plain `dict[str, str]` that survives JSON, pickling and
message headers. `dequeue`, in whichever thread or process takes the item, records the `queue`
span from the enqueue time to now and continues the workflow there, so later stages join the
same trace. Times come from the wall clock: across hosts, the wait includes their clock skew.

A workflow that records nothing (no OpenTelemetry SDK in its process) has no trace context to
put in the carrier; its carrier still names the workflow, and `dequeue` continues it without a
parent span, as OpenTelemetry does with a message that carries no trace context.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, quote, urlencode

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from clinotel.instrumentation._internal.context import (
    WORKFLOW_CONTEXT_KEYS,
    WORKFLOW_KEY,
    WorkflowContext,
    workflow_context,
)
from clinotel.instrumentation._internal.fields import QUEUE, SPAN_ATTRIBUTES
from clinotel.instrumentation._internal.record import validate
from clinotel.instrumentation._internal.runtime import Runtime, contain, current, refuse
from clinotel.instrumentation.errors import TelemetryValidationError
from clinotel.semconv import AttributeValue, Stage
from clinotel.semconv import attributes as A

__all__ = [
    "CARRIER_DEPTH",
    "CARRIER_ENQUEUED_AT",
    "CARRIER_QUEUE",
    "CARRIER_WORKFLOW",
    "UNRECORDED_TRACEPARENT",
    "Dequeued",
    "dequeue",
    "enqueue",
    "unrecorded",
]

CARRIER_WORKFLOW: Final = "clinotel-workflow"
CARRIER_QUEUE: Final = "clinotel-queue"
CARRIER_ENQUEUED_AT: Final = "clinotel-enqueued-at"
CARRIER_DEPTH: Final = "clinotel-queue-depth"
_TRACEPARENT: Final = "traceparent"
UNRECORDED_TRACEPARENT: Final = f"00-{0:032x}-{0:016x}-00"
"""The traceparent of a workflow that records nothing (OpenTelemetry's invalid span context)."""

_W3C: Final = TraceContextTextMapPropagator()


def enqueue(queue: str, *, depth: int | None = None) -> dict[str, str]:
    """A carrier for handing the current workflow to `queue`; pass it with the work item.

    `depth` is how many items were waiting when this one joined. Outside a workflow, or when
    clinotel fails, the carrier is still a valid (possibly empty) dict: the hand-off never fails.
    """
    rt = current()
    carrier: dict[str, str] = {}
    try:
        q = validate(rt, QUEUE, {"name": queue, "depth": depth})
        wf = workflow_context()
        if wf is None:
            refuse(rt, "invalid", f"enqueue({queue!r}) outside a workflow")
            return carrier
        _W3C.inject(carrier)
        carrier[CARRIER_WORKFLOW] = urlencode({k: str(v) for k, v in wf.attributes.items()}, quote_via=quote)
        if A.QUEUE_NAME.key in q:
            carrier[CARRIER_QUEUE] = str(q[A.QUEUE_NAME.key])
        if A.QUEUE_DEPTH.key in q:
            carrier[CARRIER_DEPTH] = str(q[A.QUEUE_DEPTH.key])
        carrier[CARRIER_ENQUEUED_AT] = str(rt.now())
    except TelemetryValidationError:
        raise
    except Exception as e:  # noqa: BLE001
        contain(rt, e)
    return carrier


def unrecorded(carrier: Mapping[str, str]) -> bool:
    """True for the carrier (or traceparent) of a workflow whose process recorded nothing, such as
    a library's process without an OpenTelemetry SDK: it names no trace to continue or link."""
    traceparent = carrier.get(_TRACEPARENT)
    if traceparent is None:
        return CARRIER_WORKFLOW in carrier
    return traceparent == UNRECORDED_TRACEPARENT


@dataclass(frozen=True, slots=True)
class Dequeued:
    """What `with dequeue(carrier)` gives: the queue and how long the item waited."""

    queue: str | None
    wait_ms: float | None
    kind: str | None


class dequeue:  # noqa: N801 - used like a function: `with dequeue(carrier):`
    """Take a workflow off a queue: records the `queue` span and continues the workflow.

    Inside the `with` block, stages join the workflow's trace as children of the span that
    enqueued it. A missing or malformed carrier raises in strict mode; in production mode the
    block runs all the same, outside any workflow.
    """

    __slots__ = ("_carrier", "_token")

    def __init__(self, carrier: Mapping[str, str]) -> None:
        self._carrier = carrier
        self._token: object | None = None

    def __enter__(self) -> Dequeued:
        rt = current()
        try:
            ctx, dequeued = _continue(rt, self._carrier)
        except TelemetryValidationError:
            raise
        except Exception as e:  # noqa: BLE001
            contain(rt, e)
            return Dequeued(None, None, None)
        if ctx is not None:
            self._token = otel_context.attach(ctx)
        return dequeued

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None

    async def __aenter__(self) -> Dequeued:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def _continue(rt: Runtime, carrier: Mapping[str, str]) -> tuple[otel_context.Context | None, Dequeued]:
    ctx = _W3C.extract(carrier, context=otel_context.Context())
    parent = trace.get_current_span(ctx).get_span_context()
    if CARRIER_WORKFLOW not in carrier or not (parent.is_valid or unrecorded(carrier)):
        refuse(rt, "invalid", "dequeue() got a carrier without a workflow's trace context")
        return None, Dequeued(None, None, None)

    context_pairs = dict(parse_qsl(carrier[CARRIER_WORKFLOW]))
    wf_attrs: dict[str, AttributeValue] = {
        k: v for k, v in validate(rt, SPAN_ATTRIBUTES, context_pairs).items() if k in WORKFLOW_CONTEXT_KEYS
    }
    kind = wf_attrs.get(A.WORKFLOW_KIND.key)
    if not isinstance(kind, str):
        refuse(rt, "invalid", "dequeue() got a carrier without a workflow kind")
        return None, Dequeued(None, None, None)
    ctx = otel_context.set_value(WORKFLOW_KEY, WorkflowContext.of(kind, wf_attrs), ctx)

    queue = carrier.get(CARRIER_QUEUE)
    enqueued_at = _int(carrier.get(CARRIER_ENQUEUED_AT))
    if enqueued_at is None or enqueued_at < 0:
        refuse(rt, "invalid", "dequeue() got a carrier without its enqueue time")
        return ctx, Dequeued(queue, None, kind)

    now = rt.now()
    attrs = dict(wf_attrs)
    attrs[A.WORKFLOW_STAGE.key] = Stage.QUEUE.value
    attrs.update(validate(rt, QUEUE, {"name": queue}))
    depth = _int(carrier.get(CARRIER_DEPTH))
    if depth is not None:
        attrs[A.QUEUE_DEPTH.key] = depth
    start = min(enqueued_at, now)
    span = rt.tracer.start_span(Stage.QUEUE.value, context=ctx, attributes=attrs, start_time=start)
    span.end(end_time=now)
    return ctx, Dequeued(queue, (now - start) / 1e6, kind)


def _int(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None
