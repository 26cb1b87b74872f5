"""The order pipeline on the real stack: counting, retries, dead letters, restarts, CLI, logging."""
import json
import re
import subprocess
import time

from orders.domain import headers as h

from .conftest import (
    FAUST,
    ROOT,
    app_env,
    micros,
    orders_with_prices,
    produce,
    produce_orders,
    read_all,
    record_count,
    settled,
    wait_for_topics,
)


def test_orders_are_counted_exactly_with_no_retry_or_dlq_traffic(names, start_worker, order_codec):
    worker = start_worker()
    wait_for_topics(names.orders, names.retry, names.dlq)
    orders = orders_with_prices("n", 60)
    produce_orders(order_codec, names.orders, orders)

    summary = worker.wait_for(settled(lambda s: s["orders"] >= len(orders)), 60, "all orders counted")
    assert summary["orders"] == len(orders)
    assert summary["total_price_micros"] == micros(orders)
    assert summary["average"] == round(micros(orders) / len(orders) / 1e6, 6)
    assert (summary["retries"], summary["dead_letters"]) == (0, 0)
    assert record_count(names.retry) == 0
    assert record_count(names.dlq) == 0


def test_temporarily_failing_orders_are_counted_once_after_spaced_retries(names, start_worker, order_codec):
    delay = 1.0
    worker = start_worker(SIMULATED_FAILURES="t-1:1,t-2:2", RETRY_DELAY_SECONDS=delay)
    wait_for_topics(names.orders)
    orders = orders_with_prices("t", 10)
    produce_orders(order_codec, names.orders, orders)

    summary = worker.wait_for(settled(lambda s: s["orders"] >= len(orders) and s["in_retry"] == 0), 60,
                              "all orders counted")
    assert summary["orders"] == len(orders)
    assert summary["total_price_micros"] == micros(orders)
    assert summary["retries"] == 3

    retries = read_all(names.retry)
    by_order = {}
    for record in retries:
        by_order.setdefault(record.key, []).append(record)
    assert {key: len(records) for key, records in by_order.items()} == {b"t-1": 1, b"t-2": 2}
    t2 = sorted(by_order[b"t-2"], key=lambda r: int(r.headers[h.ATTEMPT]))
    assert [int(r.headers[h.ATTEMPT]) for r in t2] == [2, 3]
    assert t2[1].timestamp_ms - t2[0].timestamp_ms >= delay * 1000
    assert record_count(names.dlq) == 0


def test_permanently_failing_order_is_dead_lettered_after_max_retries_while_others_flow(
        names, start_worker, order_codec):
    worker = start_worker(SIMULATED_FAILURES="p-3:always", MAX_RETRIES=2, RETRY_DELAY_SECONDS=1)
    wait_for_topics(names.orders)
    orders = orders_with_prices("p", 20)
    sent = produce_orders(order_codec, names.orders, orders)

    others = [order for order in orders if order["orderId"] != "p-3"]
    early = worker.wait_for(lambda s: s["orders"] >= len(others), 30, "the other orders counted")
    assert early["dead_letters"] == 0, "the others were counted while p-3 was still retrying"
    summary = worker.wait_for(settled(lambda s: s["dead_letters"] == 1), 30, "p-3 dead-lettered")
    assert summary["orders"] == len(others)
    assert summary["total_price_micros"] == micros(others)

    retries = read_all(names.retry)
    assert [r.key for r in retries] == [b"p-3", b"p-3"]
    (dead,) = read_all(names.dlq)
    assert dead.key == b"p-3"
    assert dead.value == sent[3]
    assert dead.headers[h.DLQ_REASON] == b"retries-exhausted"
    assert dead.headers[h.ERROR_TYPE] == b"SimulatedFailure"
    assert dead.headers[h.ATTEMPTS] == b"3"
    assert dead.headers[h.ORIGINAL_TOPIC] == names.orders.encode()
    original = read_all(names.orders)
    (p3,) = [r for r in original if r.key == b"p-3"]
    assert (int(dead.headers[h.ORIGINAL_PARTITION]), int(dead.headers[h.ORIGINAL_OFFSET])) == \
        (p3.partition, p3.offset)
    assert int(dead.headers[h.FIRST_FAILURE_MS]) <= int(dead.headers[h.DEAD_LETTERED_MS])


