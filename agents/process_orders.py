"""Consumes `orders`: the first attempt at every order."""
from orders.app import app, handler, orders_topic, settings


@app.agent(orders_topic)
async def process_orders(stream):
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_wait_seconds):
        await handler.handle_batch(events, is_retry=False)
