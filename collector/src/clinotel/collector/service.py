"""The collector assembled: listeners, log, store, schema, writer; started in that order and
stopped in reverse, so nothing acknowledged is left behind.

Every listener is bound first, so a port clash stops the collector before anything is created.
Then the log is locked and claimed for this store (one log, one store, one running collector),
the store opened and the writer started. From then on the collector watches itself: if its
writer or any of its servers stops by itself, or its log is moved or deleted under it, it answers
503 to every export, `/ping` is not OK, `clinotel_collector_up` is 0, and `failed` is set so the
process exits instead of acknowledging what nobody will store.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from clinotel.collector.log.wal import LogLostError, WriteAheadLog, owner_of, pending_segments
from clinotel.collector.net.listen import MAX_PORT, url_host
from clinotel.collector.net.server import MAX_CONNECTIONS
from clinotel.collector.readport.http import ClickHouseHttpServer, Credentials, ReaderAccess
from clinotel.collector.readport.reader import ClickHouseError, ReadLimits, SqlReader
from clinotel.collector.receiver.admission import RECEIVE_BUFFER_REQUESTS, receive_buffer_for
from clinotel.collector.receiver.days import DEFAULT_NEW_DAYS_PER_S, MAX_NEW_DAYS_PER_S, MIN_NEW_DAYS_PER_S
from clinotel.collector.receiver.export import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_SPAN_AGE_DAYS,
    MAX_SPAN_AGE_DAYS,
    MAX_SPAN_LEAD_NS,
    Limits,
    TraceReceiver,
)
from clinotel.collector.receiver.grpc import RECEIVE_TIMEOUT_S, OtlpGrpcServer
from clinotel.collector.receiver.http import OtlpHttpServer, is_loopback
from clinotel.collector.receiver.retries import DEFAULT_RETRY_WINDOW_S, MAX_RETRY_WINDOW_S
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import rollups, schema
from clinotel.collector.store.code_pages import release_engine_code
from clinotel.collector.store.embedded import (
    DEFAULT_DATA_DIR,
    DEFAULT_ENGINE_MEMORY_MB,
    MAX_ENGINE_MEMORY_MB,
    MAX_SEGMENT_BYTES,
    MIN_ENGINE_MEMORY_MB,
    check_embedded,
    connect,
    default_wal_dir,
    full_parts,
    legacy_wal_dir,
    record_log,
    recorded_log,
    segment_bytes_for,
    store_id,
)
from clinotel.collector.store.segments import EmbeddedSegments, SegmentStore, ServerSegments, engine_failed
from clinotel.collector.store.watch import EngineWatch
from clinotel.collector.telemetry import metrics
from clinotel.collector.telemetry.recorder import MetricsRecorder
from clinotel.collector.tokens import ALL_TENANTS, Grant, Tokens
from clinotel.collector.writer import STALL_ALARM_S, SegmentWriter, StoreLostError, store_lost_reason
from clinotel.model.collector_metrics import AlertFigures
from clinotel.model.tables import DEFAULT_DATABASE, ROLLUP_TABLES

__all__ = ["Collector", "CollectorConfig", "ConfigError"]

logger: Final = logging.getLogger("clinotel.collector")

LOG_ERROR_SHOWN_S: Final = 30.0
"""How long a request refused for a log that could not be written keeps `/ping` from answering OK."""
INSECURE_TENANT: Final = "default"
MAX_ROLLUP_INTERVAL_S: Final = 3600.0
MAX_ROLLUP_WINDOW_DAYS: Final = 366
MAX_GRPC_RECEIVE_TIMEOUT_S: Final = 600.0


class ConfigError(ValueError):
    """A collector configuration that cannot be used."""


@dataclass(frozen=True)
class CollectorConfig:
    data_dir: Path | None = None
    clickhouse_url: str | None = None
    database: str = DEFAULT_DATABASE
    wal_dir: Path | None = None
    otlp_http: tuple[str, int] = ("127.0.0.1", 4318)
    otlp_grpc: tuple[str, int] | None = ("127.0.0.1", 4317)
    http: tuple[str, int] | None = ("127.0.0.1", 8123)
    tokens: Tokens | None = None
    insecure_no_auth: bool = False
    insecure_tenant: str = INSECURE_TENANT
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_connections: int = MAX_CONNECTIONS
    """Connections each HTTP port serves at once; one more is answered 503 (Retry-After)."""
    receive_buffer_bytes: int | None = None
    """Request bytes both receivers hold at once (bodies, inflated, canonical); a request that
    does not fit is answered busy, retried (`receiver.admission`). None: 256 MiB, or 4 times
    `max_request_bytes` when that is more (`receive_buffer`)."""
    grpc_receive_timeout_s: float = RECEIVE_TIMEOUT_S
    """How long an OTLP/gRPC call may take from its start to its whole message; a call still
    without it is ended with DEADLINE_EXCEEDED (`receiver.grpc`)."""
    max_span_age_days: int | None = DEFAULT_MAX_SPAN_AGE_DAYS
    """Spans starting earlier than this before they arrive are refused (partial success); None:
    any age (tests that replay a fixed clock)."""
    retry_window_s: float = DEFAULT_RETRY_WINDOW_S
    """How long a request is recognised when sent again (`receiver.retries`); 0: never."""
    new_days_per_s: float = DEFAULT_NEW_DAYS_PER_S
    """New days a tenant's spans may add a second (`receiver.days`); 0: unpaced."""
    max_span_lead_ns: int = MAX_SPAN_LEAD_NS
    """Spans starting later than this after they arrive are refused (a day: a clock ahead, a time zone
    taken for UTC); more only for a simulation whose late truth is dated ahead (the demo)."""
    wal_max_bytes: int = 1 << 30
    wal_segment_bytes: int | None = None
    """A segment is one INSERT, which takes ~40 times its size in the engine's memory: None sizes it
    to the embedded engine's cap (`segment_bytes_for`: 8 MiB from 704 MB up, down to 1 MiB at the
    smallest cap), and 8 MiB with a server (whose memory is its operator's)."""
    wal_max_age_s: float = 0.5
    engine_memory_bytes: int = DEFAULT_ENGINE_MEMORY_MB << 20
    """The embedded engine's memory cap (`store.embedded.engine_options`); with a server, its own."""
    fsync_parts: bool = False
    """The embedded engine syncs every part an insert writes before the INSERT returns (and so
    before its log segment is deleted): acknowledged spans survive a power cut, for a few more
    fsyncs an insert (`store.embedded.DURABLE_PART_SETTINGS`). A server: its own configuration."""
    ttl_days: int | None = None
    read_limits: ReadLimits = field(default_factory=ReadLimits)
    metrics_interval_s: float | None = 10.0
    """How often the collector's figures are written to ClickHouse; None: never."""
    rollup_interval_s: float | None = rollups.DEFAULT_INTERVAL_S
    """How often the hourly rollup's recent days are recomputed (`store.rollups`); None: never."""
    rollup_window_days: int = rollups.DEFAULT_WINDOW_DAYS
    """How many days back each refresh recomputes: late truth within it reaches the dashboards."""

    def validate(self) -> None:
        if self.tokens is None and not self.insecure_no_auth:
            raise ConfigError("give --tokens FILE, or --insecure-no-auth on a loopback address")
        if self.tokens is not None and self.insecure_no_auth:
            raise ConfigError("give --tokens FILE or --insecure-no-auth, not both (the tokens would win, silently)")
        hosts = [self.otlp_http[0]] + [a[0] for a in (self.otlp_grpc, self.http) if a is not None]
        exposed = [h for h in hosts if not is_loopback(h)]
        if self.insecure_no_auth and exposed:
            raise ConfigError(f"--insecure-no-auth is refused on a non-loopback address ({exposed[0]})")
        if self.data_dir is not None and self.clickhouse_url is not None:
            raise ConfigError("give --data-dir or --clickhouse-url, not both")
        if self.fsync_parts and self.clickhouse_url is not None:
            raise ConfigError(
                "--fsync-parts is for the embedded store; a ClickHouse server syncs parts as its own "
                "configuration says (fsync_after_insert and fsync_part_directory in its <merge_tree>)"
            )
        try:
            schema.SchemaOptions(database=self.database, ttl_days=self.ttl_days)
        except ValueError as e:
            raise ConfigError(f"--database / --ttl-days: {e}") from None
        if self.rollup_interval_s is not None and not 1 <= self.rollup_interval_s <= MAX_ROLLUP_INTERVAL_S:
            raise ConfigError(f"--rollup-interval-s: from 1 to {MAX_ROLLUP_INTERVAL_S:.0f} seconds (0: never)")
        if not 0 < self.grpc_receive_timeout_s <= MAX_GRPC_RECEIVE_TIMEOUT_S:
            raise ConfigError(
                f"--grpc-receive-timeout-s: more than 0 and at most {MAX_GRPC_RECEIVE_TIMEOUT_S:.0f} seconds, "
                f"not {self.grpc_receive_timeout_s:g}"
            )
        if self.wal_max_bytes <= self.max_request_bytes:
            raise ConfigError(
                f"--wal-max-mb ({self.wal_max_bytes / (1 << 20):g}) must be more than --max-request-mb "
                f"({self.max_request_bytes / (1 << 20):g}): the log could never take a request of the largest size "
                "the receivers accept, and would answer 503 to it forever"
            )
        if self.receive_buffer < RECEIVE_BUFFER_REQUESTS * self.max_request_bytes:
            raise ConfigError(
                f"--receive-buffer-mb ({self.receive_buffer / (1 << 20):g}) must be at least "
                f"{RECEIVE_BUFFER_REQUESTS} times --max-request-mb ({self.max_request_bytes / (1 << 20):g}): one "
                "tenant's share (three quarters) must hold a request of the largest size three times over "
                "(its gzipped body, inflated, and re-encoded)"
            )
        if not 1 <= self.max_connections <= 1 << 16:
            raise ConfigError(f"--max-connections: from 1 to {1 << 16}, not {self.max_connections}")
        if self.max_span_age_days is not None and not 1 <= self.max_span_age_days <= MAX_SPAN_AGE_DAYS:
            raise ConfigError(f"--max-span-age-days: from 1 to {MAX_SPAN_AGE_DAYS} days")
        if not 0 <= self.retry_window_s <= MAX_RETRY_WINDOW_S:  # NaN fails both
            raise ConfigError(f"--retry-window-s: from 0 to {MAX_RETRY_WINDOW_S:g} seconds (0: never)")
        if not (self.new_days_per_s == 0 or MIN_NEW_DAYS_PER_S <= self.new_days_per_s <= MAX_NEW_DAYS_PER_S):
            raise ConfigError(
                f"--new-days-per-s: from {MIN_NEW_DAYS_PER_S:g} to {MAX_NEW_DAYS_PER_S:g} (0: unpaced); fewer would "
                "make a request wait longer than exporters retry"
            )
        if not 1 <= self.rollup_window_days <= MAX_ROLLUP_WINDOW_DAYS:
            raise ConfigError(f"--rollup-window-days: from 1 to {MAX_ROLLUP_WINDOW_DAYS} days")
        if not MIN_ENGINE_MEMORY_MB << 20 <= self.engine_memory_bytes <= MAX_ENGINE_MEMORY_MB << 20:
            raise ConfigError(
                f"--memory-mb: the embedded engine needs at least {MIN_ENGINE_MEMORY_MB} MB "
                f"(and at most {MAX_ENGINE_MEMORY_MB})"
            )
        named: dict[tuple[str, int], str] = {}
        for name, address in (("--otlp-http", self.otlp_http), ("--otlp-grpc", self.otlp_grpc), ("--http", self.http)):
            if address is not None and not 0 <= address[1] <= MAX_PORT:
                raise ConfigError(f"{name}: port {address[1]} is not a port (0 to {MAX_PORT})")
            if address is not None and address[1] != 0:
                key = (address[0].lower(), address[1])
                if key in named:  # not "already in use by another program": this one, twice
                    raise ConfigError(
                        f"{named[key]} and {name} both name {url_host(address[0])}:{address[1]}: "
                        "give each listener a port of its own"
                    )
                named[key] = name

    @property
    def receive_buffer(self) -> int:
        """The receive buffer's size: as given, or the default for `max_request_bytes`."""
        if self.receive_buffer_bytes is not None:
            return self.receive_buffer_bytes
        return receive_buffer_for(self.max_request_bytes)

    @property
    def segment_bytes(self) -> int:
        """The log's segment size: as given, or what the store can insert (`wal_segment_bytes`)."""
        if self.wal_segment_bytes is not None:
            return self.wal_segment_bytes
        if self.clickhouse_url is not None:
            return MAX_SEGMENT_BYTES
        return segment_bytes_for(self.engine_memory_bytes)

    @property
    def resolved_wal_dir(self) -> Path:
        """The log's directory: --wal-dir, else derived from the store (`DATA.wal` beside the data
        directory), so two stores never share one by default."""
        if self.wal_dir is not None:
            return self.wal_dir.resolve()
        return default_wal_dir(self.data_dir, self.clickhouse_url, self.database)

    @property
    def store(self) -> str:
        """The store's name as its log records it."""
        return store_id(self.engine_dir if self.clickhouse_url is None else None, self.clickhouse_url, self.database)

    @property
    def engine_dir(self) -> Path:
        return (self.data_dir if self.data_dir is not None else DEFAULT_DATA_DIR).resolve()


