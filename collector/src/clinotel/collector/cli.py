"""`clinotel schema`, `clinotel serve` and `clinotel query`; `reading_store` for every command that reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clinotel.collector.net.listen import MAX_PORT
from clinotel.collector.store import schema as schema_module
from clinotel.collector.store.embedded import StoreError, connect
from clinotel.model.store import open_reading_store, reading_store

__all__ = ["query", "schema", "serve"]


def _options(database: str, cluster: str | None, ttl_days: int | None) -> schema_module.SchemaOptions:
    try:
        return schema_module.SchemaOptions(database=database, cluster=cluster, ttl_days=ttl_days)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


_common = [
    click.option("--database", default="clinotel", show_default=True, help="Database to create the tables in."),
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
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    if applied:
        click.echo(f"applied migrations {', '.join(map(str, applied))} to {database}")
    else:
        click.echo(f"{database} is up to date (schema version {schema_module.SCHEMA_VERSION})")


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
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise click.BadParameter(f"expected HOST:PORT, not {value!r}")
    if int(port) > MAX_PORT:
        raise click.BadParameter(f"{port} is not a port (0 to {MAX_PORT})")
    return host.strip("[]"), int(port)


def _address_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    return _address(value)


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The embedded engine's data directory [default: ./.clinotel/data].",
)
@click.option(
    "--clickhouse-url",
    metavar="URL",
    help="Store in this ClickHouse server (http://host:8123) instead; user and password from "
    "CLICKHOUSE_USER and CLICKHOUSE_PASSWORD.",
)
@click.option(
    "--otlp-http", default="127.0.0.1:4318", show_default=True, callback=_address_option, help="OTLP/HTTP address."
)
@click.option(
    "--otlp-grpc", default="127.0.0.1:4317", show_default=True, callback=_address_option, help="OTLP/gRPC address."
)
@click.option(
    "--http",
    "http_address",
    default="127.0.0.1:8123",
    show_default=True,
    callback=_address_option,
    help="ClickHouse HTTP interface (read-only SQL, /ping) and /metrics listen address.",
)
@click.option("--tokens", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Tokens file (TOML).")
@click.option("--insecure-no-auth", is_flag=True, help="Accept writes without a token (loopback addresses only).")
@click.option(
    "--wal-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write-ahead log directory, one per collector [default: DATA-DIR.wal beside the data directory].",
)
@click.option("--database", default="clinotel", show_default=True)
@click.option(
    "--max-request-mb",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Largest request, after decompression.",
)
@click.option(
    "--wal-max-mb", type=click.IntRange(min=1), default=1024, show_default=True, help="Unwritten log size before 503."
)
@click.option(
    "--rules",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Evaluate these alert rules in this process (needs clinotel-alerts).",
)
@click.option("--evaluate-every", default="30s", show_default=True, help="Alert evaluation interval.")
@click.option("--alertmanager", metavar="URL", help="With --rules: page through this Alertmanager.")
@click.option("--webhook", metavar="URL", help="With --rules: tickets (and pages, if nothing else pages) here.")
def serve(
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
    rules: Path | None,
    evaluate_every: str,
    alertmanager: str | None,
    webhook: str | None,
) -> None:
    """Receive OTLP and store traces in ClickHouse, durably, one tenant per token."""
    import signal
    import threading

    from clinotel.collector.log.wal import LogInUseError, LogOwnedError
    from clinotel.collector.net.listen import ListenError
    from clinotel.collector.service import Collector, CollectorConfig, ConfigError
    from clinotel.collector.store.pipeline import IngestSetupError
    from clinotel.collector.tokens import TokenError, Tokens

    # everything the command line says is checked before anything is bound or created
    if data_dir is not None and clickhouse_url is not None:
        raise click.UsageError("give --data-dir or --clickhouse-url, not both")
    if rules is None and (alertmanager or webhook):
        raise click.UsageError("--alertmanager and --webhook page for --rules: give --rules FILE too")
    alerting = _alerting(rules, evaluate_every, alertmanager, webhook) if rules is not None else None
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
            wal_max_bytes=wal_max_mb << 20,
        )
        if clickhouse_url is not None:
            from clinotel.collector.store.embedded import dsn_for

            dsn_for(None, clickhouse_url)
        config.validate()
    except (ConfigError, TokenError, StoreError) as e:
        raise click.ClickException(str(e)) from None

    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    # set before starting: a SIGTERM while the store opens stops the collector cleanly once started
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    collector = Collector(config, on_failure=lambda reason: done.set())
    try:
        collector.start()
    except (ConfigError, TokenError, StoreError, IngestSetupError, ListenError, LogInUseError, LogOwnedError) as e:
        raise click.ClickException(str(e)) from None
    assert collector.http is not None
    host = config.otlp_http[0]
    click.echo(f"clinotel collector: OTLP/HTTP on http://{host}:{collector.http.port}/v1/traces", err=True)
    if collector.admin is not None:
        reads = f"http://{config.http[0] if config.http else ''}:{collector.admin.port}"
        if collector.reader is not None:
            click.echo(
                f"  read-only ClickHouse HTTP interface and /metrics on {reads} (clinotel ... --server {reads})",
                err=True,
            )
        else:
            click.echo(f"  /ping and /metrics on {reads}; readers query {clickhouse_url} itself", err=True)
    if collector.grpc is not None:
        click.echo(f"  OTLP/gRPC on {config.otlp_grpc[0] if config.otlp_grpc else ''}:{collector.grpc.port}", err=True)
    where = clickhouse_url or config.engine_dir
    click.echo(f"  store {database} in {where}; log in {config.resolved_wal_dir}", err=True)
    evaluator = alerting.start(collector) if alerting is not None else None
    done.wait()
    if evaluator is not None:
        evaluator.stop()
    if collector.failure is not None:
        click.echo(f"clinotel serve: stopping: {collector.failure}", err=True)
        collector.stop()
        click.echo("what the log still holds on disk is written at the next start", err=True)
        raise SystemExit(1)
    click.echo("stopping: writing what the log holds", err=True)
    collector.stop()


class _Alerting:
    """`serve --rules`: the rule pack and sinks, checked before the collector starts."""

    def __init__(self, pack: Any, interval: int, every: str, rules: Path, page: list[Any], ticket: list[Any]) -> None:
        self.pack, self.interval, self.every, self.rules = pack, interval, every, rules
        self.page, self.ticket = page, ticket

    def start(self, collector: Any) -> Any:
        """The evaluator on the collector's own store, in a background thread; its death stops the
        collector."""
        import socket

        from clinotel.alerts.evaluator import Evaluator
        from clinotel.alerts.paging import Outbox
        from clinotel.alerts.runner import EvaluatorThread

        outbox = Outbox(self.page or list(self.ticket), self.ticket)
        # named after the collector's log (one collector per log): restarted, it resumes its own lease
        holder = f"serve:{socket.gethostname()}:{collector.config.resolved_wal_dir}"
        evaluator = Evaluator(
            collector.client, self.pack, outbox, collector.config.database,
            lease_s=max(3.0 * self.interval, 60.0), holder=holder,
        )  # fmt: skip
        thread = EvaluatorThread(evaluator, self.interval, on_failure=collector.fail)
        thread.start()
        click.echo(f"  evaluating {len(self.pack.rules)} alert rules from {self.rules} every {self.every}", err=True)
        return thread


def _alerting(rules: Path, every: str, alertmanager: str | None, webhook: str | None) -> _Alerting:
    try:
        from clinotel.alerts.paging import AlertmanagerSink, Sink, WebhookSink, check_url
        from clinotel.alerts.rules import RuleError, load, parse_duration
    except ImportError:
        raise click.ClickException("--rules needs clinotel-alerts installed") from None
    try:
        interval = parse_duration(every)
        if interval <= 0:
            raise ValueError(f"an interval above zero, such as 30s, not {every!r}")
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--evaluate-every") from None
    for name, url in (("--alertmanager", alertmanager), ("--webhook", webhook)):
        if url is not None:
            try:
                check_url(url)
            except ValueError as e:
                raise click.BadParameter(str(e), param_hint=name) from None
    try:
        pack = load(rules)
    except RuleError as e:
        raise click.ClickException(str(e)) from None
    page: list[Sink] = [AlertmanagerSink(alertmanager)] if alertmanager else []
    ticket: list[Sink] = [WebhookSink(webhook)] if webhook else []
    return _Alerting(pack, interval, every, rules, page, ticket)


@click.command()
@click.argument("sql")
@reading_store
@click.option("--database", default="clinotel", show_default=True)
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
    click.echo(out.decode("utf-8", errors="replace"), nl=False)
