"""The latency bench's producer loop sends on schedule, never ahead of it."""
import time

from bench.latency import bench_orders, expected_micros, send_paced
from orders.kafka.producing import DeliveryTally


class RecordingProducer:
    def __init__(self):
        self.sent_at: list[float] = []

    def produce(self, topic, key, value, on_delivery, headers=None):
        self.sent_at.append(time.monotonic())

    def poll(self, timeout):
        return 0


def test_record_i_is_never_sent_before_start_plus_i_over_rate_and_the_warmup_hook_runs_once():
    producer, rate, records = RecordingProducer(), 500.0, [(b"k", b"v")] * 200
    hook_calls: list[int] = []
    started = time.monotonic()
    pacing = send_paced(producer, "t", records, rate, DeliveryTally(), 0.2,
                        lambda: hook_calls.append(len(producer.sent_at)))

    assert pacing.produced == len(producer.sent_at) == 200
    assert all(at >= started + i / rate for i, at in enumerate(producer.sent_at))
    assert pacing.elapsed_s >= 199 / rate
    assert len(hook_calls) == 1 and hook_calls[0] > 0.2 * rate  # every warm-up order sent first


def test_bench_order_prices_survive_avro_float_so_the_expected_sum_is_exact():
    import struct
    orders = bench_orders(5000, "x")
    as_float32 = [struct.unpack("f", struct.pack("f", order["price"]))[0] for order in orders]
    assert as_float32 == [order["price"] for order in orders]
    assert expected_micros(orders) == sum(round(order["price"] * 1_000_000) for order in orders)


def test_the_pacer_wakes_at_most_once_a_tick_and_sends_what_is_due_then(monkeypatch):
    """At 20,000 orders/s a wake per order (every 50 us) cost the bench 40% of a core of the two it shares with
    the worker and the broker; a wake per millisecond sends about 20 at a time."""
    import bench.latency as latency

    sleeps: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(latency.time, "sleep", lambda s: (sleeps.append(s), real_sleep(s)))
    producer, rate, records = RecordingProducer(), 20_000.0, [(b"k", b"v")] * 2000
    started = time.monotonic()
    send_paced(producer, "t", records, rate, DeliveryTally(), 0.0, lambda: None)

    assert len(producer.sent_at) == 2000
    assert all(at >= started + i / rate for i, at in enumerate(producer.sent_at))
    assert sleeps and min(sleeps) >= latency.PACE_TICK_S
    assert len(sleeps) <= 2000 / (rate * latency.PACE_TICK_S) + 2