def test_orders_that_can_never_succeed_go_to_the_dlq_at_once(names, start_worker, order_codec):
    worker = start_worker()
    wait_for_topics(names.orders)
    bad_price = order_codec.encode({"orderId": "bad-1", "product": "x", "price": -5.0})
    empty_id = order_codec.encode({"orderId": "", "product": "x", "price": 5.0})
    garbage = b"definitely not avro"
    produce(names.orders, [(b"bad-1", bad_price), (b"bad-2", empty_id), (b"bad-3", garbage)])
    good = orders_with_prices("g", 5)
    produce_orders(order_codec, names.orders, good)

    summary = worker.wait_for(settled(lambda s: s["dead_letters"] >= 3 and s["orders"] >= 5), 60,
                              "bad orders dead-lettered")
    assert (summary["orders"], summary["dead_letters"], summary["retries"]) == (5, 3, 0)
    dead = {r.key: r for r in read_all(names.dlq)}
    assert dead[b"bad-1"].value == bad_price
    assert dead[b"bad-1"].headers[h.DLQ_REASON] == b"invalid-order"
    assert dead[b"bad-2"].headers[h.DLQ_REASON] == b"invalid-order"
    assert dead[b"bad-3"].value == garbage
    assert dead[b"bad-3"].headers[h.DLQ_REASON] == b"undecodable"
    assert b"wrong-magic-byte" in dead[b"bad-3"].headers[h.ERROR_MESSAGE]
    assert all(r.headers[h.ATTEMPTS] == b"1" for r in dead.values())
    assert record_count(names.retry) == 0


def test_aggregate_survives_a_clean_restart_and_resumes_where_it_left_off(names, start_worker, order_codec):
    worker = start_worker("first")
    wait_for_topics(names.orders)
    before = orders_with_prices("r", 30)
    produce_orders(order_codec, names.orders, before)
    worker.wait_for(settled(lambda s: s["orders"] >= len(before)), 60, "first batch counted")
    assert worker.stop() == 0, "SIGTERM should end the worker cleanly"

    while_down = orders_with_prices("d", 10)
    produce_orders(order_codec, names.orders, while_down)
    restarted = start_worker("second")
    expected = before + while_down
    summary = restarted.wait_for(settled(lambda s: s["orders"] >= len(expected)), 60, "state recovered and resumed")
    assert summary["orders"] == len(expected)
    assert summary["total_price_micros"] == micros(expected)
    # Resumed where it left off: no order is processed twice (a replayed record is recognised and skipped).
    assert restarted.log_path.read_text().count("processed ") == len(while_down)

    after = orders_with_prices("s", 20)
    produce_orders(order_codec, names.orders, after)
    summary = restarted.wait_for(lambda s: s["orders"] >= len(expected) + len(after), 60, "later orders counted")
    assert summary["orders"] == len(expected) + len(after)
    assert summary["total_price_micros"] == micros(expected + after)


def test_faust_send_command_lands_an_order_in_the_aggregate(names, start_worker):
    worker = start_worker()
    wait_for_topics(names.orders)
    env = app_env(names)
    order = {"orderId": "cli-1", "product": "Laptop", "price": 999.5}
    sent = subprocess.run([str(FAUST), "-A", "app", "send", names.orders, json.dumps(order)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr
    summary = worker.wait_for(lambda s: s["orders"] >= 1, 60, "the sent order counted")
    assert (summary["orders"], summary["total_price"]) == (1, 999.5)

    refused = subprocess.run([str(FAUST), "-A", "app", "send", names.orders, '{"orderId": "cli-2", "price": "x"}'],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "does not fit" in refused.stderr + refused.stdout
    assert record_count(names.orders) == 1


def test_at_high_rates_order_lines_are_capped_and_summaries_account_for_every_order(names, start_worker,
                                                                                      order_codec):
    worker = start_worker(ORDER_LOG_LINES_PER_SECOND=3, LOG_SUMMARY_SECONDS=1)
    wait_for_topics(names.orders)
    orders = orders_with_prices("log", 600)
    produce_orders(order_codec, names.orders, orders)
    worker.wait_for(lambda s: s["orders"] >= len(orders), 60, "all orders counted")
    time.sleep(2.5)  # the next summary

    lines = worker.log_path.read_text().splitlines()
    per_second: dict[str, int] = {}
    for line in lines:
        if "] processed " in line:
            second = line[1:20]
            per_second[second] = per_second.get(second, 0) + 1
    assert per_second and max(per_second.values()) <= 3
    summaries = [line for line in lines if re.search(r"last [0-9.]+s: [0-9,]+ processed", line)]
    assert summaries
    summarized = sum(int(re.search(r": ([0-9,]+) processed", line).group(1).replace(",", "")) for line in summaries)
    # Every order is either on a line of its own or counted in a summary (an interval whose events
    # all had lines gets no summary, so the two can overlap but never miss one).
    assert len(orders) - sum(per_second.values()) <= summarized <= len(orders)
