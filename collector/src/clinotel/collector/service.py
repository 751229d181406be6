"""The collector assembled: store, schema, log, writer, receivers; started in that order and
stopped in reverse, so nothing acknowledged is left behind."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from clinotel.collector import metrics, otlp_proto, schema
from clinotel.collector.admin_http import AdminHttpServer
from clinotel.collector.otlp_grpc import OtlpGrpcServer
from clinotel.collector.otlp_http import OtlpHttpServer, is_loopback
from clinotel.collector.receiver import DEFAULT_MAX_REQUEST_BYTES, Limits, TraceReceiver
from clinotel.collector.store import connect
from clinotel.collector.tokens import Grant, Tokens
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

    def validate(self) -> None:
        if self.tokens is None and not self.insecure_no_auth:
            raise ConfigError("give --tokens FILE, or --insecure-no-auth on a loopback address")
        hosts = [self.otlp_http[0]] + ([self.otlp_grpc[0]] if self.otlp_grpc else [])
        exposed = [h for h in hosts if not is_loopback(h)]
        if self.insecure_no_auth and exposed:
            raise ConfigError(f"--insecure-no-auth is refused on a non-loopback address ({exposed[0]})")
        if self.data_dir is not None and self.clickhouse_url is not None:
            raise ConfigError("give --data-dir or --clickhouse-url, not both")
        if self.clickhouse_url is not None:
            raise ConfigError(
                "writing to a ClickHouse server is not available yet: the embedded engine (--data-dir) is"
            )

    @property
    def resolved_wal_dir(self) -> Path:
        if self.wal_dir is not None:
            return self.wal_dir
        base = self.data_dir if self.data_dir is not None else Path(".clinotel") / "data"
        return base.parent / "wal"


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
        self.admin: AdminHttpServer | None = None

    def _authenticate(self, token: str | None) -> Grant | None:
        if self.config.tokens is not None:
            return self.config.tokens.grant(token)
        return Grant(self.config.insecure_tenant, "write")

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
        proto_file = wal_dir / "otlp-wal.proto"
        proto_file.write_text(otlp_proto.proto_schema(), encoding="utf-8")
        replay = self.wal.sealed_count
        if replay:
            logger.info("replaying %d segment(s) left in the write-ahead log", replay)
        self.writer = SegmentWriter(self.wal, client, self.options, proto_file)
        self.writer.start()
        self.receiver = TraceReceiver(self.wal, Limits(cfg.max_request_bytes))
        host, port = cfg.otlp_http
        self.http = OtlpHttpServer(host, port, self.receiver, self._authenticate)
        self.http.start()
        if cfg.otlp_grpc is not None:
            self.grpc = OtlpGrpcServer(cfg.otlp_grpc[0], cfg.otlp_grpc[1], self.receiver, self._authenticate)
            self.grpc.start()
        if cfg.http is not None:
            self.admin = AdminHttpServer(cfg.http[0], cfg.http[1], self.metrics)
            self.admin.start()

    def metrics(self) -> str:
        """The collector's figures in Prometheus text format."""
        assert self.receiver is not None
        assert self.wal is not None
        assert self.writer is not None
        return metrics.render(self.receiver.stats, self.wal, self.writer.stats)

    @property
    def client(self) -> Any:
        return self._client

    def stop(self) -> None:
        """Stop receiving, seal the log, and write everything acknowledged."""
        if self.admin is not None:
            self.admin.stop()
        if self.grpc is not None:
            self.grpc.stop()
        if self.http is not None:
            self.http.stop()
        if self.wal is not None:
            self.wal.close()
        if self.writer is not None:
            self.writer.stop(drain=True)
