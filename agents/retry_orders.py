"""Consumes `orders-retry`: later attempts, handed to their partition's task, which holds each copy until
it is due (pausing that retry partition alone meanwhile); `orders` and the other partitions keep flowing."""
from orders.app import app, retry_topic


@app.agent(retry_topic)
async def retry_orders(stream):
    await app.runtime.feed(stream, retry_topic)
