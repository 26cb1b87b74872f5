"""Gathers the aggregate's partitions from the workers that own them.

Each worker's table holds only its own partitions. Faust's assignor knows
which worker (by web URL) owns which changelog partition, so `/average/` on
any worker asks the other owners for their share and adds it up.
"""
from __future__ import annotations

import asyncio
import logging

import aiohttp
import faust

from ..domain.partition_state import UNCOMMITTED, PartitionState, Share

log = logging.getLogger(__name__)


def share_json(share: Share) -> dict:
    """A partition's share as /partition-stats/ serves it."""
    state, uncommitted = share
    return {**state.to_value(), UNCOMMITTED: uncommitted}


async def _fetch(session: aiohttp.ClientSession, url: str, timeout_s: float) -> dict[int, Share]:
    async with session.get(f"{url.rstrip('/')}/partition-stats/",
                           timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
        resp.raise_for_status()
        body = await resp.json()
    return {int(partition): (PartitionState.from_value(value), int(value.get(UNCOMMITTED, 0)))
            for partition, value in body.items()}


async def gather_partition_states(app: faust.App, table_name: str, own: dict[int, Share],
                                  timeout_s: float) -> tuple[dict[int, Share], list[str]]:
    """All partitions' reports, and the URLs of owners that did not answer."""
    me = str(app.conf.canonical_url).rstrip("/")
    peers = [str(url) for url in app.router.table_metadata(table_name) if str(url).rstrip("/") != me]
    results = await asyncio.gather(*(_fetch(app.http_client, url, timeout_s) for url in peers),
                                   return_exceptions=True)
    states = dict(own)
    unreachable = []
    for url, result in zip(peers, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("worker %s did not report its partitions: %r", url, result)
            unreachable.append(url)
        else:
            states.update(result)
    return states, unreachable
