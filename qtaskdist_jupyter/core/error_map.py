"""One decorator for "a driver error becomes one of ours", used by the store (PostgreSQL)
and the broker (Redis): callers of either only ever see the exception tree of errors.py."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def maps_errors(
    catch: tuple[type[BaseException], ...],
    translate: Callable[[BaseException], BaseException | None],
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """A decorator for coroutine functions: an exception of a ``catch`` type is raised as
    ``translate(exc)`` (chained to it), or unchanged when ``translate`` returns None (an
    error that is a bug, not an outage, must surface as itself)."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await fn(*args, **kwargs)
            except catch as exc:
                mapped = translate(exc)
                if mapped is None:
                    raise
                raise mapped from exc

        return wrapper

    return decorate
