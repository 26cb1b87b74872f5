"""The worker's pages: the live page at `/`, the global aggregate at `/average/`, this worker's share, probes.

The aggregate comes from the `order-stats` table (each partition's task publishes its live state there).
The live page is static (`live.html`, inline CSS and JavaScript, nothing fetched from elsewhere); its script
polls `GET /average/` every second and keeps the history in the browser, so the worker serves it without any
state of its own.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..app import app, settings, stats_table
from ..domain.partition_state import Aggregate
from ..ops.health import readiness
from .peers import gather_partition_states, share_json

log = logging.getLogger("orders")

LIVE_HTML = (Path(__file__).resolve().parent / "live.html").read_text(encoding="utf-8")


@app.page("/")
async def live_page(web, request):
    """The live page (instead of Faust's `{"status": "OK"}` index)."""
    return web.html(LIVE_HTML)


@app.page("/partition-stats/")
async def partition_stats(web, request):
    """This worker's share of the aggregate, by partition, from the table; /average/ on any worker gathers them."""
    return web.json({str(partition): share_json(share) for partition, share in app.runtime.shares().items()})


@app.page("/average/")
async def average(web, request):
    """The global aggregate: this worker's partitions plus every other owner's, fetched over HTTP.

    `uncommitted` counts the records applied to these figures whose transaction has not committed yet (it
    commits within COMMIT_INTERVAL_SECONDS; until then a crash takes them back, to be applied again)."""
    shares, unreachable = await gather_partition_states(
        app, stats_table.name, app.runtime.shares(), timeout_s=settings.peer_timeout_seconds)
    aggregate = Aggregate.of(shares.values())
    return web.json({**aggregate.to_json(), **await dead_letter_figures(aggregate),
                     "unreachable_workers": unreachable})


async def dead_letter_figures(aggregate: Aggregate) -> dict:
    """Dead letters replayed by `dlq replay` (the ledger) and still outstanding (written minus replayed);
    null when the ledger cannot be read now."""
    replays = app.runtime.replays
    try:
        await replays.refresh()
    except Exception as exc:  # the aggregate still answers; the page shows the gap
        log.warning("/average/: the replay ledger cannot be read: %r", exc)
        return {"dead_letters_replayed": None, "dead_letters_outstanding": None}
    replayed = replays.replayed()
    return {"dead_letters_replayed": replayed, "dead_letters_outstanding": max(0, aggregate.dead_letters - replayed)}


@app.page("/healthz")
async def healthz(web, request):
    """Liveness: the process and its event loop answer. Asks no other service."""
    return web.json({"status": "ok"})


@app.page("/readyz")
async def readyz(web, request):
    """Readiness: 200 when this worker does its share now, 503 with the reasons otherwise."""
    runtime = app.runtime
    report = await readiness(app, runtime.tasks, runtime.probes)
    return web.json(report, status=200 if report["ready"] else 503)
