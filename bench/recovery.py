"""Restart time: how long a new worker takes to serve the full aggregate again, per table store.

For each store, on its own topics and data dir: preload orders up to the
first checkpoint, let a worker count them, stop it cleanly (SIGTERM), note the
changelog's length, start a new worker with the same APP_ID and data dir and
time it from process start to the first /average/ that shows every order.
With more checkpoints the restarted worker counts the next batch and the cycle
repeats, so the figures show how recovery grows with history.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from bench.worker_process import WorkerProcess

from .preload import preload
from .run import BenchFailure, BenchRun, WorkerOptions, say
from .watch import wait_for_orders

STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}
#: A restarted worker that has not served the full aggregate within this long has failed.
RECOVERY_TIMEOUT_S = 600


@dataclass
class Recovery:
    store: str
    orders: int
    changelog_records: int
    web_up_s: float  # process start to the first /average/ answer of any kind
    recovered_s: float  # process start to the first /average/ showing every order

    def line(self) -> str:
        return (f"{self.store} {self.orders:,} orders: {self.recovered_s:.2f} s "
                f"(web up at {self.web_up_s:.2f} s), changelog {self.changelog_records:,} records")


def _stop(run: BenchRun, worker: WorkerProcess, app_id: str, orders: int) -> tuple[dict, int]:
    """Stop a worker that has counted `orders` cleanly; return its last aggregate and the changelog's length."""
    final = worker.summary()
    worker.stop_cleanly()
    if final is None or final["orders"] != orders or final["dead_letters"]:
        raise BenchFailure(f"before the restart: expected {orders} orders and no dead letters, got {final}")
    return final, run.end_offsets(run.changelog_topic(app_id))


def _time_recovery(worker: WorkerProcess, final: dict, store: str, changelog: int) -> Recovery:
    """Wait until a just started worker shows the aggregate `final`; times count from its process start."""
    orders = final["orders"]
    web_up_at = worker.wait_for_timed(lambda _s: True, RECOVERY_TIMEOUT_S, "its web view")[0]
    recovered_at, summary = worker.wait_for_timed(lambda s: s["orders"] >= orders, RECOVERY_TIMEOUT_S,
                                                  f"all {orders:,} orders")
    if (summary["orders"], summary["total_price_micros"]) != (orders, final["total_price_micros"]):
        raise BenchFailure(f"the restarted worker shows {summary}, not the aggregate it was stopped with: {final}")
    return Recovery(store, orders, changelog, web_up_at - worker.started_at, recovered_at - worker.started_at)


def recover_store(options: WorkerOptions, checkpoints: list[int]) -> list[Recovery]:
    results: list[Recovery] = []
    with BenchRun(f"rec-{options.table_store.rstrip(':/')}", options) as run:
        app_id = run.app_id()
        workers = [WorkerProcess(run.env(app_id), run.tmp)]
        loaded = 0
        try:
            for orders in checkpoints:
                preload(run, app_id, orders - loaded)
                loaded = orders
                if workers[-1].proc is None:
                    workers[-1].start()
                wait_for_orders(workers[-1], orders)
                final, changelog = _stop(run, workers[-1], app_id, orders)
                workers.append(WorkerProcess(run.env(app_id), run.tmp, label=f"worker-{len(workers)}").start())
                result = _time_recovery(workers[-1], final, options.table_store, changelog)
                say(f"recovery: {result.line()}")
                results.append(result)
        finally:
            for worker in workers:
                worker.stop()
    return results


def recovery(options: WorkerOptions, stores: list[str], checkpoints: list[int]) -> str:
    results = []
    for store in stores:
        results += recover_store(replace(options, table_store=STORES[store]), checkpoints)
    return "recovery: " + "; ".join(result.line() for result in results)
