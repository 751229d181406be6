"""`clinotel schema` and `clinotel query`; the collector's part of `clinotel serve` (`serve_options`,
`run_serve`: the umbrella CLI registers the command); `reading_store` for every command that reads."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NoReturn

import click

from clinotel.collector.net.listen import MAX_PORT, url_host
from clinotel.collector.net.server import MAX_CONNECTIONS, REQUEST_TIMEOUT_S
from clinotel.collector.receiver.admission import DEFAULT_RECEIVE_BUFFER_BYTES
from clinotel.collector.receiver.days import BURST_S, DEFAULT_NEW_DAYS_PER_S, MAX_NEW_DAYS_PER_S, MIN_NEW_DAYS_PER_S
from clinotel.collector.receiver.export import DEFAULT_MAX_SPAN_AGE_DAYS, MAX_SPAN_AGE_DAYS
from clinotel.collector.receiver.retries import DEFAULT_RETRY_WINDOW_S, MAX_RETRY_WINDOW_S
from clinotel.collector.store import schema as schema_module
from clinotel.collector.store.embedded import (
    DEFAULT_DATA_DIR,
    DEFAULT_ENGINE_MEMORY_MB,
    MAX_ENGINE_MEMORY_MB,
    MIN_ENGINE_MEMORY_MB,
    StoreError,
    check_embedded,
    connect,
    full_parts,
)
from clinotel.model.digits import ascii_digits
from clinotel.model.sql import literal
from clinotel.model.store import first_line, open_reading_store, reading_store, shown_url
from clinotel.model.tables import DEFAULT_DATABASE, ROLLUP_TABLES
from clinotel.model.terminal import printable

__all__ = [
    "Companion",
    "exit_if_store_lost",
    "exit_soon",
    "query",
    "run_serve",
    "schema",
    "serve_options",
    "start_or_exit",
]


def _options(database: str, cluster: str | None, ttl_days: int | None) -> schema_module.SchemaOptions:
    try:
        return schema_module.SchemaOptions(database=database, cluster=cluster, ttl_days=ttl_days)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


_common = [
    click.option("--database", default=DEFAULT_DATABASE, show_default=True, help="Database to create the tables in."),
    click.option("--cluster", help="Render ON CLUSTER DDL with Replicated and Distributed tables."),
    click.option("--ttl-days", type=int, help="Drop data older than this many days (per table, whole parts)."),
]


def _with_common(f: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_common):
        f = option(f)
    return f


@click.group()
def schema() -> None:
    """The ClickHouse schema: contrib trace tables and clinotel's views."""


@schema.command()
@_with_common
@click.option(
    "--tenant-readers",
    metavar="TENANT,…",
    help="Instead, print a ClickHouse server's reader users for these tenants: a read-only settings profile, "
    "one user per tenant and row policies on TenantId (needs --tokens for their passwords).",
)
@click.option(
    "--tokens",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The collector's tokens file: each tenant's read tokens become its user's passwords (by digest).",
)
def show(
    database: str, cluster: str | None, ttl_days: int | None, tenant_readers: str | None, tokens: Path | None
) -> None:
    """Print the schema's DDL, in the order it is applied."""
    options = _options(database, cluster, ttl_days)
    if tenant_readers is None:
        click.echo(schema_module.render(options), nl=False)
        return
    from clinotel.collector.readport.server_readers import ServerReadersError, render
    from clinotel.collector.tokens import TokenError, Tokens

    tenants = [t.strip() for t in tenant_readers.split(",") if t.strip()]
    if not tenants:
        raise click.BadParameter("name at least one tenant", param_hint="--tenant-readers")
    if tokens is None:
        raise click.UsageError("--tenant-readers needs --tokens FILE (the read tokens are the users' passwords)")
    try:
        click.echo(render(options, tenants, Tokens.load(tokens)), nl=False)
    except (TokenError, ServerReadersError) as e:
        raise click.ClickException(str(e)) from None


