"""A span scope that works as a context manager and as a decorator of any kind of function.

The scope opens a span, makes it current while the body runs, records an escaping exception, and
ends it. For generators the span covers the whole iteration but is current only while the
generator's own code runs, so a consumer's spans never nest under a suspended generator.

Instrumentation failures are contained (production mode) or raised (strict mode) in `_open` and
`_close`; the body's own exceptions always propagate unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, Generic, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, Status, StatusCode

from clinotel.instrumentation._internal.runtime import Runtime, contain, current
from clinotel.instrumentation.errors import TelemetryValidationError
from clinotel.semconv import attributes as A

__all__ = ["Scope"]

H = TypeVar("H")
F = TypeVar("F", bound=Callable[..., Any])


class _Opened(Generic[H]):
    __slots__ = ("ctx", "handle", "rt", "span")

    def __init__(self, rt: Runtime, span: Span, ctx: otel_context.Context, handle: H) -> None:
        self.rt = rt
        self.span = span
        self.ctx = ctx
        self.handle = handle


class Scope(Generic[H]):
    """Base of workflow and stage scopes. Subclasses say how to open the span and what handle
    the `with` statement gives; `bind` makes a fresh scope for one call of a decorated function."""

    __slots__ = ("_opened", "_token")

    def __init__(self) -> None:
        self._opened: _Opened[H] | None = None
        self._token: object | None = None

    # -- subclass hooks -------------------------------------------------------------------
    def _start(self, rt: Runtime) -> tuple[Span, otel_context.Context, H]:
        raise NotImplementedError

    def _noop_handle(self) -> H:
        raise NotImplementedError

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Scope[H]:
        """A fresh scope for one call of a decorated function."""
        raise NotImplementedError

    # -- open and close, fail-safe ----------------------------------------------------------
    def _open(self) -> _Opened[H] | None:
        rt = current()
        try:
            span, ctx, handle = self._start(rt)
        except TelemetryValidationError:
            raise
        except Exception as e:  # noqa: BLE001 - telemetry must not break the workflow
            contain(rt, e)
            return None
        return _Opened(rt, span, ctx, handle)

    def _close(self, opened: _Opened[H] | None, exc: BaseException | None) -> None:
        if opened is None:
            return
        try:
            span = opened.span
            if exc is not None and not isinstance(exc, GeneratorExit):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute(A.ERROR_TYPE.key, type(exc).__qualname__)
            clock = opened.rt.clock
            span.end(end_time=clock() if clock is not None else None)
        except Exception as e:  # noqa: BLE001
            contain(opened.rt, e)

    # -- context manager ----------------------------------------------------------------------
    # `_open` and `_close` inlined: a service pays these on every stage of every request.
    def __enter__(self) -> H:
        if self._opened is not None:
            raise RuntimeError("a clinotel scope can be entered once; call workflow()/stage() again")
        rt = current()
        try:
            span, ctx, handle = self._start(rt)
        except TelemetryValidationError:
            raise
        except Exception as e:  # noqa: BLE001 - telemetry must not break the workflow
            contain(rt, e)
            return self._noop_handle()
        self._opened = _Opened(rt, span, ctx, handle)
        self._token = otel_context.attach(ctx)
        return handle

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        opened = self._opened
        if opened is None:
            return
        token = self._token
        if token is not None:
            otel_context.detach(cast(Any, token))
        if exc is not None:
            self._close(opened, exc)
            return
        try:
            clock = opened.rt.clock
            opened.span.end(end_time=clock() if clock is not None else None)
        except Exception as e:  # noqa: BLE001
            contain(opened.rt, e)

    async def __aenter__(self) -> H:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator ------------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        if inspect.isasyncgenfunction(fn):
            return cast(F, self._wrap_async_generator(fn))
        if inspect.isgeneratorfunction(fn):
            return cast(F, self._wrap_generator(fn))
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.bind(args, kwargs):
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.bind(args, kwargs):
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    def _wrap_generator(self, fn: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Generator[Any, Any, Any]]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            scope = self.bind(args, kwargs)
            gen = fn(*args, **kwargs)
            opened = scope._open()
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                token = otel_context.attach(opened.ctx) if opened is not None else None
                try:
                    if to_throw is not None:
                        thrown, to_throw = to_throw, None
                        item = gen.throw(thrown)
                    else:
                        item = gen.send(to_send)
                except StopIteration as stop:
                    _detach(token)
                    scope._close(opened, None)
                    return stop.value
                except BaseException as e:
                    _detach(token)
                    scope._close(opened, e)
                    raise
                _detach(token)
                try:
                    to_send = yield item
                except GeneratorExit:
                    gen.close()
                    scope._close(opened, None)
                    raise
                except BaseException as e:  # noqa: BLE001 - forwarded into the generator
                    to_throw = e

        return wrapper

    def _wrap_async_generator(
        self, fn: Callable[..., AsyncGenerator[Any, Any]]
    ) -> Callable[..., AsyncGenerator[Any, Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            scope = self.bind(args, kwargs)
            agen = fn(*args, **kwargs)
            opened = scope._open()
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                token = otel_context.attach(opened.ctx) if opened is not None else None
                try:
                    if to_throw is not None:
                        thrown, to_throw = to_throw, None
                        item = await agen.athrow(thrown)
                    else:
                        item = await agen.asend(to_send)
                except StopAsyncIteration:
                    _detach(token)
                    scope._close(opened, None)
                    return
                except BaseException as e:
                    _detach(token)
                    scope._close(opened, e)
                    raise
                _detach(token)
                try:
                    to_send = yield item
                except GeneratorExit:
                    await agen.aclose()
                    scope._close(opened, None)
                    raise
                except BaseException as e:  # noqa: BLE001 - forwarded into the generator
                    to_throw = e

        return wrapper


def _detach(token: object | None) -> None:
    if token is not None:
        otel_context.detach(cast(Any, token))
