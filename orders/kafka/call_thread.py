"""A librdkafka client's blocking calls, run one at a time on the client's own daemon thread, with a bound on
how long the event loop waits for each.

librdkafka does not always keep the timeout it is given: `send_offsets_to_transaction()` can wait for good
once the group coordinator's broker is gone (librdkafka#5456 and #5511, open in 2.12/2.13; caught here by
py-spy in the cluster test). So the wait is bounded on this side, as KAFKA-10309 bounded the Java
producer's, and a call past its bound raises `CallStuck`: its thread may stay inside librdkafka, and the
client it calls counts as lost. The thread is a daemon because the interpreter joins a ThreadPoolExecutor's
threads at exit: a call stuck in C must not keep the process from ending.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class CallStuck(Exception):
    """A blocking call did not return within its bound; its thread may be stuck in it for good."""


class CallThread:
    def __init__(self, name: str) -> None:
        self.name = name
        #: the call that did not return within its bound (None: none did); later calls are refused
        self.stuck: str | None = None
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, args=(self._calls,), name=name, daemon=True).start()

    async def call(self, what: str, method: Callable[..., Any], *args: Any, bound_s: float) -> Any:
        """Run `method(*args)` on the thread and return what it returns; CallStuck after `bound_s`."""
        if self.stuck is not None:
            raise CallStuck(f"{self.name}: an earlier call ({self.stuck}) is still stuck")
        future: Future = Future()
        self._calls.put((future, method, args))
        waiting = asyncio.wrap_future(future)
        done, _ = await asyncio.wait([waiting], timeout=bound_s)
        if not done:
            waiting.cancel()
            self.stuck = what
            raise CallStuck(f"{what} did not return within {bound_s:g}s")
        return waiting.result()

    def close(self) -> None:
        """The thread ends after the call it is in, if any (it is left behind if that call never returns)."""
        self._calls.put(None)

    @staticmethod
    def _serve(calls: queue.SimpleQueue) -> None:
        while (item := calls.get()) is not None:
            future, method, args = item
            # Dropped before the next wait: the last reference to a client is let go on this thread.
            del item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(method(*args))
                except BaseException as exc:  # handed to the caller
                    future.set_exception(exc)
            del future, method, args