@schema.command("apply")
@_with_common
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The embedded engine's data directory [default: ./.clinotel/data].",
)
@click.option("--clickhouse-url", help="A ClickHouse server (http://host:8123); CLICKHOUSE_USER/PASSWORD.")
def apply_command(
    database: str, cluster: str | None, ttl_days: int | None, data_dir: Path | None, clickhouse_url: str | None
) -> None:
    """Create the schema, applying the migrations not yet recorded, in order."""
    if data_dir is not None and clickhouse_url is not None:
        raise click.UsageError("give --data-dir or --clickhouse-url, not both")
    options = _options(database, cluster, ttl_days)
    try:
        client = connect(data_dir, clickhouse_url)
        applied = schema_module.apply(client, options)
        if clickhouse_url is None:
            full_parts(client, database, ROLLUP_TABLES)  # as `serve` does: the rollups' parts full
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    if applied:
        click.echo(f"applied migrations {', '.join(map(str, applied))} to {database}")
    else:
        click.echo(f"{database} is up to date (schema version {schema_module.SCHEMA_VERSION})")


@schema.command("status")
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The embedded engine's data directory [default: ./.clinotel/data].",
)
@click.option("--clickhouse-url", help="A ClickHouse server (http://host:8123); CLICKHOUSE_USER/PASSWORD.")
def status_command(database: str, data_dir: Path | None, clickhouse_url: str | None) -> None:
    """Show the store's schema version and this clinotel's, changing nothing: what to check before
    an upgrade, and before going back to an older release (which refuses a store a newer one
    migrated)."""
    if data_dir is not None and clickhouse_url is not None:
        raise click.UsageError("give --data-dir or --clickhouse-url, not both")
    known = schema_module.SCHEMA_VERSION
    try:
        if clickhouse_url is None:
            held = "stop it to ask here (it migrated the store to its own version when it started)"
            check_embedded((data_dir or DEFAULT_DATA_DIR).resolve(), database, reading=True, held_advice=held)
        stored = schema_module.stored_version(connect(data_dir, clickhouse_url), _options(database, None, None))
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"store {database}: schema version {stored.version}; this clinotel knows {known}")
    if stored.started:
        click.echo(
            f"  migration {', '.join(map(str, stored.started))} started and not finished (a crash or a failure "
            "within it): a release that knows it finishes it at its start; an older one refuses the store"
        )
    if stored.version > known:
        click.echo("  a newer release migrated it: this clinotel refuses it (run that release)")
    elif stored.version < known:
        pending = ", ".join(str(v) for v in range(stored.version + 1, known + 1))
        click.echo(
            f"  `clinotel serve` or `clinotel schema apply` applies migrations {pending}; copy the data directory "
            "first to be able to go back (docs/operations.md, Upgrading)"
        )


@schema.command("refresh-rollups")
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option("--cluster", help="The store is a cluster: refresh this node's `_local` tables (run it on every shard).")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Recompute the days from this one (UTC) [default: every day].",
)
@click.option(
    "--every",
    type=click.FloatRange(min=1, max=3600),
    help="Keep refreshing, as a collector does: everything now and daily, the last --window-days every "
    "this many seconds, until SIGTERM (where no clinotel collector runs: a cluster's shard, the contrib stack).",
)
@click.option(
    "--window-days",
    type=click.IntRange(min=1, max=366),
    default=7,
    show_default=True,
    help="With --every: how many days back each refresh recomputes.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The embedded engine's data directory [default: ./.clinotel/data].",
)
@click.option("--clickhouse-url", help="A ClickHouse server (http://host:8123); CLICKHOUSE_USER/PASSWORD.")
def refresh_rollups(
    database: str,
    cluster: str | None,
    since: Any,
    every: float | None,
    window_days: int,
    data_dir: Path | None,
    clickhouse_url: str | None,
) -> None:
    """Recompute the dashboards' hourly rollups from the workflows view and the spans. A running
    clinotel collector does this by itself (its recent days every --rollup-interval-s, everything
    daily); run it after a backfill, with --every where no clinotel collector writes (the contrib
    collector's stack), and on a cluster against every shard, whose rollups are its own."""
    from clinotel.collector.store.rollups import refresh

    if data_dir is not None and clickhouse_url is not None:
        raise click.UsageError("give --data-dir or --clickhouse-url, not both")
    if every is not None and since is not None:
        raise click.UsageError("--since is for one refresh; --every refreshes the last --window-days")
    options = _options(database, cluster, None)
    day = since.date() if since is not None else None
    try:
        if clickhouse_url is None:
            # a running collector refreshes its store's rollups itself (this command has no --server)
            held = "it refreshes the rollups itself (stop it to refresh them here)"
            check_embedded((data_dir or DEFAULT_DATA_DIR).resolve(), database, reading=True, held_advice=held)
        client = connect(data_dir, clickhouse_url)
        tables = [f"{t}_local" if cluster else t for t in ROLLUP_TABLES]
        found = {
            str(name)
            for (name,) in client.query(
                f"SELECT name FROM system.tables WHERE database = {literal(database)} AND name IN %(t)s",
                parameters={"t": tables},
            ).result_rows
        }
        if missing := [t for t in tables if t not in found]:
            raise click.ClickException(
                f"{database} has no {', '.join(missing)} yet (a store from before this clinotel): run "
                "`clinotel schema apply` first"
            )
        schema_module.check_not_newer(client, options)
        if clickhouse_url is None:
            full_parts(client, database, ROLLUP_TABLES)
        if every is not None:
            _refresh_until_stopped(client, options, every, window_days)
            return
        done = refresh(client, options, day)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None
    except click.ClickException:
        raise
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:  # noqa: BLE001 - the engine's error, in one line
        raise click.ClickException(f"the refresh failed: {first_line(e)}") from None
    click.echo(_refreshed(done))


