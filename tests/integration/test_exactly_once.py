"""After crashes, restarts, outages, a lost worker and a paused one, every order is counted exactly once or
dead-lettered: never both, never neither.

Processing failures are drawn without a seed, as real failures are: a replayed
attempt may pass where it failed before. Kill and pause moments come from a
fixed seed, so a failing schedule can be run again.
"""
import random
import signal
import threading
import time

from tests.stack import USES_LOCAL_STACK, stack_command

from .conftest import (
    Producing,
    assert_exact,
    drained,
    kill_mid_stream,
    orders_with_prices,
    produce_orders,
    read_all,
    settled,
    wait_for_topics,
    wait_until,
)

SEED = 20261127
FLAKY = dict(PARTITIONS=6, FAILURE_RATE=0.1, RETRY_DELAY_SECONDS=0.2, MAX_RETRIES=3)
#: What the guarantees issue asks of the crash test: many failures, one retry, no seed.
HARSH = dict(PARTITIONS=6, FAILURE_RATE=0.3, RETRY_DELAY_SECONDS=0.2, MAX_RETRIES=1)


def stack(command: str) -> None:
    assert USES_LOCAL_STACK, "outage tests stop and start parts of the local stack"
    assert stack_command(command, timeout_s=180).returncode == 0, f"scripts/stack {command} failed"


def test_unseeded_failures_and_sigkills_while_busy_count_each_order_once_or_dead_letter_it(
        names, start_worker, order_codec, capsys):
    orders = orders_with_prices("k", 20_000)
    rng = random.Random(SEED)
    worker = start_worker("run-0", **HARSH)
    wait_for_topics(names.orders)
    # Orders keep arriving for about 80 s, through four kills and restarts (each about 15 s: the session
    # timeout), so every kill lands on a worker with orders, retries and a transaction in flight.
    producing = Producing(order_codec, names.orders, orders, rate=250, chunk=250)
    producing.start()

    recoveries = []
    for kill in range(1, 5):
        before = kill_mid_stream(worker, producing, rng, pause_s=(0.5, 3.0))
        killed_at = time.monotonic()
        worker = start_worker(f"run-{kill}", **HARSH)
        worker.wait_for(lambda s, before=before: s["orders"] > before["orders"], 120,
                        "progress past the pre-kill count")
        recoveries.append(time.monotonic() - killed_at)

    producing.finish()
    summary = worker.wait_for(drained(len(orders)), 300, "all orders resolved")
    time.sleep(3)
    assert worker.summary() == summary, "the aggregate moved after it had drained"
    assert_exact(orders, summary, read_all(names.dlq))
    assert summary["dead_letters"] > 1000, "with FAILURE_RATE=0.3 and one retry, about 9% are dead-lettered"
    assert worker.stop() == 0
    with capsys.disabled():
        print(f"\n[crash] {len(orders)} orders, 4 SIGKILLs survived; seconds from kill to progress past the "
              f"pre-kill count: {', '.join(f'{r:.1f}' for r in recoveries)}; final {summary}")


def test_worker_rides_out_a_broker_restart(names, start_worker, order_codec):
    orders = orders_with_prices("b", 4_000)
    worker = start_worker(**FLAKY)
    wait_for_topics(names.orders)
    produce_orders(order_codec, names.orders, orders)
    worker.wait_for(lambda s: s["orders"] >= 500, 60, "processing under way")

    stack("stop-broker")
    try:
        time.sleep(3)
    finally:
        stack("start-broker")

    summary = worker.wait_for(drained(len(orders)), 240, "all orders resolved after the broker restart")
    assert_exact(orders, summary, read_all(names.dlq))


def test_registry_outage_holds_unknown_schema_ids_and_loses_nothing(names, start_worker, order_codec):
    from avro_codec import AvroRecordCodec
    worker = start_worker()
    wait_for_topics(names.orders)
    first = orders_with_prices("v1a", 10)
    produce_orders(order_codec, names.orders, first)
    worker.wait_for(lambda s: s["orders"] >= 10, 60, "v1 orders counted")

    v2_schema = {**order_codec.raw_schema, "fields": order_codec.raw_schema["fields"] + [
        {"name": "quantity", "type": "int", "default": 1}]}
    v2 = AvroRecordCodec(order_codec.registry, v2_schema, subject=order_codec.subject)
    later = [{**order, "quantity": 2} for order in orders_with_prices("v2", 5)]
    v2_bytes = [v2.encode(order) for order in later]  # registers v2 while the registry is up
    assert v2.schema_id != order_codec.schema_id

    stack("stop-registry")
    try:
        cached = orders_with_prices("v1b", 10)
        produce_orders(order_codec, names.orders, cached)
        worker.wait_for(lambda s: s["orders"] >= 20, 60, "orders with a cached schema id counted")
        from .conftest import produce
        produce(names.orders, [(o["orderId"].encode(), data) for o, data in zip(later, v2_bytes, strict=True)])
        time.sleep(8)
        held = worker.summary()
        assert (held["orders"], held["dead_letters"]) == (20, 0), held
        assert "retrying in" in worker.log_path.read_text()
    finally:
        stack("start-registry")

    summary = worker.wait_for(settled(lambda s: s["orders"] >= 25), 120,
                              "held orders counted once the registry is back")
    assert (summary["orders"], summary["dead_letters"]) == (25, 0)
    all_orders = first + cached + [{k: v for k, v in o.items() if k != "quantity"} for o in later]
    assert_exact(all_orders, summary, read_all(names.dlq))


