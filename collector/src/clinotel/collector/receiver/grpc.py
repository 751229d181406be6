"""OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

The handler takes the request's raw bytes (gRPC has already inflated them) and hands them to
the same transport-free export as OTLP/HTTP, so both transports refuse and accept alike. A full
log answers UNAVAILABLE with a RetryInfo delay in the status details.

The server is gRPC's asyncio server, on an event loop of its own thread: a call waiting for its
message holds no thread. Until December the synchronous server read each message inside one of
its eight worker threads, so eight calls that sent their headers and never their message (one
write token) held every worker, and every other tenant's exports waited until their deadline.
Now each call is bounded three ways:

- its token is checked from its metadata before its message is read (no write token:
  UNAUTHENTICATED, nothing read);
- it must deliver its message within `receive_timeout_s` of its start (`--grpc-receive-timeout-s`,
  the 30 s an HTTP read may wait by default): else it is ended with DEADLINE_EXCEEDED, and one
  warning a minute at most says how many were;
- at most `MAX_CALLS` calls are read or exported at once (each may hold up to
  `--max-request-mb` of message, as the eight worker threads could), and one tenant holds at most
  `MAX_CALLS_PER_TENANT` of them, so one token's stalled calls leave the others to the other
  tenants; the last free turn goes only to a tenant that holds none, so two tokens' stalled calls
  leave it to a third, and a freed turn goes to the waiting tenant that holds the fewest (a
  tenant's queue of calls does not keep another's first call waiting). A call waits for its turn
  without reading; a tenant with `MAX_OPEN_CALLS_PER_TENANT`
  calls open already has the next one refused UNAVAILABLE with a RetryInfo delay (retried), as
  is a call whose turn did not come within `receive_timeout_s`. The server keeps at most
  `MAX_OPEN_CALLS` calls open in all.

The export itself runs in a pool of worker threads (it appends to the log and waits for the
disk); the answer is sent only once it returned, so an acknowledged request is in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Sequence
from concurrent import futures
from typing import Any, Final, NoReturn, TypeVar

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from clinotel.collector.errors import RefusedError
from clinotel.collector.net.listen import ListenError, check_free, url_host
from clinotel.collector.net.server import MAX_CONNECTIONS, REQUEST_TIMEOUT_S
from clinotel.collector.receiver.export import PROTOBUF, TraceReceiver
from clinotel.collector.receiver.http import Authenticate, cannot_write

__all__ = [
    "MAX_CALLS",
    "MAX_CALLS_PER_TENANT",
    "MAX_OPEN_CALLS_PER_TENANT",
    "RECEIVE_TIMEOUT_S",
    "OtlpGrpcServer",
]

logger: Final = logging.getLogger("clinotel.collector")
SERVICE: Final = "opentelemetry.proto.collector.trace.v1.TraceService"
STATUS_DETAILS: Final = "grpc-status-details-bin"

RECEIVE_TIMEOUT_S: Final = REQUEST_TIMEOUT_S
"""How long a call may take from its start to its whole message (`--grpc-receive-timeout-s`): the
30 s an HTTP port lets one read wait. An OTLP exporter gives up on its own call after 10 s."""
MAX_CALLS: Final = 8
"""Calls whose message is read or exported at once: each may hold up to `--max-request-mb`, as
each of the synchronous server's eight worker threads could."""
MAX_CALLS_PER_TENANT: Final = MAX_CALLS // 2
"""Of `MAX_CALLS`, how many one tenant may hold: its stalled calls leave the rest to the others."""
MAX_OPEN_CALLS_PER_TENANT: Final = 64
"""Calls of one tenant open at once, waiting for their turn included; one more is refused
UNAVAILABLE with a RetryInfo delay of `BUSY_RETRY_S`."""
MAX_OPEN_CALLS: Final = MAX_CONNECTIONS
"""Calls the server keeps open at once, whoever sends them (gRPC refuses one more with
RESOURCE_EXHAUSTED): a call without a write token is answered at once and counts only meanwhile."""
BUSY_RETRY_S: Final = 1
WORKERS: Final = 8
"""Threads that run exports (decode, append to the log and wait for the disk)."""
_WARN_EVERY_S: Final = 60.0
_STOP_GRACE_S: Final = 5.0
_UNAUTHENTICATED: Final = "a write token is required (Bearer)"