def _refreshed(done: Any) -> str:
    """A refresh in one line."""
    return (
        f"refreshed {done.partitions} tenant-month(s) from {done.since or 'the first'}: "
        f"{done.rows:,} rollup rows in {done.seconds:.1f} s"
    )


def _stop_signals() -> list[int]:
    """SIGTERM and SIGINT, from now on recorded in the list returned, for the main thread to poll.
    The handler records the signal and nothing else: `Event.set` takes a lock the main thread may
    hold (inside `wait`, or a first handler's `set` when a second signal comes): a `serve` sent
    SIGTERM twice at once blocked on its own lock for good (2026-12-06)."""
    import signal

    received: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, frame: received.append(number))
    return received


def _refresh_until_stopped(client: Any, options: schema_module.SchemaOptions, every: float, window_days: int) -> None:
    """The collector's refresh thread, without a collector, until SIGTERM or SIGINT."""
    import time

    from clinotel.collector.store.rollups import RollupRefresher

    signals = _stop_signals()
    refresher = RollupRefresher(
        client, options, interval_s=every, window_days=window_days,
        on_refresh=lambda done: click.echo(_refreshed(done), err=True),
    )  # fmt: skip
    what = f"every {every:g} s (the last {window_days} days; everything now and daily)"
    click.echo(f"refreshing the rollups of {options.database} {what}", err=True)
    failure: list[str] = []
    refresher.start(on_failure=failure.append)
    while refresher.running and not signals:
        time.sleep(0.25)
    refresher.stop()
    if failure:
        raise click.ClickException(failure[0])
    if not signals:
        raise click.ClickException(
            f"{options.database}'s rollups are a cluster's Distributed tables: give --cluster NAME and run it "
            "against a node of every shard"
        )


@schema.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write it into this directory (a server's format_schemas) instead of printing it.",
)
def proto(out: Path | None) -> None:
    """The .proto the collector reads its log segments with. A ClickHouse server without the
    setting format_schema_source needs it in its format_schemas directory, under this name."""
    from clinotel.collector.store.pipeline import Pipeline

    pipeline = Pipeline.for_options(schema_module.SchemaOptions())
    if out is None:
        click.echo(f"// {pipeline.proto_name}", err=True)
        click.echo(pipeline.proto, nl=False)
    else:
        click.echo(pipeline.write_proto(out))


def _address(value: str) -> tuple[str, int]:
    if "://" in value:
        raise click.BadParameter(f"expected HOST:PORT without a scheme (127.0.0.1:4318), not {value!r}")
    host, sep, port = value.rpartition(":")
    if not sep or not ascii_digits(port) or not host:
        raise click.BadParameter(f"expected HOST:PORT, not {value!r}")
    if int(port) > MAX_PORT:
        raise click.BadParameter(f"{port} is not a port (0 to {MAX_PORT})")
    return host.strip("[]"), int(port)


