"""The README's "Kafka's own tools" commands, run as written (with this test's topic and group names)
through `scripts/stack` against a worker that has processed and dead-lettered orders."""
from __future__ import annotations

import re
import shlex
import subprocess

from orders.domain import headers as h

from .conftest import (
    ROOT,
    orders_with_prices,
    produce,
    produce_orders,
    read_all,
    settled,
    wait_for_topics,
    wait_until,
)

NEGATIVE = {"orderId": "tools-negative", "product": "Broken", "price": -1.0}


def readme_commands() -> list[list[str]]:
    """The commands between the kafka-tools markers of the README, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- kafka-tools: begin -->\s*```sh\n(.*?)```\s*<!-- kafka-tools: end -->", text, re.S)
    assert block, "the README's kafka-tools block is missing"
    return [shlex.split(line) for line in block.group(1).replace("\\\n", " ").splitlines() if line.strip()]


def with_names(command: list[str], names) -> list[str]:
    """The README's default names (topic orders, orders-dlq; group orders-app) replaced by the test's."""
    rename = {"orders": names.orders, "orders-dlq": names.dlq, "orders-retry": names.retry,
              "orders-app": names.app_id}
    return [rename.get(arg, arg) if i and command[i - 1] in ("--topic", "--group") else arg
            for i, arg in enumerate(command)]


def run(command: list[str]) -> subprocess.CompletedProcess:
    assert command[0] == "scripts/stack", command
    result = subprocess.run([str(ROOT / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, \
        f"{shlex.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def test_every_kafka_tools_command_of_the_readme_runs_and_shows_the_apps_topics_dead_letters_and_lag(
        names, start_worker, order_codec):
    commands = readme_commands()
    assert [c[1] for c in commands] == ["kafka-topics", "kafka-topics", "kafka-console-consumer",
                                       "kafka-consumer-groups"]
    worker = start_worker()
    wait_for_topics(names.orders, names.dlq)
    orders = orders_with_prices("tools", 30)
    produce_orders(order_codec, names.orders, orders + [NEGATIVE])
    produce(names.orders, [(b"tools-junk", b"not avro")])
    worker.wait_for(settled(lambda s: s["orders"] == 30 and s["dead_letters"] == 2), 60, "orders counted")
    dead_letters = read_all(names.dlq)
    changelog = f"{names.app_id}-order-stats-changelog"

    listing, describe, consumer, group_command = (with_names(c, names) for c in commands)
    listing, describe, consumer = run(listing), run(describe), run(consumer)

    topics = set(listing.stdout.split())
    assert {names.orders, names.retry, names.dlq, changelog} <= topics, listing.stdout
    assert f"Topic: {names.orders}\t" in describe.stdout and "PartitionCount: 3" in describe.stdout, describe.stdout

    lines = consumer.stdout.splitlines()
    assert f"Processed a total of {len(dead_letters)} messages" in consumer.stderr, consumer.stderr
    assert len(lines) == len(dead_letters) == 2, consumer.stdout
    for record in dead_letters:
        reason = record.headers[h.DLQ_REASON].decode()
        (line,) = [line for line in lines if line.startswith(f"Partition:{record.partition}\tOffset:{record.offset}\t")]
        assert f"{h.DLQ_REASON}:{reason}" in line and line.endswith("\t" + record.key.decode()), line
        assert f"{h.ORIGINAL_TOPIC}:{names.orders}" in line, line

    def orders_rows():
        """The group's rows for the orders topic, once every partition shows its committed offset."""
        out = run(group_command).stdout
        rows = {int(row[2]): row for line in out.splitlines()
                if (row := line.split()) and row[0] == names.app_id and row[1] == names.orders}
        return rows if len(rows) == 3 and all(row[3] != "-" for row in rows.values()) else None
    # The fast path commits the group's offsets every 2 s: the first run may come before that.
    rows = wait_until(orders_rows, 30, "the group's committed offsets on every orders partition")
    assert sum(int(row[4]) for row in rows.values()) == 32, f"LOG-END-OFFSET: the 32 records sent: {rows}"
    for row in rows.values():
        assert row[3] == row[4] and row[5] == "0", f"everything on {names.orders} applied and committed: {row}"
        assert row[6] != "-", f"the worker is a member of the group: {row}"
