"""The collector assembled: store, schema, log, writer, receivers; started in that order and
stopped in reverse, so nothing acknowledged is left behind."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from clinotel.collector import ingest, metrics, schema
from clinotel.collector.clickhouse_http import ClickHouseHttpServer, Credentials, ReaderAccess
from clinotel.collector.otlp_grpc import OtlpGrpcServer
from clinotel.collector.otlp_http import OtlpHttpServer, is_loopback
from clinotel.collector.receiver import DEFAULT_MAX_REQUEST_BYTES, Limits, TraceReceiver
from clinotel.collector.self_telemetry import MetricsRecorder
from clinotel.collector.sql_reader import ClickHouseError, ReadLimits, SqlReader
from clinotel.collector.store import DEFAULT_DATA_DIR, connect
from clinotel.collector.tokens import ALL_TENANTS, Grant, Tokens
from clinotel.collector.wal import WriteAheadLog
from clinotel.collector.writer import SegmentWriter

__all__ = ["Collector", "CollectorConfig", "ConfigError"]

logger: Final = logging.getLogger("clinotel.collector")
INSECURE_TENANT: Final = "default"


class ConfigError(ValueError):
    """A collector configuration that cannot be used."""


@dataclass(frozen=True)
class CollectorConfig:
    data_dir: Path | None = None
    clickhouse_url: str | None = None
    database: str = "clinotel"
    wal_dir: Path | None = None
    otlp_http: tuple[str, int] = ("127.0.0.1", 4318)
    otlp_grpc: tuple[str, int] | None = ("127.0.0.1", 4317)
    http: tuple[str, int] | None = ("127.0.0.1", 8123)
    tokens: Tokens | None = None
    insecure_no_auth: bool = False
    insecure_tenant: str = INSECURE_TENANT
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    wal_max_bytes: int = 1 << 30
    wal_segment_bytes: int = 16 << 20
    wal_max_age_s: float = 0.5
    ttl_days: int | None = None
    read_limits: ReadLimits = field(default_factory=ReadLimits)
    metrics_interval_s: float | None = 10.0
    """How often the collector's figures are written to ClickHouse; None: never."""

    def validate(self) -> None:
        if self.tokens is None and not self.insecure_no_auth:
            raise ConfigError("give --tokens FILE, or --insecure-no-auth on a loopback address")
        hosts = [self.otlp_http[0]] + [a[0] for a in (self.otlp_grpc, self.http) if a is not None]
        exposed = [h for h in hosts if not is_loopback(h)]
        if self.insecure_no_auth and exposed:
            raise ConfigError(f"--insecure-no-auth is refused on a non-loopback address ({exposed[0]})")
        if self.data_dir is not None and self.clickhouse_url is not None:
            raise ConfigError("give --data-dir or --clickhouse-url, not both")

    @property
    def resolved_wal_dir(self) -> Path:
        if self.wal_dir is not None:
            return self.wal_dir
        return self.engine_dir.parent / "wal"

    @property
    def engine_dir(self) -> Path:
        return (self.data_dir if self.data_dir is not None else DEFAULT_DATA_DIR).resolve()


class Collector:
    """One collector process. `client` lets tests share their embedded engine."""

    def __init__(self, config: CollectorConfig, client: Any | None = None) -> None:
        config.validate()
        self.config = config
        self.options = schema.SchemaOptions(database=config.database, ttl_days=config.ttl_days)
        self._client = client
        self.wal: WriteAheadLog | None = None
        self.writer: SegmentWriter | None = None
        self.receiver: TraceReceiver | None = None
        self.http: OtlpHttpServer | None = None
        self.grpc: OtlpGrpcServer | None = None
        self.admin: ClickHouseHttpServer | None = None
        self.reader: SqlReader | None = None
        self.recorder: MetricsRecorder | None = None

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
        cfg = self.config
        client = self._client if self._client is not None else connect(cfg.data_dir, cfg.clickhouse_url)
        self._client = client
        applied = schema.apply(client, self.options)
        if applied:
            logger.info("schema migrations applied: %s", applied)
        wal_dir = cfg.resolved_wal_dir
        self.wal = WriteAheadLog(
            wal_dir,
            segment_bytes=cfg.wal_segment_bytes,
            max_age_s=cfg.wal_max_age_s,
            max_bytes=cfg.wal_max_bytes,
        )
        pipeline = ingest.install(client, self.options)
        replay = self.wal.sealed_count
        if replay:
            logger.info("replaying %d segment(s) left in the write-ahead log", replay)
        if cfg.clickhouse_url is None:
            self.writer = SegmentWriter(self.wal, client, pipeline, "file", str(pipeline.write_proto(wal_dir)))
        else:
            self.writer = SegmentWriter(self.wal, client, pipeline, "body", ingest.server_schema(client, pipeline))
        self.writer.start()
        self.receiver = TraceReceiver(self.wal, Limits(cfg.max_request_bytes))
        if cfg.metrics_interval_s is not None:
            instance = f"{socket.gethostname()}:{cfg.otlp_http[1]}"
            self.recorder = MetricsRecorder(
                client, self.options, self.metric_families, instance, cfg.metrics_interval_s
            )
            self.recorder.start()
        host, port = cfg.otlp_http
        self.http = OtlpHttpServer(host, port, self.receiver, self._authenticate)
        self.http.start()
        if cfg.otlp_grpc is not None:
            self.grpc = OtlpGrpcServer(cfg.otlp_grpc[0], cfg.otlp_grpc[1], self.receiver, self._authenticate)
            self.grpc.start()
        if cfg.http is not None:
            # With a server, readers query the server (its users and row policies); this port keeps
            # /ping and /metrics.
            if cfg.clickhouse_url is None:
                self.reader = SqlReader(cfg.engine_dir, cfg.database, schema.tenant_tables(), cfg.read_limits)
            self.admin = ClickHouseHttpServer(
                cfg.http[0], cfg.http[1], self.metrics, self.reader, self._authorize_reader, self._authorize_metrics
            )
            self.admin.start()

    def metric_families(self) -> list[metrics.Family]:
        """The collector's figures, read once."""
        assert self.receiver is not None
        assert self.wal is not None
        assert self.writer is not None
        return metrics.collect(self.receiver.stats, self.wal, self.writer.stats)

    def metrics(self) -> str:
        """The collector's figures in Prometheus text format."""
        return metrics.render(self.metric_families())

    @property
    def client(self) -> Any:
        return self._client

    def stop(self) -> None:
        """Stop receiving, seal the log, and write everything acknowledged."""
        if self.admin is not None:
            self.admin.stop()
        if self.reader is not None:
            self.reader.close()
        if self.grpc is not None:
            self.grpc.stop()
        if self.http is not None:
            self.http.stop()
        if self.wal is not None:
            self.wal.close()
        if self.writer is not None:
            self.writer.stop(drain=True)
        if self.recorder is not None:
            self.recorder.stop()