def _address_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    return _address(value)


Companion = Callable[[Any], Callable[[], None]]
"""Something `run_serve` starts beside the collector once it serves, in the same process: called
with the started `Collector`, it returns how to stop it (called before the collector stops). The
collector knows nothing of what it is: `clinotel serve --rules` (the umbrella CLI) runs the alert
evaluator this way, so clinotel-collector never imports clinotel-alerts."""

_serve_options = [
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="The embedded engine's data directory [default: ./.clinotel/data].",
    ),
    click.option(
        "--clickhouse-url",
        metavar="URL",
        help="Store in this ClickHouse server (http://host:8123) instead; user and password from "
        "CLICKHOUSE_USER and CLICKHOUSE_PASSWORD.",
    ),
    click.option(
        "--otlp-http",
        default="127.0.0.1:4318",
        show_default=True,
        callback=_address_option,
        help="OTLP/HTTP address.",
    ),
    click.option(
        "--otlp-grpc",
        default="127.0.0.1:4317",
        show_default=True,
        callback=_address_option,
        help="OTLP/gRPC address.",
    ),
    click.option(
        "--http",
        "http_address",
        default="127.0.0.1:8123",
        show_default=True,
        callback=_address_option,
        help="ClickHouse HTTP interface (read-only SQL, /ping) and /metrics listen address.",
    ),
    click.option("--tokens", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Tokens file (TOML)."),
    click.option("--insecure-no-auth", is_flag=True, help="Accept writes without a token (loopback addresses only)."),
    click.option(
        "--wal-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Write-ahead log directory, one per collector [default: DATA-DIR.wal beside the data directory].",
    ),
    click.option("--database", default=DEFAULT_DATABASE, show_default=True),
    click.option(
        "--max-request-mb",
        type=click.IntRange(min=1),
        default=64,
        show_default=True,
        help="Largest request, after decompression.",
    ),
    click.option(
        "--receive-buffer-mb",
        type=click.IntRange(min=1, max=1 << 20),
        default=None,
        help="Memory both receivers may hold for requests at once (bodies as read, inflated and "
        "re-encoded; one tenant at most three quarters of it): a request that does not fit is answered "
        f"503 busy with Retry-After (gRPC: UNAVAILABLE), which exporters retry. At least 4 times "
        f"--max-request-mb.  [default: {DEFAULT_RECEIVE_BUFFER_BYTES >> 20}, or 4 times --max-request-mb if more]",
    ),
    click.option(
        "--max-connections",
        type=click.IntRange(min=1, max=1 << 16),
        default=MAX_CONNECTIONS,
        show_default=True,
        help="Connections each HTTP port serves at once; one more is answered 503 with Retry-After "
        "(each holds a thread and a file descriptor).",
    ),
    click.option(
        "--grpc-receive-timeout-s",
        type=click.FloatRange(min=0, min_open=True, max=600),
        default=REQUEST_TIMEOUT_S,
        show_default=True,
        help="How long an OTLP/gRPC call may take from its start to its whole message (as an HTTP read may "
        "wait 30 s); a call still without it is ended with DEADLINE_EXCEEDED.",
    ),
    click.option(
        "--max-span-age-days",
        type=click.IntRange(min=1, max=MAX_SPAN_AGE_DAYS),
        default=DEFAULT_MAX_SPAN_AGE_DAYS,
        show_default=True,
        help="Spans that start longer ago than this when they arrive are refused (OTLP partial success), "
        "as are spans starting over a day ahead: each distinct day is a partition of every table.",
    ),
    click.option(
        "--retry-window-s",
        type=click.FloatRange(min=0, max=MAX_RETRY_WINDOW_S),
        default=DEFAULT_RETRY_WINDOW_S,
        show_default=True,
        help="How long a request is recognised when an exporter sends it again after a lost answer (answered, "
        "not stored twice); 0: never.",
    ),
    click.option(
        "--new-days-per-s",
        type=click.FloatRange(min=0, max=MAX_NEW_DAYS_PER_S),
        default=DEFAULT_NEW_DAYS_PER_S,
        show_default=True,
        help="Days other than today and the days either side that a tenant's spans may add a second (each a "
        f"partition of every table; {BURST_S:g} seconds' worth at once); more is answered 429 "
        f"with Retry-After. From {MIN_NEW_DAYS_PER_S:g}; 0: unpaced.",
    ),
    click.option(
        "--wal-max-mb",
        type=click.IntRange(min=1),
        default=1024,
        show_default=True,
        help="Unwritten log size before 503.",
    ),
    click.option(
        "--memory-mb",
        type=click.IntRange(min=MIN_ENGINE_MEMORY_MB, max=MAX_ENGINE_MEMORY_MB),
        default=DEFAULT_ENGINE_MEMORY_MB,
        show_default=True,
        help="The embedded engine's memory cap (inserts, merges, reads, caches; the process adds ~250-350 MB "
        "of code and interpreter). Below 704 the log's segments shrink to fit (fewer spans "
        "per second). Ignored with --clickhouse-url.",
    ),
    click.option(
        "--fsync-parts",
        is_flag=True,
        default=False,
        help="The embedded store syncs every part an insert writes to disk before the log lets go of its "
        "segment, so acknowledged spans survive a power cut, not only a crash (4 fsyncs a part, about 28 "
        "an 8 MiB insert: 1-7 % of an insert's time measured on a virtual disk). Refused with "
        "--clickhouse-url: a server syncs as its own configuration says (fsync_after_insert).",
    ),
    click.option(
        "--rollup-interval-s",
        type=click.FloatRange(min=0, max=3600),
        default=30.0,
        show_default=True,
        help="How often the dashboards' hourly rollup is recomputed for its recent days (0: never; "
        "`clinotel schema refresh-rollups` then does it).",
    ),
    click.option(
        "--rollup-window-days",
        type=click.IntRange(min=1, max=366),
        default=7,
        show_default=True,
        help="How many days back each refresh recomputes: later ground truth reaches the rollup at the "
        "daily full refresh.",
    ),
]


