"""orders.kafka without a broker: records as read, the producer's accounting and back-pressure (a fake producer)."""
from types import SimpleNamespace

from orders.kafka.producing import QUEUE_FULL_POLL_SECONDS, DeliveryTally, drain, produce
from orders.kafka.reading import Record


class FakeProducer:
    """Raises BufferError (librdkafka's queue is full) for the first `full_for` calls to produce."""

    def __init__(self, full_for: int = 0, stuck: int = 0) -> None:
        self.full_for = full_for
        self.queued: list[tuple[str, str, object]] = []
        self.polls: list[float] = []
        self.stuck = stuck  # records that never get a delivery report

    def produce(self, topic, key, value, on_delivery=None, headers=None, **placement):
        if self.full_for:
            self.full_for -= 1
            raise BufferError("Local: Queue full")
        self.queued.append((topic, key, value))

    def poll(self, timeout):
        self.polls.append(timeout)
        return 0

    def flush(self, timeout):
        return self.stuck

    def __len__(self):
        return self.stuck


def test_a_record_read_directly_carries_its_timestamp_in_seconds_as_faust_messages_do():
    record = Record("orders", 2, 41, 1_700_000_000_250, b"o-1", b"\x00body", {"x-attempt": b"2"})
    assert record.timestamp == 1_700_000_000.25
    assert Record("orders", 2, 41, None, None, None).timestamp is None
    assert record.coordinates == "orders/2/41"


def delivered(key: bytes, topic: str, partition: int, offset: int) -> SimpleNamespace:
    """A stand-in for confluent-kafka's Message, as a delivery report carries it."""
    return SimpleNamespace(key=lambda: key, topic=lambda: topic, partition=lambda: partition, offset=lambda: offset)


def test_a_full_queue_is_waited_out_and_the_record_queued_once():
    producer = FakeProducer(full_for=2)
    produce(producer, "orders", key="o-1", value=b"value", on_delivery=None)
    assert producer.queued == [("orders", "o-1", b"value")]
    assert producer.polls == [QUEUE_FULL_POLL_SECONDS, QUEUE_FULL_POLL_SECONDS, 0]


def test_every_produce_serves_pending_delivery_reports_without_waiting():
    producer = FakeProducer()
    for i in range(3):
        produce(producer, "orders", key=f"o-{i}", value=b"v", on_delivery=None)
    assert producer.polls == [0, 0, 0]


def test_tally_counts_deliveries_and_failures_and_keeps_the_first_error():
    lines: list[str] = []
    tally = DeliveryTally(echo=lines.append)
    tally.on_delivery(None, delivered(b"o-1", "orders", 2, 41))
    tally.on_delivery("Broker: Message size too large", None)
    tally.on_delivery("Local: Message timed out", None)
    assert (tally.sent, tally.failed, tally.done) == (1, 2, 3)
    assert tally.first_error == "Broker: Message size too large"
    assert lines == ["sent o-1 -> orders[2]@41", "delivery failed: Broker: Message size too large",
                     "delivery failed: Local: Message timed out"]


def test_summary_states_counts_elapsed_time_and_rate():
    tally = DeliveryTally(sent=2000, failed=3)
    assert tally.summary(2010, "orders", 0.5, undelivered=7) == (
        "sent 2000 of 2010 orders to orders in 0.50 s, 4,000 orders/s; failed 3, undelivered 7")


def test_drain_gives_up_after_its_timeout_and_says_how_many_are_unreported():
    assert drain(FakeProducer(stuck=5), timeout_s=0.05) == 5
    assert drain(FakeProducer(), timeout_s=0.05) == 0
