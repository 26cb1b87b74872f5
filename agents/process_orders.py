"""Consumes `orders`: the first attempt at every order."""
from orders.app import app, orders_topic, processor, record_batches, settings


@app.agent(orders_topic)
async def process_orders(stream):
    if settings.fast_path:  # the consumer hands over each fetched partition's records (orders/faust_overrides)
        batches = record_batches[orders_topic.get_topic_name()]
        while True:
            await processor.process(await batches.get(), is_retry=False)
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_wait_seconds):
        await processor.process([event.message for event in events], is_retry=False)