def serve_options(f: click.decorators.FC) -> click.decorators.FC:
    """The collector's options, for the command that runs it (`clinotel serve`, which the umbrella
    CLI composes with the alerting options); it passes them on to `run_serve` by name."""
    for option in reversed(_serve_options):
        f = option(f)
    return f


def run_serve(
    data_dir: Path | None,
    clickhouse_url: str | None,
    otlp_http: tuple[str, int],
    otlp_grpc: tuple[str, int],
    http_address: tuple[str, int],
    tokens: Path | None,
    insecure_no_auth: bool,
    wal_dir: Path | None,
    database: str,
    max_request_mb: int,
    wal_max_mb: int,
    max_connections: int = MAX_CONNECTIONS,
    receive_buffer_mb: int | None = None,
    grpc_receive_timeout_s: float = REQUEST_TIMEOUT_S,
    max_span_age_days: int = DEFAULT_MAX_SPAN_AGE_DAYS,
    retry_window_s: float = DEFAULT_RETRY_WINDOW_S,
    new_days_per_s: float = DEFAULT_NEW_DAYS_PER_S,
    memory_mb: int = DEFAULT_ENGINE_MEMORY_MB,
    fsync_parts: bool = False,
    rollup_interval_s: float = 30.0,
    rollup_window_days: int = 7,
    companion: Companion | None = None,
) -> None:
    """The collector until SIGTERM or SIGINT (or its failure: exit `EXIT_FAILED`), with `companion` started
    beside it once it serves. Every option is checked before anything is bound or created."""
    import threading

    from clinotel.collector.log.wal import LogAccessError, LogInUseError, LogOwnedError
    from clinotel.collector.net.listen import ListenError
    from clinotel.collector.service import Collector, CollectorConfig, ConfigError
    from clinotel.collector.stacks import install_stack_dump
    from clinotel.collector.store.pipeline import IngestSetupError
    from clinotel.collector.tokens import TokenError, Tokens

    if data_dir is not None and clickhouse_url is not None:
        raise click.UsageError("give --data-dir or --clickhouse-url, not both")
    try:
        loaded_tokens = Tokens.load(tokens) if tokens is not None else None
        for warning in loaded_tokens.warnings if loaded_tokens is not None else []:
            click.echo(f"warning: {warning}", err=True)
        config = CollectorConfig(
            data_dir=data_dir,
            clickhouse_url=clickhouse_url,
            database=database,
            wal_dir=wal_dir,
            otlp_http=otlp_http,
            otlp_grpc=otlp_grpc,
            http=http_address,
            tokens=loaded_tokens,
            insecure_no_auth=insecure_no_auth,
            max_request_bytes=max_request_mb << 20,
            max_connections=max_connections,
            receive_buffer_bytes=None if receive_buffer_mb is None else receive_buffer_mb << 20,
            grpc_receive_timeout_s=grpc_receive_timeout_s,
            max_span_age_days=max_span_age_days,
            retry_window_s=retry_window_s,
            new_days_per_s=new_days_per_s,
            wal_max_bytes=wal_max_mb << 20,
            engine_memory_bytes=memory_mb << 20,
            fsync_parts=fsync_parts,
            rollup_interval_s=rollup_interval_s or None,
            rollup_window_days=rollup_window_days,
        )
        if clickhouse_url is not None:
            from clinotel.collector.store.embedded import dsn_for

            dsn_for(None, clickhouse_url)
        config.validate()
    except (ConfigError, TokenError, StoreError) as e:
        raise click.ClickException(str(e)) from None

    done = threading.Event()
    # set before starting: a SIGTERM while the store opens stops the collector cleanly once started
    signals = _stop_signals()
    # `kill -USR1 PID`: every thread's stack on stderr (a collector that does not stop, or stalls);
    # before the collector starts a thread, so that each inherits the signal blocked
    install_stack_dump()
    # once the engine is lost, the process exits within the grace period wherever the main thread
    # is then (stopping, or a drain in an insert that never ends)
    collector = Collector(config, on_failure=lambda reason: done.set(), on_store_lost=exit_soon)
    refused = (ConfigError, TokenError, StoreError, IngestSetupError, ListenError)
    try:
        start_or_exit(collector)
    except (*refused, LogInUseError, LogOwnedError, LogAccessError) as e:
        raise click.ClickException(str(e)) from None
    assert collector.http is not None
    host = url_host(config.otlp_http[0])
    click.echo(f"clinotel collector: OTLP/HTTP on http://{host}:{collector.http.port}/v1/traces", err=True)
    if collector.admin is not None:
        reads = f"http://{url_host(config.http[0]) if config.http else ''}:{collector.admin.port}"
        if collector.reader is not None:
            click.echo(
                f"  read-only ClickHouse HTTP interface and /metrics on {reads} (clinotel ... --server {reads})",
                err=True,
            )
        else:
            shown = shown_url(clickhouse_url or "")
            click.echo(f"  /ping and /metrics on {reads}; readers query {shown} itself", err=True)
    if collector.grpc is not None:
        click.echo(
            f"  OTLP/gRPC on {url_host(config.otlp_grpc[0]) if config.otlp_grpc else ''}:{collector.grpc.port}",
            err=True,
        )
    where = shown_url(clickhouse_url) if clickhouse_url else config.engine_dir
    click.echo(f"  store {database} in {where}; log in {config.resolved_wal_dir}", err=True)
    if config.tokens is None:
        click.echo(
            f"  no tokens: every span is stored as tenant {config.insecure_tenant!r}, whatever its service names",
            err=True,
        )
    if clickhouse_url is None:
        click.echo(
            "  every inserted part synced to disk before the log lets go of it (--fsync-parts)"
            if fsync_parts
            else "  inserted parts left to the kernel's write-back (a power cut may lose the latest: --fsync-parts)",
            err=True,
        )
    try:
        stop_companion = companion(collector) if companion is not None else None
    except BaseException:
        collector.stop()
        raise
    # never an untimed wait: SIGTERM delivered to another of the process's threads (the engine's
    # own) only flags the handler, which runs once the main thread executes Python again
    while not signals and not done.wait(0.25):
        pass
    if stop_companion is not None:
        stop_companion()
    if collector.failure is not None:
        click.echo(f"clinotel serve: stopping: {collector.failure}", err=True)
        collector.stop()
        click.echo("what the log still holds on disk is written at the next start", err=True)
        exit_if_store_lost(collector)
        raise SystemExit(EXIT_FAILED)
    click.echo("stopping: writing what the log holds", err=True)
    collector.stop()
    exit_if_store_lost(collector)


