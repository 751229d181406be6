"""A span scope that works as a context manager and as a decorator of any kind of function.

The scope opens a span, makes it current while the body runs, records an escaping exception, and
ends it. For generators the span covers the whole iteration but is current only while the
generator's own code runs, so a consumer's spans never nest under a suspended generator.

A scope is its own handle: `with stage(...) as st` gives the scope itself, so entering one
creates no object beyond the span and its context (a service pays this on every stage of every
request). Instrumentation failures are contained (production mode) or raised (strict mode) when
the span opens and closes; the body's own exceptions always propagate unchanged.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, Status, StatusCode

from clinotel.instrumentation._internal.runtime import Runtime, contain, current
from clinotel.instrumentation.errors import TelemetryValidationError
from clinotel.semconv import attributes as A

__all__ = ["FRESH", "Scope"]

F = TypeVar("F", bound=Callable[..., Any])

FRESH: Final = object()
"""The token of a scope not entered yet (after its exit, or a failed entry: None)."""
_OPENING: Final = object()
"""The token of a scope claimed by an entry whose span is being opened."""
_CLAIM: Final = threading.Lock()


class Scope:
    """The enter/exit and decorator mechanics of workflow and stage scopes (a mixin: the concrete
    classes hold the slots). Subclasses say how to open the span (`_begin`) and how to make a
    fresh scope for one call of a decorated function (`bind`)."""

    if not TYPE_CHECKING:  # no instance dict; mypy would refuse assignments the subclasses' slots allow
        __slots__ = ()

    _rt: Runtime
    _span: Span
    _token: object
    """FRESH before entry, the context token while entered, None afterwards."""

    # -- subclass hooks -------------------------------------------------------------------
    def _begin(self, rt: Runtime) -> otel_context.Context:
        """Start the span, fill in the handle's fields, and return the context to make current.
        Sets nothing on failure, so a scope that failed to open stays a no-op handle."""
        raise NotImplementedError

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Self:
        """A fresh scope for one call of a decorated function."""
        raise NotImplementedError

    # -- context manager ----------------------------------------------------------------------
    def __enter__(self) -> Self:
        with _CLAIM:  # the check and the claim at once: two threads entering one object both passed
            token = self._token
            if token is FRESH:
                self._token = _OPENING
        if token is not FRESH:
            # A programming error, raised in every mode. Handing each entry a fresh copy was tried
            # (2026-12-07) and taken out: `__exit__` is called on this object, which cannot tell
            # which entry is leaving when entries interleave (two generators in one thread, a
            # generator resumed in another context): it ended another request's span with this
            # one's exception.
            raise RuntimeError(
                "a clinotel scope can be entered once: call workflow()/stage() for each request, or "
                "decorate the function with it (a module-level `DECIDE = stage('decide')` fails on "
                "the second request)"
            )
        rt = self._rt = current()
        try:
            ctx = self._begin(rt)
        except TelemetryValidationError:
            self._token = None
            raise
        except Exception as e:  # noqa: BLE001 - telemetry must not break the workflow
            self._token = None
            contain(rt, e)
            return self
        self._token = otel_context.attach(ctx)
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        token = self._token
        if token is None or token is FRESH or token is _OPENING:
            return
        self._token = None
        otel_context.detach(cast(Any, token))
        self._close(exc)

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- open and close without making the span current (generators) ---------------------------
    def _open(self) -> otel_context.Context | None:
        rt = self._rt = current()
        self._token = None
        try:
            return self._begin(rt)
        except TelemetryValidationError:
            raise
        except Exception as e:  # noqa: BLE001 - telemetry must not break the workflow
            contain(rt, e)
            return None

    def _close(self, exc: BaseException | None) -> None:
        try:
            if exc is not None:
                _record_error(self._span, exc)
        except Exception as e:  # noqa: BLE001 - an exception whose __str__ raises, say
            contain(self._rt, e)
        try:
            # ended whatever recording the error did: a failed workflow left open was never
            # exported, and vanished from the error and safety figures (a 2026-12-07 review)
            clock = self._rt.clock
            self._span.end(end_time=clock() if clock is not None else None)
        except Exception as e:  # noqa: BLE001
            contain(self._rt, e)

    # -- decorator ------------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        if isinstance(fn, (classmethod, staticmethod)):  # `@stage(...)` above `@classmethod`
            return cast(F, type(fn)(self(fn.__func__)))
        if not inspect.isfunction(fn) and not inspect.ismethod(fn) and callable(fn):
            call = type(fn).__call__  # an object whose __call__ is async: a coroutine function too
            if inspect.iscoroutinefunction(call):
                inner = fn

                async def called(*args: Any, **kwargs: Any) -> Any:
                    return await inner(*args, **kwargs)

                functools.update_wrapper(called, inner, updated=())
                fn = cast(F, called)
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
            ctx = scope._open()
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                token = otel_context.attach(ctx) if ctx is not None else None
                try:
                    if to_throw is not None:
                        thrown, to_throw = to_throw, None
                        item = gen.throw(thrown)
                    else:
                        item = gen.send(to_send)
                except StopIteration as stop:
                    _detach(token)
                    if ctx is not None:
                        scope._close(None)
                    return stop.value
                except BaseException as e:
                    _detach(token)
                    if ctx is not None:
                        scope._close(e)
                    raise
                _detach(token)
                try:
                    to_send = yield item
                except GeneratorExit:
                    gen.close()
                    if ctx is not None:
                        scope._close(None)
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
            ctx = scope._open()
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                token = otel_context.attach(ctx) if ctx is not None else None
                try:
                    if to_throw is not None:
                        thrown, to_throw = to_throw, None
                        item = await agen.athrow(thrown)
                    else:
                        item = await agen.asend(to_send)
                except StopAsyncIteration:
                    _detach(token)
                    if ctx is not None:
                        scope._close(None)
                    return
                except BaseException as e:
                    _detach(token)
                    if ctx is not None:
                        scope._close(e)
                    raise
                _detach(token)
                try:
                    to_send = yield item
                except GeneratorExit:
                    await agen.aclose()
                    if ctx is not None:
                        scope._close(None)
                    raise
                except BaseException as e:  # noqa: BLE001 - forwarded into the generator
                    to_throw = e

        return wrapper


def _record_error(span: Span, exc: BaseException) -> None:
    if isinstance(exc, GeneratorExit):
        return
    # the status and type first: the event reads str(exc), which a broken __str__ makes raise
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    span.set_attribute(A.ERROR_TYPE.key, type(exc).__qualname__)
    span.record_exception(exc)


def _detach(token: object | None) -> None:
    if token is not None:
        otel_context.detach(cast(Any, token))
