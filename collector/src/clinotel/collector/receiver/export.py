"""The OTLP trace export, free of any transport: the HTTP and gRPC servers both call `export`.

It decodes each request once to validate it (malformed: refused, nothing logged), refuses spans
with invalid ids or a start time outside the accepted window individually (partial success),
counts what it accepts, and appends the request as it parsed it (re-encoded, without unknown
fields) with the tenant's envelope to the write-ahead log. It answers only once the log has them
on disk, and refuses everything (503, retry later) while the collector cannot store what it
receives: before its log is open, or once its writer or its log failed. A request identical to
one its tenant had logged in the last minutes (an exporter's retry after a lost answer) is
answered without being logged again (`retries`), and spans of many days other than today's are
paced per tenant (`days`: each day is a partition of every table).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import secrets
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from clinotel.collector.errors import RefusedError
from clinotel.collector.log import record as otlp_proto
from clinotel.collector.log.wal import (
    COPIES_PER_REQUEST,
    LogFullError,
    LogLostError,
    WriteAheadLog,
    pending_segments,
    read_records,
)
from clinotel.collector.receiver import bounded, days, retries
from clinotel.collector.receiver.admission import (
    DECODE_BYTES,
    DECODE_FACTOR,
    DECODE_PER_TENANT,
    DECODE_WAIT_S,
    ByteBudget,
    Hold,
    receive_buffer_for,
)
from clinotel.collector.receiver.spans import DAY_NS, check_copies, refuse_spans, span_copies, text_growth

__all__ = [
    "CONTENT_TYPES",
    "ExportResult",
    "Limits",
    "ReceiverStats",
    "TraceReceiver",
]

logger: Final = logging.getLogger("clinotel.collector")

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
CONTENT_TYPES: Final = (PROTOBUF, JSON)
DEFAULT_MAX_REQUEST_BYTES: Final = 64 << 20  # the spec's recommended limit, after decompression
DEFAULT_MAX_JSON_REQUEST_BYTES: Final = 4 << 20
"""The largest OTLP/JSON request, after decompression (the lower of this and `max_request_bytes`).
Parsing JSON builds a Python object per value before the protobuf conversion walks them in
Python: 8 to 23 bytes of memory per byte of JSON for exporters' spans, 105 for a body of empty
spans (the worst found: 330 to 440 MB and 6.5 s of CPU for 4 MiB), measured 2026-12-06 in the
collector; a 62 MiB request took it from 255 to 1,184 MB, three at once to 2,908 MB. One request
is converted at a time per tenant, two in all (`JSON_CONVERSIONS`). Exporters' JSON batches (512 spans) are a few
hundred KB; larger batches go as protobuf, whose limit is `max_request_bytes`."""
DEFAULT_MAX_SPAN_AGE_DAYS: Final = 366
"""How far before its arrival a span may start. Every tenant table is partitioned by tenant and
day: each distinct day in a segment is a part of its own in every table, so spans spread over
years (1970 to 2262) cost the engine thousands of parts for one small request, stall the writer
for every tenant and, past a few thousand days, fail the insert at the engine's memory cap."""
MAX_SPAN_AGE_DAYS: Final = 3660
"""The largest `--max-span-age-days`: about 3,700 distinct days in one insert already hold the
writer for tens of seconds (measured 2026-12-02: 47 s on 2 cores), and 20,000 failed at the
default 768 MB engine cap, retried without end."""
MAX_SPAN_LEAD_NS: Final = DAY_NS
"""How far after its arrival a span may start (a clock ahead, a time zone taken for UTC)."""


def bad_request(message: str) -> RefusedError:
    return RefusedError("malformed", message)


def too_large(message: str) -> RefusedError:
    return RefusedError("too_large", message)


