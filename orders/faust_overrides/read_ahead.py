"""What the worker's consumer fetches ahead of its agents: at most READ_AHEAD_BYTES over the partitions it
delivers, however many it owns, while each partition's fetch keeps aiokafka's full size.

aiokafka 0.14.0's `Fetcher` sends a fetch for every assigned partition that holds no fetched records, up to
`max_partition_fetch_bytes` (Faust's `consumer_max_fetch_size`, 1 MiB) each, however slowly the records are
taken, so what it holds ahead grows with the partitions owned. Shrinking each partition's fetch to a share of
a budget (16 MiB over the partitions assigned, 32 KiB at 192 partitions, as this app did before) bounds that,
but starves any partition whose record batches are larger than its share: the broker returns an oversized
batch only for the first partition with records in a response (KIP-74) and nothing for the others, so such
partitions came one batch per fetch. Producers write batches of tens of KiB at speed (librdkafka's
`batch.size` is 1,000,000 bytes; the bench's preloads had batches of up to 70 KB): at 192 partitions the
worker drained 74,000-84,000 orders/s against 87,000-100,000/s at 6, depending on how the preload happened
to batch, with 5 partitions of about 190 bringing records in each response (issue 19).

So each partition's fetch stays at its full size, and `ReadAhead` bounds the total instead. Installed on the
fetcher, it sends no fetch while

- the records held for the partitions being delivered come to READ_AHEAD_BYTES or more: what the agents
  have ahead of them. Records held for a partition the consumer does not deliver (paused by its task: a
  retry copy not due yet, a partition not set up, recovering, blocked or with a full inbox; a changelog
  after recovery) do not count here, so they do not hold up the others;
- or the records held for all partitions come to HELD_BYTES_LIMIT or more: each paused partition holds at
  most one fetch, but a worker owning hundreds of partitions, all paused in an outage with a backlog, would
  hold one for each. Reaching this takes tens of paused partitions with full fetches: a blocked or waiting
  partition or two never do.

It plans again when a partition's records have all been taken (the fetcher's consume signal) or after the
fetcher's timeout (`consumer_timeout_ms`, 200 ms). One response (at most FETCH_MAX_BYTES, consumer.py) may
go past a bound once.
"""
from __future__ import annotations

from collections.abc import Container
from typing import Any

#: Most bytes of fetched records held for the partitions being delivered before the fetcher holds back: one
#: full response (FETCH_MAX_BYTES) more can be on its way. 4 MiB is about 60,000 orders, more than half a
#: second of the worker's work. `bench partitions --partitions 6,192 --orders 1000000 --rounds 3` with 16, 8
#: and 4 MiB: 192 at 0.97, 0.84, 0.94 / 0.97, 0.90, 0.86 / 0.96, 0.94, 0.93 of 6; peak RSS at 192 194-213 /
#: 184-198 / 184-188 MiB.
READ_AHEAD_BYTES = 4 * 1024 * 1024
#: Most bytes of fetched records held for all partitions, paused ones included, before the fetcher holds back.
HELD_BYTES_LIMIT = 64 * 1024 * 1024


class ReadAhead:
    """Bounds one aiokafka `Fetcher` (its fetch routine plans each round with `_get_actions_per_node`)."""

    def __init__(self, fetcher: Any, limit: int = READ_AHEAD_BYTES, held_limit: int = HELD_BYTES_LIMIT) -> None:
        self.fetcher = fetcher
        self.limit = limit
        self.held_limit = held_limit
        #: the partitions the consumer delivers: those it last asked the fetcher for (None: every one)
        self.delivering: Container[Any] | None = None
        #: fetch rounds held back because the bound was reached
        self.held_back = 0
        self._plan = fetcher._get_actions_per_node
        fetcher._get_actions_per_node = self._get_actions_per_node

    def held(self) -> tuple[int, int]:
        """Bytes of fetched records not taken yet: (over the partitions being delivered, over all partitions).
        A partly taken fetch counts whole."""
        delivering = self.delivering
        ahead = total = 0
        for tp, result in self.fetcher._records.items():
            # A FetchError has no records; a FetchResult taken to its end has None.
            records = getattr(result, "_partition_records", None)
            if records is not None:
                size = records._records.size_in_bytes()
                total += size
                if delivering is None or tp in delivering:
                    ahead += size
        return ahead, total

    def _get_actions_per_node(self, assignment: Any) -> tuple:
        fetches, resets, timeout, invalid_metadata, resume_futures = self._plan(assignment)
        if fetches and self._full():
            self.held_back += 1
            return [], resets, self.fetcher._fetcher_timeout, invalid_metadata, resume_futures
        return fetches, resets, timeout, invalid_metadata, resume_futures

    def _full(self) -> bool:
        ahead, total = self.held()
        return ahead >= self.limit or total >= self.held_limit
