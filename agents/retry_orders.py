"""Consumes `orders-retry`: later attempts, each held until its not-before time.

Waiting here holds up only this agent; `orders` keeps flowing through its own.
Retry copies are sent with the same delay, so they come due in log order.
"""
from orders.app import app, processor, record_batches, retry_topic, settings


@app.agent(retry_topic)
async def retry_orders(stream):
    if settings.fast_path:  # the consumer hands over each fetched partition's records (orders/faust_overrides)
        batches = record_batches[retry_topic.get_topic_name()]
        while True:
            await processor.process(await batches.get(), is_retry=True)
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_wait_seconds):
        await processor.process([event.message for event in events], is_retry=True)
