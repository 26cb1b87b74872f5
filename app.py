"""The `faust -A app` entry point: the app, and everything that registers on it.

`orders.app` builds the Faust app, its topics and table and the processing
objects; the modules imported below register agents, timers, pages and
commands on it. They import `orders.app`; it imports none of them.
"""
import agents.log_activity
import agents.process_orders
import agents.retry_orders
import agents.watch_partitions  # noqa: F401  (timer: the stall watchdog)
import orders.cli.dlq.commands
import orders.cli.produce_orders
import orders.ops.metrics_page
import orders.web.pages  # noqa: F401  (GET /, /average/, /partition-stats/)
from orders.app import app

__all__ = ["app"]