T = TypeVar("T")


RETRY_INFO: Final = "google.rpc.retryinfo-bin"
"""The trailer the OpenTelemetry Python exporter reads a retry delay from (it does not look into
`grpc-status-details-bin`, and without a delay gives up after three backoffs of 1, 2 and 4 s)."""


def _retry_info(delay_s: int) -> error_details_pb2.RetryInfo:
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromSeconds(delay_s)
    return retry


def _retry_status(code: grpc.StatusCode, message: str, retry: error_details_pb2.RetryInfo) -> bytes:
    """A google.rpc.Status carrying RetryInfo, as the OTLP specification asks of a retryable refusal."""
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return bytes(status.SerializeToString())


def _token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class _BusyError(Exception):
    """A tenant already has `MAX_OPEN_CALLS_PER_TENANT` calls open."""


class _Turns:
    """Who may read and export now: at most `total` calls at once, at most `per_tenant` of them of
    one tenant, and at most `open_per_tenant` calls of one tenant holding or waiting for a turn.
    The last free turn is kept for a tenant that holds none (with 8 turns and 4 a tenant, two
    stolen tokens' stalled calls held them all and every other tenant waited until its calls were
    refused). A freed turn goes to the waiting call whose tenant holds the fewest, first come first
    served among equals. Used on the server's event loop only (no lock)."""

    def __init__(self, total: int, per_tenant: int, open_per_tenant: int) -> None:
        self._total = total
        self._per_tenant = per_tenant
        self._open_per_tenant = open_per_tenant
        self._held: Counter[str] = Counter()
        self._open: Counter[str] = Counter()
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []

    @property
    def held(self) -> int:
        return sum(self._held.values())

    def enter(self, tenant: str) -> None:
        """Count a call of `tenant` as open; raises `_BusyError` past its cap."""
        if self._open[tenant] >= self._open_per_tenant:
            raise _BusyError
        self._open[tenant] += 1

    def leave(self, tenant: str) -> None:
        self._open[tenant] -= 1
        if self._open[tenant] <= 0:
            del self._open[tenant]

    def _free_for(self, tenant: str) -> bool:
        mine = self._held[tenant]
        return mine < self._per_tenant and self.held < self._total - (1 if mine else 0)

    async def take(self, tenant: str) -> None:
        """Wait for a turn of `tenant` (cancellable: a turn given meanwhile goes back)."""
        if not any(t == tenant for t, _ in self._waiting) and self._free_for(tenant):
            self._held[tenant] += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((tenant, waiter))
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give_back(tenant)  # given just as the wait was cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove((tenant, waiter))
            raise

    def give_back(self, tenant: str) -> None:
        self._held[tenant] -= 1
        if self._held[tenant] <= 0:
            del self._held[tenant]
        while (entry := self._next_waiter()) is not None:
            self._waiting.remove(entry)
            self._held[entry[0]] += 1
            entry[1].set_result(None)

    def _next_waiter(self) -> tuple[str, asyncio.Future[None]] | None:
        """The waiting call to give a turn to now: of the tenants that may take one, the one
        holding the fewest, the earliest among equals; None when none may."""
        best: tuple[str, asyncio.Future[None]] | None = None
        for entry in self._waiting:
            tenant, waiter = entry
            if waiter.done():  # cancelled: its call takes it out
                continue
            if self._free_for(tenant) and (best is None or self._held[tenant] < self._held[best[0]]):
                best = entry
        return best


