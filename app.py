"""The `faust -A app` entry point: the app, and everything that registers on it.

`orders.app` builds the Faust app, its topics and its table; `orders.wiring`
builds the objects the worker runs on when a command first needs them
(`app.runtime`). The modules imported below register on the app:

- agents: `process_orders` (on `orders`), `retry_orders` (on `orders-retry`);
- tasks and timers: `log_activity` (summary lines), `watch_partitions` (the stall watchdog);
- pages: `/`, `/average/`, `/partition-stats/`, `/healthz`, `/readyz` (orders.web.pages), `/dead-letters/`,
  `/metrics`;
- commands: `produce-orders`, `dlq list`, `dlq replay`.

They import `orders.app`; it imports none of them.
"""
import agents.log_activity
import agents.process_orders
import agents.retry_orders
import agents.watch_partitions
import orders.cli.dlq.commands
import orders.cli.produce_orders
import orders.web.dead_letters
import orders.web.metrics_page
import orders.web.pages
from orders.app import app

__all__ = ["app"]
