"""Faust ends the worker when a timer or an app task raises. The worker's own timers and tasks must not: an
error is logged with its traceback, and the next round runs as planned."""
from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("orders")


def never_raises(what: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[None]]]:
    """Decorate a timer's or task's body: any exception is logged as `what` failed, not raised."""
    def decorate(fun: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[None]]:
        @functools.wraps(fun)
        async def guarded(*args: Any, **kwargs: Any) -> None:
            try:
                await fun(*args, **kwargs)
            except Exception:
                log.exception("%s failed; it runs again on its next round", what)
        return guarded
    return decorate