LOST_ENGINE_GRACE_S: Final = 15.0
"""How long a collector whose embedded engine failed may take to stop before it exits regardless."""

EXIT_FAILED: Final = 75
"""The exit status of a collector that stopped because something failed while it ran (its
embedded engine, its log, one of its threads): EX_TEMPFAIL of sysexits.h, a restart is the remedy
and what it acknowledged is stored at the next start. One that does not get to run exits 1 (2 for
a usage error): a bad option or tokens file, which a restart does not fix, or a server not up yet
or a port still held, which it may."""


def start_or_exit(collector: Any) -> None:
    """`collector.start()`; when its embedded engine failed meanwhile (a start's migration can
    take minutes), say so and exit `EXIT_FAILED` at once: closing the engine at exit would wait
    forever."""
    try:
        collector.start()
    except BaseException as e:
        if collector.store_lost:
            click.echo(f"could not start: {first_line(e) if isinstance(e, Exception) else type(e).__name__}", err=True)
            exit_if_store_lost(collector)
        raise


def exit_if_store_lost(collector: Any) -> None:
    """Exit `EXIT_FAILED` at once when the embedded engine failed (after `collector.stop()`): closing it at the
    interpreter's exit waits forever for the engine thread that crashed (the log is sealed, the
    logs flushed first)."""
    if collector.store_lost:
        _exit_lost("the embedded engine failed: exiting without closing it")


