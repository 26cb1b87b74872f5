"""Every few seconds: unstick a partition that Faust stopped delivering (see orders/ops/watchdog.py)."""
import logging

from confluent_kafka import KafkaException

from orders.app import app
from orders.ops import watchdog
from orders.ops.guarded import never_raises

log = logging.getLogger("orders")
_watchdog = watchdog.Watchdog()


@app.timer(watchdog.CHECK_INTERVAL_S)
@never_raises("the stall check")
async def watch_partitions() -> None:
    runtime = app.runtime
    tasks, broker = runtime.tasks, runtime.broker
    try:
        await _watchdog.check(app, runtime.source_names, lambda tp: tasks.received_offset(tp.topic, tp.partition),
                              tasks.holding, lambda tp, start, end: broker.holds_records(tp.topic, tp.partition,
                                                                                          start, end),
                              broker.watermarks)
    except (KafkaException, TimeoutError) as exc:  # the next check, seconds later, asks again
        log.warning("stall check skipped: Kafka did not answer (%s)", exc)
