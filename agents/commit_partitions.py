"""Commits the transactions of partitions whose records stopped coming, once open COMMIT_INTERVAL_SECONDS;
on the fast path, also the group's offsets (Faust sees none of those records, so it commits none).

A task with its own loop rather than a timer: a commit waits for the broker,
and a loop simply starts its next round later instead of overlapping.
"""
import asyncio
import time

from orders.app import app, processor, settings

#: How often the fast path commits the group's offsets (where the committed states resume).
GROUP_OFFSETS_EVERY_S = 2.0


@app.task
async def commit_partitions() -> None:
    offsets_committed_at = time.monotonic()
    while not app.should_stop:
        # A quarter of the interval: no transaction stays open much beyond it.
        await asyncio.sleep(settings.commit_interval_seconds / 4)
        await processor.commit_due()
        if settings.fast_path and time.monotonic() - offsets_committed_at >= GROUP_OFFSETS_EVERY_S:
            offsets_committed_at = time.monotonic()
            await app.consumer.commit_positions(processor.resume_offsets())