def unavailable(reason: str, message: str) -> RefusedError:
    return RefusedError(reason, message)


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_span_age_days: int | None = DEFAULT_MAX_SPAN_AGE_DAYS
    """None: spans of any age (tests replaying fixed clocks)."""
    max_span_lead_ns: int = MAX_SPAN_LEAD_NS
    """How far after its arrival a span may start (more only for a simulation: the demo's late truth)."""
    max_json_request_bytes: int = DEFAULT_MAX_JSON_REQUEST_BYTES
    receive_buffer_bytes: int | None = None
    """Request bytes both transports hold at once (`admission`); None: the default for
    `max_request_bytes` (`admission.receive_buffer_for`)."""
    retry_window_s: float = retries.DEFAULT_RETRY_WINDOW_S
    """How long a request is recognised when sent again (`retries`); 0: never."""
    new_days_per_s: float = days.DEFAULT_NEW_DAYS_PER_S
    """New days a tenant's spans may add a second (`days`); 0: unpaced."""

    def request_limit(self, media: str) -> int:
        """The largest request of media type `media` (`JSON` or protobuf), after decompression."""
        return min(self.max_request_bytes, self.max_json_request_bytes) if media == JSON else self.max_request_bytes

    def json_too_large(self, what: str) -> RefusedError:
        """The 413 for an OTLP/JSON request over its limit; `what` says how far over."""
        limit = self.request_limit(JSON)
        return too_large(
            f"{what} is over the {limit:,}-byte limit of OTLP/JSON requests (after decompression): send larger "
            f"batches as protobuf ({PROTOBUF}, up to {self.max_request_bytes:,} bytes), or smaller ones"
        )

    def start_window(self, received_ns: int) -> tuple[int, int]:
        """The start times (ns since the epoch) a span received at `received_ns` may have."""
        oldest = 0 if self.max_span_age_days is None else received_ns - self.max_span_age_days * DAY_NS
        return max(oldest, 0), received_ns + self.max_span_lead_ns


REFUSALS_LOGGED_EVERY_S: Final = 60.0
"""How often at most the receiver logs the requests it refused (`ReceiverStats.count_refused`)."""


