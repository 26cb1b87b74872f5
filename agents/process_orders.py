"""Consumes `orders`: the first attempt at every order."""
from app import app, orders_topic, settings

from .handle_order import handle_batch


@app.agent(orders_topic)
async def process_orders(stream):
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_wait_seconds):
        await handle_batch(events, is_retry=False)
