"""`faust -A app dlq list|replay` as an operator runs them, against a real worker's dead letters."""
from __future__ import annotations

import json
import re
import signal
import subprocess
from datetime import UTC, datetime

from confluent_kafka.admin import AdminClient

from orders.dead_letters.ledger import REPLAY_OF, REPLAYED_FROM
from orders.domain import headers as h
from orders.domain.headers import Attempt, dlq_headers
from orders.kafka import producing

from .conftest import (
    BOOTSTRAP,
    FAUST,
    KAFKA_CONFIG,
    ROOT,
    app_env,
    create_topic,
    micros,
    produce,
    produce_orders,
    read_all,
    record_count,
    settled,
    wait_for_topics,
)

GOOD = [{"orderId": f"good-{i}", "product": "Lamp", "price": 2.5 + i} for i in range(3)]
NEGATIVE = {"orderId": "o-negative", "product": "Broken", "price": -1.0}
JUNK = (b"junk-key", b"garbage")


def dlq(names, *args: str) -> subprocess.CompletedProcess:
    """Run `faust -A app dlq ...` in the test's environment; fail with its output if it fails."""
    result = subprocess.run([str(FAUST), "-A", "app", "dlq", *args], cwd=ROOT, env=app_env(names),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"dlq {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def listed(names, *args: str) -> list[dict]:
    return [json.loads(line) for line in dlq(names, "list", "--json", *args).stdout.splitlines()]


def dead_letter_three_ways(names, start_worker, order_codec, always_failing: list[str]):
    """A worker dead-letters orders that always fail, a negative price and garbage; returns it drained."""
    worker = start_worker(SIMULATED_FAILURES=",".join(f"{oid}:always" for oid in always_failing), MAX_RETRIES=1)
    wait_for_topics(names.orders, names.dlq)
    failing = [{"orderId": oid, "product": "Chair", "price": 40.25} for oid in always_failing]
    produce_orders(order_codec, names.orders, GOOD + failing + [NEGATIVE])
    produce(names.orders, [JUNK])
    dead = len(failing) + 2
    worker.wait_for(settled(lambda s: s["orders"] == len(GOOD) and s["dead_letters"] == dead and s["in_retry"] == 0),
                    90,
                    "good orders counted, the rest dead-lettered")
    return worker


def restart_without_failures(first, start_worker):
    """Stop the worker and start one without SIMULATED_FAILURES; return it once it has recovered the
    aggregate, with that aggregate."""
    final = first.summary()
    first.stop()
    worker = start_worker("fixed-worker")
    same = ("orders", "dead_letters", "total_price_micros")
    worker.wait_for(settled(lambda s: [s[k] for k in same] == [final[k] for k in same]), 60,
                    "the aggregate recovered")
    return worker, final


def replay(names, *args: str, summary: str) -> str:
    """Run `dlq replay` and check its summary line; return its output."""
    out = dlq(names, "replay", *args).stdout
    assert summary in out, out
    return out


def test_dlq_list_shows_every_dead_letter_decoded_with_reason_attempts_and_coordinates(
        names, start_worker, order_codec):
    dead_letter_three_ways(names, start_worker, order_codec, ["o-always"])
    in_topic = {(r.partition, r.offset): r for r in read_all(names.dlq)}
    originals = {(r.partition, r.offset): r for r in read_all(names.orders)}

    rows = listed(names)
    assert {(row["dlq_partition"], row["dlq_offset"]) for row in rows} == set(in_topic)
    by_key = {row["key"]: row for row in rows}
    assert set(by_key) == {"o-always", "o-negative", "junk-key"}
    for row in rows:
        record = in_topic[(row["dlq_partition"], row["dlq_offset"])]
        assert row["key"] == record.key.decode()
        assert row["reason"] == record.headers[h.DLQ_REASON].decode()
        assert row["dlq_topic"] == names.dlq
        assert row["original_topic"] == names.orders
        original = originals[(row["original_partition"], row["original_offset"])]
        assert original.key == record.key and original.value == record.value, "coordinates lead to the original"
        assert row["value_size"] == len(record.value)
        assert row["time_ms"] == int(record.headers[h.DEAD_LETTERED_MS])

    assert (by_key["o-always"]["reason"], by_key["o-always"]["attempts"]) == ("retries-exhausted", 2)
    assert by_key["o-always"]["value"]["price"] == 40.25 and by_key["o-always"]["order_id"] == "o-always"
    assert (by_key["o-negative"]["reason"], by_key["o-negative"]["attempts"]) == ("invalid-order", 1)
    assert by_key["o-negative"]["value"]["price"] == -1.0
    junk = by_key["junk-key"]
    assert (junk["reason"], junk["decoded"], junk["value"], junk["order_id"]) == ("undecodable", False, None, None)
    assert junk["value_size"] == len(JUNK[1])

    table = dlq(names, "list")
    assert "o-always" in table.stdout and "o-negative" in table.stdout and "? key=junk-key" in table.stdout
    assert "retries-exhausted" in table.stdout and "invalid-order" in table.stdout
    assert f"UNDECODABLE, {len(JUNK[1])} bytes" in table.stdout
    assert "3 of 3 dead letter(s) shown" in table.stderr

    assert [row["order_id"] for row in listed(names, "--reason", "invalid-order")] == ["o-negative"]
    assert listed(names, "--order-id", "o-always", "--reason", "invalid-order") == []
    latest = max(row["time_ms"] for row in rows)
    assert listed(names, "--since", str(latest + 1)) == [], "epoch milliseconds"
    just_after = datetime.fromtimestamp((latest + 1) / 1000, tz=UTC).isoformat()
    assert len(listed(names, "--until", just_after)) == 3, "ISO-8601"
    typo = dlq(names, "list", "--reason", "invalid")
    assert "no dead letter has reason 'invalid'" in typo.stderr

    orders = record_count(names.orders)
    replay(names, "--all", "--dry-run",
           summary="dry run: would replay 2, skipped already-replayed 0, not matching 0, refused undecodable 1")
    assert record_count(names.orders) == orders
    assert f"{names.dlq}-replayed" not in AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(timeout=10).topics


def test_replay_by_order_id_counts_the_order_once_and_a_second_run_publishes_nothing(
        names, start_worker, order_codec):
    first = dead_letter_three_ways(names, start_worker, order_codec, ["o-fixed"])
    worker, before = restart_without_failures(first, start_worker)
    orders_before = record_count(names.orders)

    replay(names, "--order-id", "o-fixed", summary="replayed 1, skipped already-replayed 0, not matching 2")
    assert record_count(names.orders) == orders_before + 1
    summary = worker.wait_for(lambda s: s["orders"] == before["orders"] + 1, 60, "the replayed order counted")
    assert summary["total_price_micros"] == before["total_price_micros"] + micros([{"price": 40.25}])
    assert summary["dead_letters"] == before["dead_letters"]

    replayed = [r for r in read_all(names.orders) if REPLAY_OF in r.headers]
    dead = next(r for r in read_all(names.dlq) if r.key == b"o-fixed")
    assert len(replayed) == 1
    assert (replayed[0].key, replayed[0].value) == (dead.key, dead.value), "original key and bytes"
    assert h.ATTEMPT not in replayed[0].headers, "a new first attempt"
    assert replayed[0].partition == int(dead.headers[h.ORIGINAL_PARTITION]), "back where the original was"
    assert replayed[0].headers[REPLAY_OF].decode() == "/".join(
        dead.headers[name].decode() for name in (h.ORIGINAL_TOPIC, h.ORIGINAL_PARTITION, h.ORIGINAL_OFFSET))
    assert replayed[0].headers[REPLAYED_FROM].decode() == f"{names.dlq}/{dead.partition}/{dead.offset}"
    row = next(row for row in listed(names) if row["order_id"] == "o-fixed")
    assert row["replay"]["replayed_to"] == f"{names.orders}/{replayed[0].partition}/{replayed[0].offset}"

    replay(names, "--order-id", "o-fixed", summary="replayed 0, skipped already-replayed 1, not matching 2")
    assert record_count(names.orders) == orders_before + 1
    assert worker.summary()["orders"] == before["orders"] + 1


def test_replay_by_reason_replays_two_dlq_copies_of_one_order_once_and_undecodable_only_with_force(
        names, start_worker, order_codec):
    first = dead_letter_three_ways(names, start_worker, order_codec, ["o-a", "o-b"])
    copy = next(r for r in read_all(names.dlq) if r.key == b"o-a")
    produce(names.dlq, [(copy.key, copy.value)], headers=list(copy.headers.items()))  # as after a crash
    worker, before = restart_without_failures(first, start_worker)
    orders_before = record_count(names.orders)

    replay(names, "--reason", "retries-exhausted", summary="replayed 2, skipped already-replayed 1, not matching 2")
    assert record_count(names.orders) == orders_before + 2
    worker.wait_for(lambda s: s["orders"] == before["orders"] + 2, 60, "o-a and o-b counted once each")

    replay(names, "--reason", "undecodable",
           summary="replayed 0, skipped already-replayed 0, not matching 4, refused undecodable 1")
    assert record_count(names.orders) == orders_before + 2

    replay(names, "--reason", "undecodable", "--force", "--dry-run", summary="dry run: would replay 1,")
    assert record_count(names.orders) == orders_before + 2

    replay(names, "--reason", "undecodable", "--force",
           summary="replayed 1, skipped already-replayed 0, not matching 4")
    summary = worker.wait_for(settled(lambda s: s["dead_letters"] == before["dead_letters"] + 1), 60,
                              "the replayed garbage dead-lettered again")
    assert summary["orders"] == before["orders"] + 2
    junk_rows = listed(names, "--reason", "undecodable")
    assert len(junk_rows) == 2
    newest = max(junk_rows, key=lambda row: row["time_ms"])
    assert newest["original_topic"] == names.orders and newest["replay"] is None, "a new dead letter"


def test_two_replays_at_once_publish_every_dead_letter_once(names, order_codec):
    create_topic(names.orders, 3)
    create_topic(names.dlq, 3)
    count = 3_000  # six batches: the second run starts while the first is publishing
    value = order_codec.encode({"orderId": "o-twice", "product": "Desk", "price": 5.0})
    deliveries = producing.deliver(producing.producer(KAFKA_CONFIG), [
        producing.Outgoing(names.dlq, f"o-{i}".encode(), value, dlq_headers(
            Attempt(names.orders, i % 3, i // 3), "retries-exhausted", RuntimeError("down"), 1_000))
        for i in range(count)])
    assert not [d.error for d in deliveries if d.error]
    env = app_env(names)
    command = [str(FAUST), "-A", "app", "dlq", "replay", "--all"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.stdout.readline().startswith("created ledger topic")
    assert first.stdout.readline().startswith("replayed "), "the first batch is committed"
    first.send_signal(signal.SIGSTOP)  # paused mid-run, as a stalled operator session would be
    try:
        second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=240)
    assert second.returncode == 0, second.stdout + second.stderr
    assert first.returncode == 1 and "another `dlq replay` of this app started and took over" in err, out + err
    done = re.search(r"^replayed (\d+), skipped already-replayed (\d+),", second.stdout, re.MULTILINE)
    assert done and int(done[2]) >= 500 and int(done[1]) + int(done[2]) == count, second.stdout

    replays = [r.headers[REPLAY_OF] for r in read_all(names.orders) if REPLAY_OF in r.headers]
    assert len(replays) == len(set(replays)) == count, "every dead letter replayed, none twice"
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert f"replayed 0, skipped already-replayed {count}" in again.stdout, again.stdout + again.stderr


def test_an_interrupted_replay_of_20000_dead_letters_continues_where_it_stopped_and_counts_each_order_once(
        names, start_worker, order_codec, tmp_path, capsys):
    count = 20_000
    failing = start_worker("failing", FAILURE_RATE=1, MAX_RETRIES=0, ORDER_LOG_LINES_PER_SECOND=0)
    wait_for_topics(names.orders)
    orders = [{"orderId": f"dl-{i}", "product": "Lamp", "price": (i % 400) * 0.25 + 0.5} for i in range(count)]
    produce_orders(order_codec, names.orders, orders)
    failing.wait_for(settled(lambda s: s["dead_letters"] == count), 120, "every order dead-lettered")
    assert failing.stop() == 0

    ledger_topic = f"{names.dlq}-replayed"
    replay = subprocess.Popen([str(FAUST), "-A", "app", "dlq", "replay", "--all", "--quiet", "--rate", "2000"],
                              cwd=ROOT, env=app_env(names), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        from .conftest import wait_until
        wait_until(lambda: ledger_topic in AdminClient(KAFKA_CONFIG).list_topics(timeout=5).topics
                   and record_count(ledger_topic) >= count // 2, 60, "half the dead letters replayed", interval=0.2)
        replay.send_signal(signal.SIGINT)
        first_out, first_err = replay.communicate(timeout=60)
    finally:
        if replay.poll() is None:
            replay.kill()
    first_line = first_out.strip().splitlines()[-1]
    assert "INTERRUPTED" in first_line and replay.returncode != 0, (first_out[-500:], first_err[-2000:])
    first_replayed = int(re.match(r"replayed (\d+),", first_line).group(1))
    assert count // 2 <= first_replayed < count and first_replayed == record_count(ledger_topic), first_line

    second = dlq(names, "replay", "--all", "--quiet")
    second_line = second.stdout.strip().splitlines()[-1]
    assert second_line == f"replayed {count - first_replayed}, skipped already-replayed {first_replayed}, " \
                          f"not matching 0", second_line

    counting = start_worker("counting", FAILURE_RATE=0, ORDER_LOG_LINES_PER_SECOND=0)
    summary = counting.wait_for(settled(lambda s: s["orders"] >= count), 120, "every replayed order counted")
    assert (summary["orders"], summary["dead_letters"], summary["total_price_micros"]) == (count, count, micros(orders))
    summary = counting.wait_for(lambda s: s["dead_letters_outstanding"] == 0, 30, "no dead letter outstanding")
    assert summary["dead_letters_replayed"] == count
    assert counting.stop() == 0
    with capsys.disabled():
        print(f"\n[dlq replay] 20,000 dead letters: interrupted after {first_replayed:,} ({first_line}); "
              f"then {second_line}; counted {summary['orders']:,} once each, outstanding 0")
