"""`GET /`: a live page for operators, the aggregate as figures and a chart of the average over time.

The page is static (`web/live.html`, inline CSS and JavaScript, nothing fetched
from elsewhere); its script polls `GET /average/` every second and keeps the
history in the browser, so the worker serves it without any state of its own.
"""
from __future__ import annotations

from pathlib import Path

import faust

LIVE_HTML = (Path(__file__).resolve().parent / "web" / "live.html").read_text(encoding="utf-8")


def install(app: faust.App) -> None:
    """Serve the live page at `/` (instead of Faust's `{"status": "OK"}` index)."""

    @app.page("/")
    async def live_page(web, request):
        return web.html(LIVE_HTML)
