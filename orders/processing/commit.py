"""Makes a partition's open transaction durable: its live state on the changelog, then the commit.

The state is written last, in the same transaction as the retry copies and
dead letters its records caused, so a reader of committed records sees a
state only together with everything it accounts for. A commit the broker
refuses for the moment (`Failure.RETRY`: a timeout, a broker restarting) is
asked again with backoff; any other failure is raised for the partition task
to abort the transaction and apply its records again (`Failure.ABORT`) or to
let the partition go (`Failure.FATAL`).
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..backoff import Backoff
from ..kafka.transactions import Failure, TransactionError
from .partition import Outcome, Partition

log = logging.getLogger("orders")

class Committer:
    def __init__(self, *, changelog_topic: str, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.changelog_topic = changelog_topic
        self.sleep = sleep

    async def commit(self, part: Partition, keep_trying: Callable[[TransactionError], bool]
                     ) -> tuple[list[Outcome], int | None]:
        """Commit the partition's open transaction with its live state; return the transaction's outcomes and
        the offset its state landed at on the changelog (None if the delivery report did not say).

        `keep_trying(error)` is asked before each new attempt after a refusal for the moment: False raises it.
        """
        value = part.state.to_value()
        written: dict[str, int] = {}

        def on_delivery(err: Any, msg: Any) -> None:
            if err is None:
                written["offset"] = msg.offset()

        part.output.produce(self.changelog_topic, key=json.dumps(part.number).encode(),
                            value=json.dumps(value).encode(), partition=part.number, on_delivery=on_delivery)
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                await part.output.commit()
                break
            except TransactionError as exc:
                if exc.failure is not Failure.RETRY or not keep_trying(exc):
                    raise
                delay = backoff.next_delay()
                log.warning("partition %d: commit not done yet (%s); asking again in %.1fs", part.number, exc, delay)
                await self.sleep(delay)
        return part.mark_committed(), written.get("offset")
