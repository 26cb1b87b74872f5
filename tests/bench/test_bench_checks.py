"""What makes a bench fail instead of printing a figure, and what its command line accepts."""
import pytest

from bench.__main__ import parser
from bench.run import BenchFailure
from bench.throughput import check_aggregate

GOOD = {"orders": 100, "dead_letters": 0, "retries": 0, "in_retry": 0}


def test_an_aggregate_with_every_order_counted_once_passes():
    check_aggregate(GOOD, 100, dlq_records=0)


@pytest.mark.parametrize("summary, dlq, why", [
    ({**GOOD, "orders": 99}, 0, "orders 99 != 100"),
    ({**GOOD, "orders": 101}, 0, "orders 101 != 100"),
    (GOOD, 1, "DLQ topic holds 1"),
    ({**GOOD, "retries": 2}, 0, "retries 2"),
])
def test_a_wrong_aggregate_fails_the_bench_with_the_reason(summary, dlq, why):
    with pytest.raises(BenchFailure, match=why):
        check_aggregate(summary, 100, dlq_records=dlq)


def test_recovery_history_sizes_are_a_comma_separated_increasing_list():
    args = parser().parse_args(["recovery", "--orders", "200000,1_000_000", "--stores", "rocksdb"])
    assert (args.orders, args.stores) == ([200_000, 1_000_000], ["rocksdb"])


@pytest.mark.parametrize("argv", [
    ["recovery", "--orders", "1000,500"],
    ["recovery", "--stores", "redis"],
    ["throughput", "--orders", "0"],
    ["latency", "--rate", "-5"],
])
def test_bad_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(argv)
    assert exc.value.code == 2
