"""Consumes `orders`: the first attempt at every order."""
from app import app, orders_topic

from .handle_order import handle


@app.agent(orders_topic)
async def process_orders(stream):
    async for event in stream.events():
        await handle(event, is_retry=False)
