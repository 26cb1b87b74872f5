"""Tells the metrics and the console what a committed transaction did (never before it commits)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..domain.partition_state import Aggregate
from ..domain.retry_policy import RetryPolicy
from ..ops.activity_log import ActivityLog
from ..ops.metrics import OrderMetrics
from .partition import DEAD_LETTERED, PROCESSED, RETRIED, Outcome

log = logging.getLogger("orders")


class Reporter:
    def __init__(self, *, metrics: OrderMetrics, activity: ActivityLog, policy: RetryPolicy, retry_topic: str,
                 summary: Callable[[], Aggregate]) -> None:
        self.metrics = metrics
        self.activity = activity
        self.policy = policy
        self.retry_topic = retry_topic
        #: the aggregate over this worker's partitions, for the per-order lines
        self.summary = summary

    def report(self, outcomes: Iterable[Outcome]) -> None:
        """Metrics and console lines for the outcomes of one committed transaction."""
        summary = None
        processed = resolved_copies = 0
        latencies = []
        #: processed orders past the line share of this second: counted at the end, without a clock each
        unlined = 0
        for outcome in outcomes:
            if outcome.msg.topic == self.retry_topic:
                resolved_copies += 1
            if outcome.kind == PROCESSED:
                processed += 1
                latencies.append(outcome.latency_s)
                if unlined:
                    unlined += 1
                elif not self.activity.record(PROCESSED):
                    unlined = 1
                else:
                    summary = summary or self.summary()
                    order = outcome.order
                    log.info("processed %s %s %.2f %s x%d (attempt %d) | orders=%d average=%.2f", order.order_id,
                             order.product, order.price, order.currency, order.quantity, outcome.attempt,
                             summary.orders, summary.average)
            elif outcome.kind == RETRIED:
                self.metrics.retried()
                if self.activity.record(RETRIED):
                    log.warning("retry %s: attempt %d of %d failed (%s); next in %.1fs", outcome.label,
                                outcome.attempt, self.policy.attempts, outcome.detail, self.policy.delay_s)
            elif outcome.kind == DEAD_LETTERED:
                self.metrics.dead_lettered(outcome.reason)
                if self.activity.record(DEAD_LETTERED):
                    log.error("dead-letter %s after %d attempt(s): %s (%s)", outcome.label, outcome.attempt,
                              outcome.reason, outcome.detail)
        if unlined > 1:  # the first of them was counted by `record`
            self.activity.record_without_lines(PROCESSED, unlined - 1)
        self.metrics.processed(processed)
        self.metrics.observe_latencies(latencies)
        self.metrics.retry_copies_resolved(resolved_copies)
