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


def test_partitions_rounds_report_the_median_rate_and_the_median_of_each_rounds_ratio():
    from types import SimpleNamespace

    from bench.partitions import MIB, summary_line

    def row(rate, rss_mib, threads=20, stall=0.5, ceiling=100_000):
        return SimpleNamespace(rate=rate, peak_rss=rss_mib * MIB, peak_threads=threads,
                               rebalance=SimpleNamespace(stall_s=stall), ceiling_rate=ceiling)
    by_round = [[row(60_000, 160), row(30_000, 190, ceiling=95_000)],    # a slow round at 192: 0.50
                [row(50_000, 170), row(50_000, 210, stall=1.5, ceiling=80_000)],  # 1.00
                [row(40_000, 150, ceiling=120_000), row(36_000, 200, threads=30, ceiling=102_000)]]  # 0.90
    line = summary_line([6, 192], by_round, 1_000_000)
    assert line == ("partitions: 6: 50,000/s, 170 MiB, 20 threads, rebalance 0.50 s | 192: 36,000/s, 210 MiB, "
                    "30 threads, rebalance 1.50 s, ratio 0.90 (0.50, 1.00, 0.90), the ceiling's 0.85 (0.95, 0.80, "
                    "0.85) (1,000,000 orders each, 3 rounds: median rate, largest RSS, threads and stall)")


def test_partitions_takes_a_number_of_rounds():
    assert parser().parse_args(["partitions", "--partitions", "6,192", "--rounds", "3"]).rounds == 3