class _Warnings:
    """One warning a minute at most for calls ended for the same reason, with how many were."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._since: Counter[str] = Counter()
        self.total: Counter[str] = Counter()

    def count(self, reason: str, message: str, *args: object) -> None:
        self.total[reason] += 1
        self._since[reason] += 1
        now = time.monotonic()
        if now - self._at.get(reason, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._at[reason] = now
            logger.warning(message + " (%d such call(s) since the last such warning, %d in all)",
                           *args, self._since[reason], self.total[reason])  # fmt: skip
            self._since[reason] = 0


class OtlpGrpcServer:
    """The OTLP/gRPC receiver on `host:port`, on an asyncio event loop in a thread of its own.
    Bound (listening) from construction; `start` serves."""

    def __init__(
        self,
        host: str,
        port: int,
        receiver: TraceReceiver,
        authenticate: Authenticate,
        workers: int = WORKERS,
        receive_timeout_s: float = RECEIVE_TIMEOUT_S,
    ) -> None:
        if receive_timeout_s <= 0:
            raise ValueError(f"receive_timeout_s is positive, not {receive_timeout_s}")
        self._receiver = receiver
        self._authenticate = authenticate
        self.receive_timeout_s = receive_timeout_s
        self._turns = _Turns(MAX_CALLS, MAX_CALLS_PER_TENANT, MAX_OPEN_CALLS_PER_TENANT)
        self.warnings = _Warnings()
        """How many calls were ended for each reason (`receive_timeout`, `busy`)."""
        label = "OTLP/gRPC"
        check_free(label, host, port)  # gRPC reports a failed bind only as text on stderr
        self._pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clinotel-otlp-grpc")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="clinotel-otlp-grpc-loop", daemon=True)
        self._thread.start()
        self._stopped = False
        try:
            self._server, self.port = self._run(self._bind(f"{url_host(host)}:{port}"))
        except BaseException:
            self._end_loop()
            raise
        if not self.port:
            self._run(self._server.stop(None))
            self._end_loop()
            raise ListenError(
                f"cannot listen on {url_host(host)}:{port} for {label}: the address is in use or not available"
            )

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coroutine` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _bind(self, address: str) -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._receiver.limits.max_request_bytes),
                ("grpc.max_send_message_length", 4 << 20),
                ("grpc.so_reuseport", 0),  # exclusive: a second collector on this port is refused
                # a call waiting for its turn is not read, and its stream's flow-control window stays
                # at HTTP/2's initial size instead of growing with the measured bandwidth (60 waiting
                # calls of 32 MiB: the process held 660 MB at its peak while they waited, 170-270
                # with this; a far exporter's large batch takes longer to arrive)
                ("grpc.http2.bdp_probe", 0),
            ],
            maximum_concurrent_rpcs=MAX_OPEN_CALLS,
        )
        # stream-unary, not unary-unary: gRPC would read a unary call's whole message before the
        # handler ran, so before its token is checked and without any bound on how long it takes
        handler = grpc.stream_unary_rpc_method_handler(self._export)  # raw bytes in and out
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        return server, port

    async def _abort(
        self, context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, message: str, retry_s: int | None
    ) -> NoReturn:
        if retry_s is not None:
            retry = _retry_info(retry_s)
            context.set_trailing_metadata(
                ((STATUS_DETAILS, _retry_status(code, message, retry)), (RETRY_INFO, retry.SerializeToString()))
            )
        await context.abort(code, message)
        raise AssertionError("abort raises")  # pragma: no cover

    async def _export(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        started = time.monotonic()
        token = _token(context.invocation_metadata())
        grant = self._authenticate(token)
        if grant is None or grant.role != "write":  # before a byte of the message is read
            self._receiver.stats.count_refused("unauthenticated", context.peer())
            await self._abort(context, grpc.StatusCode.UNAUTHENTICATED, cannot_write(token, grant), None)
        assert grant is not None
        tenant = grant.tenant
        try:
            self._turns.enter(tenant)
        except _BusyError:
            self._receiver.stats.count_refused("busy")
            self.warnings.count(
                "busy", "OTLP/gRPC: refused a call of tenant %r from %s: it has %d calls open already",
                tenant, context.peer(), MAX_OPEN_CALLS_PER_TENANT,
            )  # fmt: skip
            message = f"this tenant has {MAX_OPEN_CALLS_PER_TENANT} calls open already: retry shortly"
            await self._abort(context, grpc.StatusCode.UNAVAILABLE, message, BUSY_RETRY_S)
        try:
            return await self._in_turn(context, tenant, started)
        finally:
            self._turns.leave(tenant)

    async def _in_turn(self, context: grpc.aio.ServicerContext[Any, Any], tenant: str, started: float) -> bytes:
        bound = self.receive_timeout_s
        try:
            await asyncio.wait_for(self._turns.take(tenant), bound - (time.monotonic() - started))
        except TimeoutError:
            await self._busy_too_long(context, tenant)
        try:
            if time.monotonic() - started >= bound:  # its turn came too late to read: not its fault
                await self._busy_too_long(context, tenant)
            return await self._read_and_export(context, tenant, started)
        finally:
            self._turns.give_back(tenant)

    async def _busy_too_long(self, context: grpc.aio.ServicerContext[Any, Any], tenant: str) -> NoReturn:
        """Refuse a call whose turn did not come within the bound: UNAVAILABLE, to retry."""
        self._receiver.stats.count_refused("busy")
        self.warnings.count(
            "busy", "OTLP/gRPC: a call of tenant %r from %s waited %g s for its turn to be read (%d calls at once, "
            "%d per tenant): refused, to retry", tenant, context.peer(), self.receive_timeout_s, MAX_CALLS,
            MAX_CALLS_PER_TENANT,
        )  # fmt: skip
        await self._abort(context, grpc.StatusCode.UNAVAILABLE, "the receiver is busy: retry shortly", BUSY_RETRY_S)

    async def _read_and_export(self, context: grpc.aio.ServicerContext[Any, Any], tenant: str, started: float) -> bytes:
        bound = self.receive_timeout_s
        try:
            request = await asyncio.wait_for(context.read(), max(bound - (time.monotonic() - started), 0.0))
        except TimeoutError:
            self._receiver.stats.count_refused("receive_timeout")
            self.warnings.count(
                "receive_timeout", "OTLP/gRPC: ended a call of tenant %r from %s: its message did not arrive within "
                "%g s (--grpc-receive-timeout-s)", tenant, context.peer(), bound,
            )  # fmt: skip
            message = f"the request's message did not arrive within {bound:g} s"
            await self._abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, message, None)
        if request is grpc.aio.EOF or not isinstance(request, bytes):
            # no message: the client ended its side without one, or it sent one over the size
            # limit (gRPC answered RESOURCE_EXHAUSTED itself, before this refusal)
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "the call ended without a request", None)
        assert isinstance(request, bytes)
        # checked again: the token may have been revoked while the message arrived
        grant = self._authenticate(_token(context.invocation_metadata()))
        if grant is None or grant.role != "write" or grant.tenant != tenant:
            self._receiver.stats.count_refused("unauthenticated")
            await self._abort(context, grpc.StatusCode.UNAUTHENTICATED, _UNAUTHENTICATED, None)
        # counted in the receive buffer from here, until its export ended or, cancelled before it
        # started, was dropped from the pool's queue: a cancelled call gives its turn back at once,
        # and messages waiting for a worker were held outside every bound
        hold = self._receiver.budget.hold(tenant)
        try:
            hold.take(len(request))
        except RefusedError as e:
            self._receiver.stats.count_refused(e.reason)
            code = getattr(grpc.StatusCode, e.grpc_code, grpc.StatusCode.INTERNAL)
            await self._abort(context, code, e.message, e.retry_after)
        export = functools.partial(self._receiver.export, request, content_type=PROTOBUF, tenant=tenant, hold=hold)
        work = self._pool.submit(export)
        work.add_done_callback(lambda _: hold.close())
        try:
            # in a worker thread: the log's append waits for the disk. The answer goes only once it
            # returned (the request is in the log); a call cancelled meanwhile finishes its append.
            result = await asyncio.wrap_future(work)
        except RefusedError as e:
            code = getattr(grpc.StatusCode, e.grpc_code, grpc.StatusCode.INTERNAL)
            await self._abort(context, code, e.message, e.retry_after)
        except Exception:
            logger.exception("OTLP/gRPC export failed")
            await self._abort(context, grpc.StatusCode.INTERNAL, "internal error", None)
        return result.body

    def start(self) -> None:
        self._run(self._server.start())

    def stop(self) -> None:
        """Stop taking calls, let those in progress finish (5 s), and wait for every export that
        started: nothing is appended to the log once this returned."""
        self._shut(_STOP_GRACE_S)

    def close(self) -> None:
        """Release the port of a server never started."""
        self._shut(None)

    def _shut(self, grace: float | None) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._run(self._server.stop(grace), timeout=(grace or 0) + 10)
        except (futures.TimeoutError, RuntimeError) as e:
            logger.error("the OTLP/gRPC server did not stop in time: %s", e)
        finally:
            self._pool.shutdown(wait=True)
            self._end_loop()

    def _end_loop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
