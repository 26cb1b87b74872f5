"""Consumes `orders`: the first attempt at every order, handed to its partition's task."""
from orders.app import app, orders_topic


@app.agent(orders_topic)
async def process_orders(stream):
    await app.runtime.feed(stream, orders_topic)