def _exit_lost(message: str) -> NoReturn:
    import logging
    import os
    import sys

    click.echo(message, err=True)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_FAILED)


def exit_soon(seconds: float = LOST_ENGINE_GRACE_S) -> None:
    """Exit `EXIT_FAILED` in `seconds` whatever the main thread is doing then (every thread's stack printed
    first): a collector's `on_store_lost`. Stopping waits on nothing in a failed engine it knows
    of, but the failure may be learnt while the main thread already waits on one. What was
    acknowledged is on disk in the log either way, and the next start stores it."""
    import threading

    from clinotel.collector.stacks import dump_stacks

    def exit_now() -> None:
        click.echo(f"still stopping {seconds:.0f} s after the embedded engine failed; where each thread is:", err=True)
        dump_stacks()
        _exit_lost("the embedded engine failed: exiting without closing it, without finishing the stop")

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


@click.command()
@click.argument("sql")
@reading_store
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option("--format", "fmt", default="PrettyCompact", show_default=True, help="Any ClickHouse output format.")
def query(sql: str, server: str | None, data_dir: Path | None, database: str, fmt: str) -> None:
    """Run one read-only SQL query against the store and print the result.

    Read-only whichever store it opens: through a collector's read port or a server's read-only
    user with --server, through the same read-only path as the read port with --data-dir
    (anything but a read is refused)."""
    from clickhouse_connect.driver.exceptions import Error as DriverError

    from clinotel.collector.readport.client import check_read
    from clinotel.collector.readport.reader import ClickHouseError
    from clinotel.collector.store.embedded import error_line

    client = open_reading_store(server, data_dir, database)
    try:
        if server is not None:
            check_read(client, sql)  # --data-dir reads through the read-only path already
        out = client.raw_query(sql, fmt=fmt)
    except (ClickHouseError, DriverError) as e:
        raise click.ClickException(error_line(e)) from None
    finally:
        client.close()
    if sys.stdout.isatty():  # a tenant's text is data, not commands to the operator's terminal
        click.echo(printable(out.decode("utf-8", errors="replace"), keep="\n\t"), nl=False)
    else:  # the engine's bytes as they are (click.echo would strip what looks like a colour)
        sys.stdout.flush()
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
