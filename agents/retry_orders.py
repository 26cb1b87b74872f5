"""Consumes `orders-retry`: later attempts, each held until its not-before time.

Waiting here holds up only this agent; `orders` keeps flowing through its own.
Retry copies are sent with the same delay, so they come due in log order.
"""
from app import app, retry_topic

from .handle_order import handle


@app.agent(retry_topic)
async def retry_orders(stream):
    async for event in stream.events():
        await handle(event, is_retry=True)
