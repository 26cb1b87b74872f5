"""Every LOG_SUMMARY_SECONDS: one line for the orders that did not get a line of their own."""
import logging

from orders.app import app, settings
from orders.ops.guarded import never_raises

log = logging.getLogger("orders")


@app.timer(settings.log_summary_seconds)
@never_raises("the activity summary")
async def log_activity_summary() -> None:
    runtime = app.runtime
    line = runtime.activity.summary(runtime.aggregate())
    if line:
        log.info(line)
