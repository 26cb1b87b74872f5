"""The worker's pages: the live page at `/`, the global aggregate at `/average/`, this worker's share.

The live page is static (`live.html`, inline CSS and JavaScript, nothing fetched
from elsewhere); its script polls `GET /average/` every second and keeps the
history in the browser, so the worker serves it without any state of its own.
"""
from __future__ import annotations

from pathlib import Path

from ..app import app, owned_partition_states, settings, stats_table, tasks
from ..domain.partition_state import summarize
from ..ops.health import readiness
from .peers import UNCOMMITTED, gather_partition_states

LIVE_HTML = (Path(__file__).resolve().parent / "live.html").read_text(encoding="utf-8")


@app.page("/")
async def live_page(web, request):
    """The live page (instead of Faust's `{"status": "OK"}` index)."""
    return web.html(LIVE_HTML)


@app.page("/partition-stats/")
async def partition_stats(web, request):
    """This worker's share of the aggregate, by partition; /average/ on any worker gathers them."""
    return web.json({str(p): {**state.to_value(), UNCOMMITTED: uncommitted}
                     for p, (state, uncommitted) in owned_partition_states().items()})


@app.page("/average/")
async def average(web, request):
    """The global aggregate: this worker's partitions plus every other owner's, fetched over HTTP.

    `uncommitted` counts the records applied to these figures whose transaction has not committed yet (it
    commits within COMMIT_INTERVAL_SECONDS; until then a crash takes them back, to be applied again)."""
    reports, unreachable = await gather_partition_states(
        app, stats_table.name, owned_partition_states(), timeout_s=settings.peer_timeout_seconds)
    return web.json({**summarize(state for state, _n in reports.values()),
                     UNCOMMITTED: sum(n for _state, n in reports.values()), "partitions": len(reports),
                     "unreachable_workers": unreachable})


@app.page("/healthz")
async def healthz(web, request):
    """Liveness: the process and its event loop answer. Asks no other service."""
    return web.json({"status": "ok"})


@app.page("/readyz")
async def readyz(web, request):
    """Readiness: 200 when this worker does its share now, 503 with the reasons otherwise."""
    report = readiness(app, tasks)
    return web.json(report, status=200 if report["ready"] else 503)
