"""No record stops a partition, no wait lasts forever, the state stays the same size under any backlog."""
import json
import time

from orders.domain import headers as h
from orders.domain.headers import Attempt, retry_headers
from orders.kafka import reading

from .conftest import (
    KAFKA_CONFIG,
    assert_exact,
    drained,
    micros,
    orders_with_prices,
    produce,
    produce_orders,
    read_all,
    settled,
    wait_for_topics,
)

#: The local broker's record limit (scripts/stack: message.max.bytes), which the worker's outputs share.
BROKER_LIMIT = 2_097_152


def test_a_record_near_the_size_limit_is_dead_lettered_cut_to_fit_and_the_partition_goes_on(
        names, start_worker, order_codec):
    worker = start_worker(PARTITIONS=1)
    wait_for_topics(names.orders)
    huge = b"\x07" + b"z" * (BROKER_LIMIT - 300)  # undecodable; it fits the topic, but not with DLQ headers
    produce(names.orders, [(b"huge", huge)])
    after = orders_with_prices("after", 10)
    produce_orders(order_codec, names.orders, after)

    summary = worker.wait_for(settled(lambda s: s["orders"] >= 10 and s["dead_letters"] >= 1), 60,
                              "the orders after it counted")
    assert (summary["orders"], summary["dead_letters"], summary["total_price_micros"]) == (10, 1, micros(after))
    (dead,) = read_all(names.dlq)
    assert dead.key == b"huge" and huge.startswith(dead.value) and len(dead.value) > BROKER_LIMIT // 2
    assert dead.headers[h.DLQ_REASON] == b"too-large"
    assert dead.headers[h.ORIGINAL_VALUE_BYTES] == str(len(huge)).encode()
    assert dead.headers[h.ERROR_MESSAGE].startswith(b"undecodable (")
    assert (dead.headers[h.ORIGINAL_TOPIC], dead.headers[h.ORIGINAL_OFFSET]) == (names.orders.encode(), b"0")
    assert worker.stop() == 0


def test_an_orphaned_retry_record_is_dead_lettered_at_once_and_holds_up_neither_retries_nor_shutdown(
        names, start_worker, order_codec):
    delay = 1.0
    worker = start_worker(PARTITIONS=1, RETRY_DELAY_SECONDS=delay, SIMULATED_FAILURES="f-0:1,f-1:1,f-2:1")
    wait_for_topics(names.orders, names.retry)
    # Well-formed retry headers whose original is not in `orders` (another app, a recreated topic, by hand).
    ghost = retry_headers(Attempt(names.orders, 0, 999), RuntimeError("long ago"), 0, 0, seq=1,
                          app_id=names.app_id)
    produce(names.retry, [(b"ghost", order_codec.encode({"orderId": "ghost", "product": "p", "price": 1.0}))],
            headers=ghost)
    orders = orders_with_prices("f", 5)
    produce_orders(order_codec, names.orders, orders)

    summary = worker.wait_for(drained(len(orders) + 1), 60, "the failing orders retried and counted")
    assert (summary["orders"], summary["dead_letters"], summary["retries"]) == (5, 1, 3)
    (dead,) = read_all(names.dlq)
    assert dead.key == b"ghost" and dead.headers[h.DLQ_REASON] == b"orphaned-retry"
    assert b"never sent" in dead.headers[h.ERROR_MESSAGE]

    started = time.monotonic()
    code = worker.stop(timeout_s=15 + delay)
    assert code == 0, f"SIGTERM ended the worker with {code}\n{worker.log_tail()}"
    assert time.monotonic() - started < 15 + delay


def test_an_outage_where_every_attempt_fails_keeps_the_state_small_and_loses_nothing(
        names, start_worker, order_codec, capsys):
    # The delay outlasts most of the first pass, so a large backlog is in retry at once.
    count, delay = 150_000, 45
    worker = start_worker(PARTITIONS=1, FAILURE_RATE=1, MAX_RETRIES=1, RETRY_DELAY_SECONDS=delay,
                          ORDER_LOG_LINES_PER_SECOND=0)
    wait_for_topics(names.orders)
    produce_orders(order_codec, names.orders, orders_with_prices("all", count))

    # Settled: the changelog's last state is then the one /average/ shows (it also shows uncommitted records).
    peak = worker.wait_for(settled(lambda s: s["in_retry"] >= 100_000), 180, "a backlog of 100,000 orders in retry")
    assert peak["orders"] == 0
    (state,) = reading.last_records(KAFKA_CONFIG, f"{names.app_id}-order-stats-changelog", [0]).values()
    assert state is not None and len(state.value) < 512, state
    assert json.loads(state.value)["retry_seq_sent"] >= 100_000

    summary = worker.wait_for(drained(count), 300, "every order dead-lettered after its retry")
    assert (summary["orders"], summary["dead_letters"], summary["retries"]) == (0, count, count)
    letters = read_all(names.dlq)
    origins = {(r.headers[h.ORIGINAL_PARTITION], r.headers[h.ORIGINAL_OFFSET]) for r in letters}
    assert len(letters) == len(origins) == count
    assert {r.headers[h.DLQ_REASON] for r in letters} == {b"retries-exhausted"}
    assert worker.stop() == 0
    with capsys.disabled():
        print(f"\n[outage] {count:,} orders failing, {peak['in_retry']:,} in retry at once; the partition's "
              f"changelog value stayed {len(state.value)} bytes; all dead-lettered once: {summary}")


def test_sigterm_while_busy_ends_the_worker_in_bounded_time_with_exit_0_and_loses_nothing(
        names, start_worker, order_codec, capsys):
    delay = 1.0
    settings = dict(PARTITIONS=6, FAILURE_RATE=0.2, MAX_RETRIES=2, RETRY_DELAY_SECONDS=delay)
    worker = start_worker("busy", **settings)
    wait_for_topics(names.orders)
    orders = orders_with_prices("t", 30_000)
    produce_orders(order_codec, names.orders, orders)
    worker.wait_for(lambda s: s["orders"] >= 3_000 and s["in_retry"] > 0, 60, "busy, with retries in flight")

    started = time.monotonic()
    code = worker.stop(timeout_s=15 + delay)
    stopped_s = time.monotonic() - started
    assert code == 0, f"SIGTERM ended the worker with {code}\n{worker.log_tail()}"
    assert "We experienced a crash" not in worker.log_text()

    restarted = start_worker("after", **settings)
    summary = restarted.wait_for(drained(len(orders)), 300, "every order resolved after the restart")
    assert_exact(orders, summary, read_all(names.dlq))
    assert restarted.stop() == 0
    with capsys.disabled():
        print(f"\n[sigterm] stopped while busy in {stopped_s:.1f} s with exit 0; after the restart {summary}")
