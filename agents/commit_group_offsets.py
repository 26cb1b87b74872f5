"""On the fast path, commits the group's offsets every few seconds: Faust sees none of those records, so it
commits none. (Each partition's task commits its own transaction.)

A task with its own loop rather than a timer: a commit waits for the broker,
and a loop simply starts its next round later instead of overlapping.
"""
import asyncio

from orders.app import app, settings
from orders.ops.guarded import never_raises

#: How often the fast path commits the group's offsets (where the committed states resume).
GROUP_OFFSETS_EVERY_S = 2.0


@app.task
async def commit_group_offsets() -> None:
    if not settings.fast_path:
        return
    while not app.should_stop:
        await asyncio.sleep(GROUP_OFFSETS_EVERY_S)
        await commit_positions()


@never_raises("committing the group's offsets")
async def commit_positions() -> None:
    await app.consumer.commit_positions(app.runtime.tasks.resume_offsets())