def test_a_worker_paused_past_its_session_timeout_cannot_write_once_it_resumes(names, start_worker, order_codec,
                                                                             capsys):
    settings = dict(HARSH, BROKER_SESSION_TIMEOUT_SECONDS=6)
    paused, other = start_worker("paused", **settings), start_worker("other", **settings)
    wait_for_topics(names.orders)
    orders = orders_with_prices("z", 12_000)
    producing = Producing(order_codec, names.orders, orders, rate=2_000)
    producing.start()
    paused.wait_for(lambda s: s["orders"] >= 1_500, 120, "both workers busy")
    time.sleep(random.Random(SEED).uniform(0.0, 0.5))
    paused.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(12)  # twice the session timeout: its partitions move to the other worker, which goes on
    finally:
        paused.proc.send_signal(signal.SIGCONT)
    producing.finish()

    def agreed():
        first, second = paused.summary(), other.summary()
        return first if first is not None and first == second and first["unreachable_workers"] == [] and \
            drained(len(orders))(first) else None
    summary = wait_until(agreed, 240, "both workers' /average/ to agree on every order")
    assert summary["partitions"] == 6
    assert_exact(orders, summary, read_all(names.dlq))
    refused = "moved on without this member" in paused.log_text()
    with capsys.disabled():
        print(f"\n[paused] {len(orders)} orders; the paused worker's next commit "
              f"{'was refused by the group coordinator' if refused else 'came after it had rejoined'}; "
              f"final {summary}")


def test_survivors_take_over_a_killed_workers_partitions_and_agree(names, start_worker, order_codec):
    settings = dict(FLAKY, BROKER_SESSION_TIMEOUT_SECONDS=10)
    workers = [start_worker(f"w{i}", **settings) for i in range(3)]
    wait_for_topics(names.orders)
    orders = orders_with_prices("x", 6_000)
    produce_orders(order_codec, names.orders, orders)
    workers[0].wait_for(lambda s: s["orders"] >= 1_000, 120, "processing under way")

    workers[1].kill()
    survivors = [workers[0], workers[2]]
    survivors[0].wait_for(drained(len(orders)), 150, "all orders resolved by the survivors")

    def agreed():
        first, second = survivors[0].summary(), survivors[1].summary()
        return first if first == second and first["unreachable_workers"] == [] and first["partitions"] == 6 \
            else None
    summary = wait_until(agreed, 60, "both survivors' /average/ to agree on all six partitions")
    assert summary["partitions"] == 6
    assert_exact(orders, summary, read_all(names.dlq))


def test_retry_copies_waiting_while_workers_join_and_one_dies_are_all_counted_without_a_stall(
        names, start_worker, order_codec):
    """One worker takes the first attempts alone; while its retry copies wait (3 s), two more join, one of them
    dies at once. Retry partitions with nothing applied and nothing committed used to keep the position a
    dropped fetch had reached, and their copies waited until the watchdog asked for a rebalance (or for
    ever: the CI run that found it held 87 copies for over two minutes)."""
    settings = dict(FLAKY, BROKER_SESSION_TIMEOUT_SECONDS=10, RETRY_DELAY_SECONDS=3)
    first = start_worker("w0", **settings)
    wait_for_topics(names.orders)
    orders = orders_with_prices("j", 6_000)
    produce_orders(order_codec, names.orders, orders)
    first.wait_for(lambda s: s["orders"] >= 3_000, 120, "first attempts under way")
    joined: dict[str, object] = {}
    starters = [threading.Thread(target=lambda label=label: joined.__setitem__(label, start_worker(label, **settings)))
                for label in ("w1", "w2")]
    for starter in starters:
        starter.start()
    for starter in starters:
        starter.join()
    doomed, survivor = joined["w1"], joined["w2"]
    wait_until(lambda: doomed.partition_stats() or None, 60, "the joining worker to own partitions")
    doomed.kill()
    first.wait_for(drained(len(orders)), 60, "every order resolved by the two survivors")
    summary = wait_until(lambda: (s := first.summary()) and s["partitions"] == 6 and not s["unreachable_workers"]
                         and s or None, 60, "a complete aggregate")
    assert_exact(orders, summary, read_all(names.dlq))
    for worker in (first, survivor):
        assert "none was delivered" not in worker.log_text(), worker.log_tail()
