"""Every few seconds: unstick a partition that Faust stopped delivering (see orders/ops/watchdog.py)."""
import asyncio
import logging

from confluent_kafka import KafkaException

from orders import kafka_io
from orders.app import SOURCE_TOPICS, app, applied_offset, kafka_config, settings, watermarks
from orders.ops import watchdog

log = logging.getLogger("orders")
_progress = watchdog.SourceProgress()
_source_names = {topic.get_topic_name() for topic in SOURCE_TOPICS}
# A retry copy held for its delay is not a stall: allow a few delays.
_stall_s = max(watchdog.STALL_SECONDS, 3 * settings.retry_delay_seconds)


async def _records_between(tp, start: int, end: int) -> int:
    return len(await asyncio.to_thread(kafka_io.read_range, kafka_config, tp.topic, tp.partition, start, end))


@app.timer(watchdog.CHECK_INTERVAL_S)
async def watch_partitions() -> None:
    try:
        await watchdog.check_for_stalls(app, _source_names, applied_offset, _progress, _stall_s,
                                         _records_between, watermarks)
    except (KafkaException, TimeoutError) as exc:  # the next check, seconds later, asks again
        log.warning("stall check skipped: Kafka did not answer (%s)", exc)