class Collector:
    """One collector process. `client` lets tests share their embedded engine; `on_failure` hears
    (once) why the collector stopped being able to store what it receives; `on_store_lost` (once)
    that its embedded engine failed, whenever that is learnt, before or after another failure and
    while stopping too (`clinotel serve` then exits regardless after a grace period)."""

    def __init__(
        self,
        config: CollectorConfig,
        client: Any | None = None,
        on_failure: Callable[[str], None] | None = None,
        on_store_lost: Callable[[], None] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.options = schema.SchemaOptions(database=config.database, ttl_days=config.ttl_days)
        self._client = client
        self._owns_client = client is None
        self.wal: WriteAheadLog | None = None
        self.writer: SegmentWriter | None = None
        self.receiver: TraceReceiver | None = None
        self.http: OtlpHttpServer | None = None
        self.grpc: OtlpGrpcServer | None = None
        self.admin: ClickHouseHttpServer | None = None
        self.reader: SqlReader | None = None
        self.recorder: MetricsRecorder | None = None
        self.rollups: rollups.RollupRefresher | None = None
        self.alert_figures: AlertFigures | None = None
        """What the alert evaluator beside this collector did (`serve --rules` sets it), for /metrics."""
        self._rollups_client: Any | None = None
        """The refresh thread's own client, when the collector opened it (closed at stop)."""
        self.watch: EngineWatch | None = None
        """Probes the embedded engine (when the collector opened it) for a failure of its own."""
        self._watch_client: Any | None = None
        self.failure: str | None = None
        """Why the collector stopped acknowledging, once it has."""
        self.failed = threading.Event()
        self._on_failure = on_failure
        self._failure_lock = threading.Lock()
        self._serving = False
        self._store_lost = False
        self._on_store_lost = on_store_lost
        self._store_lost_told = False

    def _authenticate(self, token: str | None) -> Grant | None:
        if self.config.tokens is not None:
            return self.config.tokens.grant(token)
        return Grant(self.config.insecure_tenant, "write")

    def _authorize_reader(self, credentials: Credentials) -> ReaderAccess:
        tokens = self.config.tokens
        if tokens is None:
            return ReaderAccess(None)
        if credentials.secret is None:
            raise ClickHouseError(
                194,
                "REQUIRED_PASSWORD",
                "A read token is required: as the password (HTTP Basic), X-ClickHouse-Key or a Bearer token",
            )
        grant = tokens.grant(credentials.secret)
        if grant is None:
            raise ClickHouseError(516, "AUTHENTICATION_FAILED", "Authentication failed: the token is not known")
        if grant.role != "read":
            raise ClickHouseError(497, "ACCESS_DENIED", f"A {grant.role} token cannot read: use a read token")
        return ReaderAccess(None if grant.tenant == ALL_TENANTS else grant.tenant)

    def _authorize_metrics(self, credentials: Credentials) -> None:
        """/metrics shows every tenant's figures: a metrics (scrape) token or an operator read token."""
        tokens = self.config.tokens
        if tokens is None:
            return  # --insecure-no-auth: loopback only
        if credentials.secret is None:
            raise ClickHouseError(194, "REQUIRED_PASSWORD", "/metrics needs a metrics token or an operator read token")
        grant = tokens.grant(credentials.secret)
        if grant is None:
            raise ClickHouseError(516, "AUTHENTICATION_FAILED", "Authentication failed: the token is not known")
        if not grant.may_scrape:
            raise ClickHouseError(
                497, "ACCESS_DENIED", "/metrics shows every tenant's figures: a metrics or operator token is needed"
            )

    def start(self) -> None:
        """Bind every listener, lock and claim the log, open the store, start writing and serving;
        on any error, release what was taken and raise."""
        self.receiver = TraceReceiver(
            None,
            Limits(
                self.config.max_request_bytes,
                self.config.max_span_age_days,
                self.config.max_span_lead_ns,
                receive_buffer_bytes=self.config.receive_buffer,
                retry_window_s=self.config.retry_window_s,
                new_days_per_s=self.config.new_days_per_s,
            ),
            health=self.health,
        )
        try:
            self._listen()
            self._open()
            self._serve()
        except BaseException as e:
            if _lost_engine_in(e):
                self._store_lost = True  # `_abandon` waits on nothing in it; the caller exits
            self._abandon()
            raise

    def _listen(self) -> None:
        """Every port, before anything is created: a clash leaves nothing behind."""
        cfg = self.config
        assert self.receiver is not None
        self.http = OtlpHttpServer(
            cfg.otlp_http[0], cfg.otlp_http[1], self.receiver, self._authenticate, cfg.max_connections
        )
        if cfg.otlp_grpc is not None:
            self.grpc = OtlpGrpcServer(
                cfg.otlp_grpc[0], cfg.otlp_grpc[1], self.receiver, self._authenticate,
                receive_timeout_s=cfg.grpc_receive_timeout_s,
            )  # fmt: skip
        if cfg.http is not None:
            self.admin = ClickHouseHttpServer(
                cfg.http[0], cfg.http[1], self.metrics, None, self._authorize_reader, self._authorize_metrics,
                self.readiness, cfg.max_connections,
            )  # fmt: skip

    def _check_logs(self, wal_dir: Path) -> None:
        """Refuse to start where acknowledged segments would be left behind: in the log this store
        recorded before, or in the unowned log earlier versions shared between stores."""
        cfg = self.config
        if cfg.clickhouse_url is None:
            recorded = recorded_log(cfg.engine_dir, cfg.database)
            waiting = pending_segments(recorded) if recorded is not None and recorded != wal_dir else []
            if recorded is not None and waiting:
                raise ConfigError(
                    f"the store {cfg.engine_dir} records its log at {recorded}, which holds {len(waiting)} segment(s) "
                    f"not yet stored: start it with --wal-dir {recorded}"
                )
        legacy = legacy_wal_dir(cfg.engine_dir)
        waiting = pending_segments(legacy) if cfg.wal_dir is None and legacy != wal_dir else []
        if waiting and owner_of(legacy) in (None, cfg.store):
            raise ConfigError(
                f"{legacy} holds {len(waiting)} segment(s) not yet stored, in a log with no owner recorded (earlier "
                "versions put the log of every store in this folder there): start the store they belong to once "
                f"with --wal-dir {legacy}"
            )

    def _open(self) -> None:
        cfg = self.config
        wal_dir = cfg.resolved_wal_dir
        embedded = cfg.clickhouse_url is None
        if embedded and self._owns_client:
            check_embedded(cfg.engine_dir, cfg.database, reading=False)
        self._check_logs(wal_dir)
        if not embedded and self._client is None:
            # a server reached before its log is claimed: one that cannot be reached (a mistyped
            # URL) leaves no log recorded as its own, which the corrected URL would be refused
            self._client = self._connect()
        holder = {"store": cfg.store}
        if self.admin is not None and embedded and cfg.http is not None:
            holder["read"] = f"http://{url_host(cfg.http[0])}:{self.admin.port}"
        self.wal = WriteAheadLog(
            wal_dir,
            owner=cfg.store,
            holder=holder,
            segment_bytes=cfg.segment_bytes,
            max_age_s=cfg.wal_max_age_s,
            max_bytes=cfg.wal_max_bytes,
        )
        left = self.wal.sealed_names()  # what a previous process left, before this one appends
        client = self._client if self._client is not None else self._connect()
        self._client = client
        if embedded:
            record_log(cfg.engine_dir, cfg.database, wal_dir)
        applied = schema.apply(client, self.options)
        if applied and applied[0] == 1:
            logger.info("created the store's schema (version %d)", applied[-1])
        elif applied:
            # an operator deciding whether a release can go back needs to see that it cannot
            logger.warning(
                "migrated the store to schema version %d (migrations %s): a release that knows less refuses "
                "it from now on (going back: docs/operations.md, Upgrading)", applied[-1], ", ".join(map(str, applied)),
            )  # fmt: skip
        if embedded:
            full_parts(client, self.options.database, ROLLUP_TABLES)
        pipeline = ingest.install(client, self.options)
        if left:
            logger.info("replaying %d segment(s) left in the write-ahead log", len(left))
        segments: SegmentStore
        if embedded:
            earlier = ingest.earlier_pipeline(client, pipeline, wal_dir) if left else None
            segments = EmbeddedSegments(client, pipeline, str(pipeline.write_proto(wal_dir)), cfg.engine_memory_bytes)
            if earlier is not None:
                logger.warning(
                    "%d segment(s) in the write-ahead log were left by a collector of another release: they go "
                    "through its ingest view (%s), so that those it stored before it stopped are not stored twice",
                    len(left), earlier.table,
                )  # fmt: skip
                segments.earlier, segments.left_by_earlier = earlier, set(left)
        else:
            segments = ServerSegments(client, pipeline, ingest.server_schema(client, pipeline))
        self.writer = SegmentWriter(self.wal, segments, on_failure=self.fail)
        # damaged segments set aside at open count as any set aside: their ticket opens (an on-call
        # review lost 512 acknowledged spans to a damaged segment with no ticket)
        self.writer.stats.quarantined += self.wal.damaged_at_open
        if cfg.metrics_interval_s is not None:
            assert self.http is not None
            instance = f"{socket.gethostname()}:{self.http.port}"
            self.recorder = MetricsRecorder(
                client, self.options, self.metric_families, instance, cfg.metrics_interval_s, self._store_error
            )
        if cfg.rollup_interval_s is not None:
            # a client of its own: a refresh must not hold the writer's (its calls are serialized)
            if self._owns_client:
                self._rollups_client = self._connect()
            window_share, whole_share = rollups.memory_shares(cfg.engine_memory_bytes)
            self.rollups = rollups.RollupRefresher(
                self._rollups_client or client,
                self.options,
                interval_s=cfg.rollup_interval_s,
                window_days=cfg.rollup_window_days,
                max_memory_bytes=window_share if embedded else None,
                whole_memory_bytes=whole_share if embedded else None,
                on_error=self._store_error,
            )
        if embedded and self._owns_client:
            self._watch_client = self._connect()
            self.watch = EngineWatch(self._watch_client, engine_failed, self._store_error, self._engine_stalled)
        if self.admin is not None and embedded:
            # With a server, readers query the server (its users and row policies); this port keeps
            # /ping and /metrics.
            self.reader = SqlReader(cfg.engine_dir, cfg.database, schema.tenant_tables(), self._read_limits())
            self.admin.set_reader(self.reader)
            if isinstance(segments, EmbeddedSegments):
                segments.quiesce = self.reader.paused
        if embedded:
            # the engine's start-up ran most of its library once: give those pages back
            try:
                released = release_engine_code()
                logger.debug("asked the kernel to reclaim %d MB of the engine's code", released >> 20)
            except Exception as e:  # noqa: BLE001 - a saving, never a reason not to start
                logger.debug("could not give back the engine's start-up code: %s", e)

    def _connect(self) -> Any:
        """A client of the store as configured (every client of an embedded store shares the
        engine the first one started, with its cap and its part syncing)."""
        cfg = self.config
        return connect(
            cfg.data_dir, cfg.clickhouse_url, memory_bytes=cfg.engine_memory_bytes, fsync_parts=cfg.fsync_parts
        )

    def _read_limits(self) -> ReadLimits:
        """The read port's caps, each reader query held to a quarter of the engine's memory: eight
        readers may still fill it, but then a reader's query fails, never the process."""
        limits = self.config.read_limits
        share = self.config.engine_memory_bytes // 4
        return replace(limits, max_memory_usage=min(limits.max_memory_usage, share))

    def _serve(self) -> None:
        assert self.writer is not None
        assert self.receiver is not None
        assert self.wal is not None
        # before the writer takes them: requests logged but perhaps never answered (a kill -9)
        recalled = self.receiver.recall(self.wal.directory)
        if recalled:
            logger.info("recalled %d request(s) received in the last %.0f s, to recognise if retried",
                        recalled, self.receiver.recent.window_s)  # fmt: skip
        self.writer.start()
        if self.recorder is not None:
            self.recorder.start(on_failure=self.fail)
        if self.rollups is not None:
            self.rollups.start(on_failure=self.fail)
        if self.watch is not None:
            self.watch.start(on_failure=self.fail)
        self.receiver.attach(self.wal)
        for server in (self.http, self.admin):
            if server is not None:
                server.on_failure = self.fail
                server.start()
        if self.grpc is not None:
            self.grpc.start()
        self._serving = True

    def _abandon(self) -> None:
        """Undo a start that failed part way: close the ports, release the log."""
        for server in (self.admin, self.http):
            if server is not None:
                server.stop()
        if self.grpc is not None:
            if self._serving:
                self.grpc.stop()
            else:
                self.grpc.close()
        lost = self.store_lost
        self._stop_rollups(wait=not lost)
        if self.writer is not None:
            self.writer.stop(drain=False, wait=not lost)
        if self.recorder is not None:
            self.recorder.stop(record=False, wait=not lost)
        if self.reader is not None and not lost:
            self.reader.close()
        self._stop_watch(wait=not lost)
        if self.wal is not None:
            self.wal.release()

    def _stop_rollups(self, wait: bool) -> None:
        self._rollups_client = _stopped(self.rollups, self._rollups_client, wait)

    def _stop_watch(self, wait: bool) -> None:
        self._watch_client = _stopped(self.watch, self._watch_client, wait)

    def health(self) -> str | None:
        """Why the collector cannot store what it receives now, or None when it can."""
        if self.failure is not None:
            return self.failure
        if self.wal is not None and self.wal.lost is not None:
            return self.wal.lost
        if self.writer is not None and not self.writer.alive:
            return self.writer.failure or "the writer thread stopped"
        return None

    def readiness(self) -> str | None:
        """Why `/ping` should not answer OK, and `clinotel_collector_up` be 0: `health`, or, for as
        long as it lasts, a store that has taken no segment for `STALL_ALARM_S` (a full disk, an
        engine refusing its inserts) or a log that could not be written within `LOG_ERROR_SHOWN_S`
        (a full or read-only disk under it). Exports are still taken meanwhile, into the log while it
        can hold them. On a full disk every figure an operator watches said all was well (a review)."""
        problem = self.health()
        if problem is not None:
            return problem
        now = time.monotonic()
        stats = self.writer.stats if self.writer is not None else None
        if stats is not None and stats.stalled_since is not None and now - stats.stalled_since >= STALL_ALARM_S:
            return (
                f"the store has taken no segment for {now - stats.stalled_since:.0f} s ({stats.stalled_by}): "
                "acknowledged spans wait in the log"
            )
        refused_at = self.receiver.stats.refused_at.get("log_error") if self.receiver is not None else None
        if refused_at is not None and now - refused_at < LOG_ERROR_SHOWN_S:
            return "the write-ahead log could not be written lately (a full or read-only disk?): exports are refused"
        return None

    def fail(self, reason: str) -> None:
        """Stop acknowledging for `reason` (a background thread died, the log was lost)."""
        with self._failure_lock:
            first = self.failure is None
            if first:
                self.failure = reason
            tell = not self._store_lost_told and self.store_lost
            if tell:
                self._store_lost_told = True
        if first:
            logger.critical("the collector stops acknowledging (503 from now on): %s", reason)
            self.failed.set()
        if tell and self._on_store_lost is not None:
            self._on_store_lost()
        if first and self._on_failure is not None:
            self._on_failure(reason)

    def metric_families(self) -> list[metrics.Family]:
        """The collector's figures, read once."""
        assert self.receiver is not None
        assert self.wal is not None
        assert self.writer is not None
        embedded = self.config.clickhouse_url is None
        return metrics.collect(
            self.receiver.stats,
            self.wal,
            self.writer.stats,
            up=self.readiness() is None,
            parts_synced=self.config.fsync_parts if embedded else None,
            buffer=self.receiver.budget,
            decoding=self.receiver.decoding,
            alerts=self.alert_figures,
            rollups=None if self.rollups is None else self.rollups.figures(),
        )

    def metrics(self) -> str:
        """The collector's figures in Prometheus text format."""
        return metrics.render(self.metric_families())

    @property
    def client(self) -> Any:
        return self._client

    @property
    def store_lost(self) -> bool:
        """The embedded engine stopped after a fatal error of its own: it takes nothing more from
        this process, and its own shutdown waits for the thread that crashed (exit without it)."""
        return self._store_lost or (self.writer is not None and self.writer.store_lost)

    def _store_error(self, error: Exception) -> None:
        """An error the metrics or rollups thread met: a failed embedded engine stops the
        collector as it does when the writer meets it (an idle writer never would)."""
        if self.writer is not None and self.writer.store.is_lost(error):
            self._lose_store(store_lost_reason(error))

    def _engine_stalled(self, waited_s: float) -> None:
        """The watch's probe has waited `waited_s`: an engine whose new queries hang is lost too."""
        self._lose_store(
            f"the embedded engine has not answered SELECT 1 for {waited_s:.0f} s (a query may wait on a thread of "
            "the engine's that crashed)"
        )

    def _lose_store(self, reason: str) -> None:
        self._store_lost = True
        self.fail(reason)

    def stop(self) -> None:
        """Stop receiving, seal the log, and write everything acknowledged (unless the collector
        failed: then what the log holds stays on disk for the next start).

        Once the embedded engine is lost, nothing here waits on a thread that may be in one of its
        queries (such a query may never end) or sends it another: the caller exits without closing
        it (`store_lost`)."""
        for server in (self.admin, self.grpc, self.http):
            if server is not None:
                server.stop()
        if self.reader is not None and not self.store_lost:
            self.reader.close()
        self._stop_rollups(wait=not self.store_lost)
        if self.wal is not None:
            try:
                self.wal.close()
            except (LogLostError, OSError) as e:
                logger.error("could not seal the log: %s", e)
        if self.writer is not None:
            try:
                self.writer.stop(drain=self.health() is None, wait=not self.store_lost)
            except (LogLostError, StoreLostError, OSError) as e:
                logger.error("could not write what the log holds: %s", e)
                if isinstance(e, StoreLostError):
                    self.fail(str(e))  # heard as the engine's loss (`on_store_lost`)
        if self.recorder is not None:
            lost = self.store_lost  # the drain above may have met the failure
            self.recorder.stop(record=not lost, wait=not lost)
        # the watch last: a failure met while stopping (an insert of the drain that never ends)
        # is learnt, and `on_store_lost` heard, whatever the stop waits on
        self._stop_watch(wait=not self.store_lost)
        if self.wal is not None:
            self.wal.release()


def _stopped(thread: rollups.RollupRefresher | EngineWatch | None, client: Any | None, wait: bool) -> Any | None:
    """Stop `thread` (the rollups' refresh or the watch) and close its own `client` once the thread
    has ended: the client left open, or None. Without `wait` (a lost engine), the thread is not
    waited for; a client whose thread is still in a query stays open, as closing it would wait for
    that query, which a lost engine may never end."""
    if thread is not None:
        thread.stop(wait=wait)
        if thread.running:
            return client
    if client is not None:
        client.close()
    return None


def _lost_engine_in(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says the embedded engine failed."""
    seen: BaseException | None = error
    for _ in range(8):  # the chain is short: a StoreError or setup error over the driver's
        if seen is None:
            return False
        if isinstance(seen, Exception) and engine_failed(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
