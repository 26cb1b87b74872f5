"""Every few seconds: unstick a partition that Faust stopped delivering (see orders/ops/watchdog.py)."""
import asyncio
import logging

from confluent_kafka import KafkaException

from orders import kafka_io
from orders.app import SOURCE_TOPICS, app, kafka_config, tasks, watermarks
from orders.ops import watchdog

log = logging.getLogger("orders")
_watchdog = watchdog.Watchdog()
_source_names = {topic.get_topic_name() for topic in SOURCE_TOPICS}


def _delivered(tp) -> int:
    return tasks.received_offset(tp.topic, tp.partition)


async def _holds_records(tp, start: int, end: int) -> bool:
    return await asyncio.to_thread(kafka_io.holds_records, kafka_config, tp.topic, tp.partition, start, end)


@app.timer(watchdog.CHECK_INTERVAL_S)
async def watch_partitions() -> None:
    try:
        await _watchdog.check(app, _source_names, _delivered, tasks.holding, _holds_records, watermarks)
    except (KafkaException, TimeoutError) as exc:  # the next check, seconds later, asks again
        log.warning("stall check skipped: Kafka did not answer (%s)", exc)
