"""Consumes `orders-retry`: later attempts, each held until its not-before time.

Waiting here holds up only this agent; `orders` keeps flowing through its own.
Retry copies are sent with the same delay, so they come due in log order.
"""
from orders.app import app, handler, retry_topic, settings


@app.agent(retry_topic)
async def retry_orders(stream):
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_wait_seconds):
        await handler.handle_batch(events, is_retry=True)
