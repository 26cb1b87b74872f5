"""Every LOG_SUMMARY_SECONDS: one line for the orders that did not get a line of their own."""
from orders.app import activity, app, current_summary, log, settings


@app.timer(settings.log_summary_seconds)
async def log_activity_summary() -> None:
    line = activity.summary(current_summary())
    if line:
        log.info(line)