@dataclass
class ReceiverStats:
    """Counts for /metrics and the health dashboard; updated under a lock."""

    requests: int = 0
    spans_accepted: int = 0
    spans_refused: Counter[str] = field(default_factory=Counter)
    requests_refused: Counter[str] = field(default_factory=Counter)
    log_bytes: int = 0
    spans_retried: int = 0
    """Spans of requests recognised as a retry of one already accepted (`retries`): not logged again."""
    refused_at: dict[str, float] = field(default_factory=dict)
    """When (`time.monotonic()`) a request was last refused, by reason."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _unlogged: Counter[str] = field(default_factory=Counter, repr=False)
    _peers: dict[str, str] = field(default_factory=dict, repr=False)
    _logged_at: float = field(default=-REFUSALS_LOGGED_EVERY_S, repr=False)

    def count_refused(self, reason: str, peer: str | None = None) -> None:
        """One request refused whole, whichever transport refused it, from `peer` when known. The
        first refusal is logged at once and the next ones together at most once a
        `REFUSALS_LOGGED_EVERY_S`: a service sending with a wrong token lost all its telemetry and
        the collector said nothing of it, where it came from or why (an on-call review)."""
        now = time.monotonic()
        with self.lock:
            self.requests_refused[reason] += 1
            self.refused_at[reason] = now
            self._unlogged[reason] += 1
            if peer:
                self._peers[reason] = peer
            if now - self._logged_at < REFUSALS_LOGGED_EVERY_S:
                return
            counts, peers = dict(self._unlogged), dict(self._peers)
            self._unlogged.clear()
            self._peers.clear()
            self._logged_at = now
        said = ", ".join(
            f"{n} {why}" + (f" (the last from {peers[why]})" if why in peers else "")
            for why, n in sorted(counts.items())
        )
        logger.warning(
            "refused %d request(s) since the last such line: %s (clinotel_receiver_requests_refused_total; "
            "docs/runbooks/spans_refused.md)", sum(counts.values()), said,
        )  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    body: bytes
    content_type: str
    accepted: int
    rejected: int


_FIRST_PIECE: Final = 64
_LARGEST_PIECE: Final = 1 << 16
_LARGEST_OUTPUT: Final = 1 << 20
Take = Callable[[int], None]


def decompress(body: bytes | bytearray, encoding: str, limit: int) -> bytes:
    """`inflate`, as `bytes` (the read port's queries, a few MB at most)."""
    return bytes(inflate(body, encoding, limit))


def inflate(body: bytes | bytearray, encoding: str, limit: int, take: Take | None = None) -> bytes | bytearray:
    """The body decoded per Content-Encoding (in a `bytearray` when inflated), refused past `limit`
    bytes without inflating more. Every gzip member is inflated: only the first was, and the spans
    of the others were acknowledged and dropped. `take` hears of the inflated bytes a piece (at
    most 1 MiB) at a time, before they join the rest, and may refuse them (`admission.Hold.take`).

    The work is linear in the body: each member is fed from a view of the body in pieces that start
    small and double (64 bytes to 64 KiB), so what zlib copies past a member's end is one piece,
    not the rest of the body (handing each member the rest, as `unused_data`, took 37 s for 7.6 MiB
    of empty members). The inflated size is checked as it grows."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise too_large(f"request of {len(body):,} bytes is over the {limit:,}-byte limit")
        return body
    if encoding != "gzip":
        raise RefusedError("unsupported_encoding", f"unsupported Content-Encoding {encoding!r}")
    out = bytearray()
    end = len(body)
    at = 0
    with memoryview(body) as view:
        while True:  # a gzip body may hold several members (RFC 1952), each inflated in turn
            inflater = zlib.decompressobj(wbits=31)
            piece = _FIRST_PIECE
            while not inflater.eof:
                data = view[at : at + piece]
                try:
                    inflated = inflater.decompress(data, min(limit + 1 - len(out), _LARGEST_OUTPUT))
                except zlib.error as e:
                    raise bad_request(f"invalid gzip body: {e}") from None
                if not data and not inflated:  # the body ended, and nothing more comes out
                    raise bad_request("truncated gzip body")
                if take is not None:
                    take(len(inflated))
                out += inflated
                if len(out) > limit:
                    raise too_large(f"request inflates past the {limit:,}-byte limit")
                at += len(data) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
                piece = min(piece * 2, _LARGEST_PIECE)
            if at >= end:
                return out


_ID_FIELDS: Final = ("traceId", "spanId", "parentSpanId")


def _items(holder: object, key: str) -> list[dict[str, Any]]:
    """The objects in list `key` of `holder`; anything of another shape is left for the
    protobuf parser to refuse with its own message."""
    value = holder.get(key) if isinstance(holder, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _hex_ids_to_base64(obj: dict[str, Any]) -> None:
    """OTLP/JSON carries ids as hex; protobuf's JSON mapping expects base64."""
    for rs in _items(obj, "resourceSpans"):
        for ss in _items(rs, "scopeSpans"):
            for span in _items(ss, "spans"):
                for holder in (span, *_items(span, "links")):
                    for key in _ID_FIELDS:
                        value = holder.get(key)
                        if isinstance(value, str) and value:
                            try:
                                holder[key] = base64.b64encode(bytes.fromhex(value)).decode()
                            except ValueError:
                                raise bad_request(f"{key} {value[:40]!r} is not hex") from None


JSON_CONVERSIONS: Final = 2
"""OTLP/JSON requests converted at once, from their parsing to their re-encoding, one of them per
tenant: their Python objects and parsed spans (up to 105 bytes a byte of JSON) exist for two
requests, not one per connection, and one tenant's requests cannot hold every turn (with one
process-wide turn, one tenant's three worst-case requests timed every other tenant's JSON
exports out). The steps hold the interpreter lock, so more at once would not be faster."""
JSON_WAIT_S: Final = 10.0
"""How long a JSON request waits for its turn before it is answered 503 (`busy`, retried)."""
_JSON_TURNS: Final = threading.BoundedSemaphore(JSON_CONVERSIONS)
_json_tenants: dict[str, threading.Lock] = {}
_json_tenants_lock: Final = threading.Lock()


@contextlib.contextmanager
def _json_turn(tenant: str) -> Iterator[None]:
    """A turn to convert one OTLP/JSON request of `tenant` (`JSON_CONVERSIONS`)."""
    with _json_tenants_lock:
        mine = _json_tenants.setdefault(tenant, threading.Lock())
    deadline = time.monotonic() + JSON_WAIT_S
    if not mine.acquire(timeout=JSON_WAIT_S):
        raise RefusedError("busy", "this tenant's OTLP/JSON requests are converted one at a time: retry")
    try:
        if not _JSON_TURNS.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise RefusedError("busy", "OTLP/JSON requests are converted a few at a time: retry")
        try:
            yield
        finally:
            _JSON_TURNS.release()
    finally:
        mine.release()


def _decode_json(body: bytes | bytearray, request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise bad_request("an OTLP/JSON request is an object")
    _hex_ids_to_base64(obj)
    try:
        json_format.ParseDict(obj, request, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, TypeError, ValueError) as e:
        raise bad_request(f"invalid OTLP/JSON: {e}") from None
    return request


def decode(body: bytes | bytearray, content_type: str) -> ExportTraceServiceRequest:
    """The request, decoded from protobuf or OTLP/JSON; malformed data raises `RefusedError` (400)."""
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    request = ExportTraceServiceRequest()
    if media == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as e:
            raise bad_request(f"invalid protobuf: {e}") from None
        return request
    if media == JSON:
        try:
            return _decode_json(body, request)
        except RecursionError:  # a document nested deeper than Python's parsers go: refused, not a 500
            raise bad_request("invalid JSON: nested too deeply") from None
    raise RefusedError("unsupported_media_type", f"Content-Type must be {PROTOBUF} or {JSON}, not {media!r}")


def _partial_success_message(removed: Counter[str], limits: Limits) -> str:
    reasons = []
    if removed["invalid_id"]:
        reasons.append(f"{removed['invalid_id']} with invalid ids (trace and span ids must be 16 and 8 non-zero bytes)")
    if removed["out_of_window"]:
        age = "any time" if limits.max_span_age_days is None else f"{limits.max_span_age_days} days"
        reasons.append(
            f"{removed['out_of_window']} starting outside the accepted window ({age} before arrival to "
            f"{limits.max_span_lead_ns / 3.6e12:g} h after it)"
        )
    if removed["ends_after_window"]:
        reasons.append(
            f"{removed['ends_after_window']} ending more than {limits.max_span_lead_ns / 3.6e12:g} h after arrival"
        )
    if removed["too_large"]:
        reasons.append(
            f"{removed['too_large']} that would take more than {bounded.DECODE_BUDGET >> 20} MiB of memory to decode "
            "(a span of very many small parts)"
        )
    return f"{sum(removed.values())} span(s) refused: " + "; ".join(reasons)


def _canonical(request: ExportTraceServiceRequest) -> bytes:
    """What the log keeps: the request as parsed here, re-encoded without unknown fields (to the
    64 levels the runtime discards them at; deeper ones are only ever inside attribute values,
    which the engine's schema skips whole). The engine parses the log with its own Protobuf
    reader, which refuses what this parser skips (a known field sent with another wire type, a
    span's `name` as a number, say): the segment holding such a request was refused, quarantined
    and lost, with every other tenant's acknowledged spans in it. Unknown top-level fields could
    also collide with the envelope's."""
    request.DiscardUnknownFields()
    return bytes(request.SerializeToString())


Health = Callable[[], str | None]
"""Why the collector cannot store what it receives now, or None when it can."""


class TraceReceiver:
    """Validates OTLP trace exports and appends them to the log for one tenant per request."""

    def __init__(self, wal: WriteAheadLog | None, limits: Limits | None = None, health: Health | None = None) -> None:
        """`wal` may come later (`attach`): until then every export is refused as unavailable."""
        self.wal = wal
        self.limits = limits or Limits()
        self.stats = ReceiverStats()
        buffer = self.limits.receive_buffer_bytes or receive_buffer_for(self.limits.max_request_bytes)
        self.budget = ByteBudget(buffer, "receive buffer (--receive-buffer-mb)")
        """The request bytes held at once, by both transports (`admission`)."""
        self.decoding = ByteBudget(DECODE_BYTES, "decoding memory", per_tenant=DECODE_PER_TENANT)
        self._health = health
        self.recent = retries.RecentRequests(self.limits.retry_window_s)
        """The requests accepted lately, to recognise an exporter's retry of one."""
        self.pacing = days.DayPacing(self.limits.new_days_per_s)
        """The days each tenant's spans add to the store, paced."""

    def attach(self, wal: WriteAheadLog) -> None:
        """Start accepting into `wal`."""
        self.wal = wal

    def recall(self, directory: Path) -> int:
        """Remember, as retries to recognise, the requests that the log segments in `directory`
        hold and that were received within the retry window (`retries.RecentRequests.recall`);
        call it before the writer takes them. Segments last written before the window are not
        read. The number of requests remembered."""
        if not self.recent.enabled:
            return 0
        since = time.time() - self.recent.window_s
        remembered = 0
        for path in pending_segments(directory):
            try:
                if path.stat().st_mtime < since:
                    continue
                remembered += self.recent.recall(read_records(path))
            except OSError as e:  # a saving, never a reason not to start
                logger.warning("could not read %s for the requests to recognise when retried: %s", path.name, e)
        return remembered

    def export(
        self,
        body: bytes | bytearray,
        *,
        content_type: str,
        content_encoding: str = "",
        tenant: str,
        hold: Hold | None = None,
    ) -> ExportResult:
        """Accept one request for `tenant` (from the caller's token); raises `RefusedError`.
        `hold` holds the body already in `budget` (the ports take it as they read); without one,
        the body is counted here, and refused busy when it does not fit."""
        try:
            with contextlib.ExitStack() as stack:
                if hold is None:
                    hold = stack.enter_context(self.budget.hold(tenant))
                    hold.take(len(body))
                return self._export(body, content_type, content_encoding, tenant, hold)
        except RefusedError as e:
            self.stats.count_refused(e.reason)
            raise

    def _export(
        self, body: bytes | bytearray, content_type: str, content_encoding: str, tenant: str, hold: Hold
    ) -> ExportResult:
        wal = self.wal
        problem = self._health() if self._health is not None else None
        if wal is None or problem is not None:
            raise unavailable("unavailable", f"the collector cannot store spans now: {problem or 'starting'}")
        media = content_type.split(";", maxsplit=1)[0].strip().lower()
        try:
            inflated = inflate(body, content_encoding, self.limits.request_limit(media), hold.take)
        except RefusedError as e:
            if e.reason == "too_large" and media == JSON:
                plain = content_encoding.strip().lower() in ("", "identity")
                what = f"a request of {len(body):,} bytes" if plain else "the inflated request"
                raise self.limits.json_too_large(what) from None
            raise
        size, copied = len(inflated), inflated is not body
        received_ns = time.time_ns()
        window = self.limits.start_window(received_ns)
        with self._decode_turn(tenant, media, size):
            # the canonical bytes to come (at most the request's size), taken once its turn came
            hold.resize(len(body) + (size if copied else 0) + size)
            # the days the kept spans start on, counted only when they are paced
            started: set[int] | None = set() if self.pacing.rate_per_s > 0 else None
            if media == PROTOBUF and size > bounded.DIRECT_LIMIT:
                raw, kept, refused, copies = bounded.screen(inflated, window, days=started)
                del inflated
            else:
                request = decode(inflated, content_type)
                del inflated
                kept, refused = refuse_spans(request, window, size, started)
                raw = _canonical(request) if kept else b""
                copies = span_copies(request)
                copies += text_growth(raw, kept, request, stop_past=COPIES_PER_REQUEST * wal.segment_bytes - copies)
                del request
            check_copies(copies, COPIES_PER_REQUEST * wal.segment_bytes)
        hold.resize(len(body) + len(raw))
        removed = sum(refused.values())
        digest = self.recent.digest(raw) if kept and self.recent.enabled else None
        attempt = None if digest is None else self.recent.attempt(tenant, digest)
        retried = digest is not None and attempt is None
        try:
            if kept and not retried:
                self._log(wal, raw, copies, tenant, received_ns, started)
                if digest is not None:
                    self.recent.accepted(tenant, digest)
        finally:
            if attempt is not None:
                self.recent.finish(attempt)
        with self.stats.lock:
            self.stats.requests += 1
            self.stats.spans_refused.update(+refused)
            if retried:
                self.stats.spans_retried += kept
            elif kept:
                self.stats.spans_accepted += kept
                self.stats.log_bytes += len(raw)
        response = ExportTraceServiceResponse()
        if removed:
            response.partial_success.rejected_spans = removed
            response.partial_success.error_message = _partial_success_message(refused, self.limits)
        if media == JSON:
            return ExportResult(json_format.MessageToJson(response).encode(), JSON, kept, removed)
        return ExportResult(response.SerializeToString(), PROTOBUF, kept, removed)

    def _log(
        self, wal: WriteAheadLog, raw: bytes, copies: int, tenant: str, received_ns: int, days: set[int] | None
    ) -> None:
        """Append a request's kept spans to the log (`copies`: its resources' bytes once for each
        span), its new `days` paced first (refunded if the log refuses it); raises `RefusedError`."""
        charge = None if days is None else self.pacing.admit(tenant, days, received_ns // DAY_NS)
        record = otlp_proto.framed(raw, otlp_proto.envelope(tenant, secrets.token_hex(8), received_ns))
        try:
            wal.append(record, copies)
        except (LogFullError, LogLostError, OSError) as e:
            if charge is not None:  # not stored: its days are not in the insert being gathered
                self.pacing.refund(charge)
            if isinstance(e, LogFullError):
                raise unavailable("log_full", str(e)) from None
            if isinstance(e, LogLostError):
                raise unavailable("log_lost", str(e)) from None
            raise unavailable("log_error", f"cannot write the log: {e}") from None

    @contextlib.contextmanager
    def _decode_turn(self, tenant: str, media: str, size: int) -> Iterator[None]:
        """Room to decode a request of `size` bytes: an OTLP/JSON request's conversion turn, or a
        protobuf request's estimated decoding memory (`admission.DECODE_FACTOR`), waited for."""
        if media == JSON:
            with _json_turn(tenant):
                yield
            return
        with self.decoding.hold(tenant) as decoding:
            decoding.take(min(size * DECODE_FACTOR, bounded.DECODE_BUDGET), wait_s=DECODE_WAIT_S)
            yield
