"""The replay procedure behind `faust -A app dlq replay`.

A replayed dead letter goes to the orders topic as a new record: the original
key and value bytes unchanged, on the partition the original was on (the key
decides when the original came from elsewhere), no retry headers (the pipeline
sees a first attempt), plus `x-replay-of` (the dedupe key) and `x-replayed-from`
(the dead letter's coordinates) for tracing. The ledger (see `ledger`) records each
replay around its publication, in batches, so that neither a second run nor a
crash in the middle of one publishes a dead letter twice.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import kafka_io
from . import ledger
from .dead_letters import DeadLetter, ReplayPlan, Selection, plan_replay

BATCH_SIZE = 500


class ReplayError(RuntimeError):
    """The replay could not be completed; the message says what was and was not done."""


@dataclass
class ReplayReport:
    plan: ReplayPlan
    #: dedupe key -> where a replay of an interrupted run had landed (now recorded)
    recovered: dict[str, str] = field(default_factory=dict)
    #: dedupe keys an interrupted run had not published (cleared, so they can be replayed)
    cleared: list[str] = field(default_factory=list)
    #: dead letters whose publication the broker did not acknowledge, with the error
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        return len(self.plan.replay) - len(self.failed)


def load_ledger(config: Mapping[str, Any], topic: str) -> dict[str, ledger.Entry]:
    try:
        return ledger.fold(kafka_io.read_topic(config, topic))
    except kafka_io.TopicMissing:
        return {}


def _now_ms() -> int:
    return int(time.time() * 1000)


class Replayer:
    def __init__(self, config: Mapping[str, Any], orders_topic: str, ledger_topic: str, *, dry_run: bool,
                 say: Callable[[str], None], batch_size: int = BATCH_SIZE) -> None:
        self.config = config
        self.orders_topic = orders_topic
        self.ledger_topic = ledger_topic
        self.dry_run = dry_run
        self.say = say
        self.batch_size = batch_size
        self._producer = None if dry_run else kafka_io.producer(config)

    def run(self, letters: list[DeadLetter], selection: Selection, force: bool) -> ReplayReport:
        if not self.dry_run and kafka_io.ensure_compacted_topic(self.config, self.ledger_topic):
            self.say(f"created ledger topic {self.ledger_topic} (compacted)")
        entries = load_ledger(self.config, self.ledger_topic)
        report = ReplayReport(ReplayPlan())
        self._recover(entries, report)
        report.plan = plan_replay(letters, entries, selection, force)
        for letter in report.plan.undecodable:
            self.say(f"refused {letter.coordinates}: value does not decode ({letter.undecodable}); "
                     f"--force replays it as it is")
        for start in range(0, len(report.plan.replay), self.batch_size):
            self._publish(report.plan.replay[start:start + self.batch_size], report)
        return report

    # -- an interrupted run ---------------------------------------------------

    def _recover(self, entries: dict[str, ledger.Entry], report: ReplayReport) -> None:
        """Settle replays an earlier run began but did not record: published or not, by the orders topic."""
        pending = {key: entry for key, entry in entries.items() if entry.state == ledger.PUBLISHING}
        if not pending:
            return
        records = kafka_io.read_topic(self.config, self.orders_topic, start=ledger.scan_start(pending))
        report.recovered = ledger.landed(records, pending)
        report.cleared = sorted(set(pending) - set(report.recovered))
        for key, landed_at in report.recovered.items():
            entries[key] = ledger.Entry(ledger.REPLAYED, pending[key].dead_letter, _now_ms(),
                                        pending[key].order_id, replayed_to=landed_at)
            self.say(f"{'would record' if self.dry_run else 'recorded'} the interrupted replay of "
                     f"{pending[key].dead_letter} (it landed at {landed_at})")
        for key in report.cleared:
            del entries[key]
            self.say(f"the interrupted replay of {pending[key].dead_letter} never reached "
                     f"{self.orders_topic}; it can be replayed")
        if not self.dry_run:
            self._record([kafka_io.Outgoing(self.ledger_topic, key.encode(), entries[key].to_bytes())
                          for key in report.recovered] +
                         [kafka_io.Outgoing(self.ledger_topic, key.encode(), None) for key in report.cleared],
                         "settling the interrupted replays")

    # -- publishing -----------------------------------------------------------

    def _publish(self, batch: list[DeadLetter], report: ReplayReport) -> None:
        if self.dry_run:
            for letter in batch:
                self.say(f"would replay {self._label(letter)}")
            return
        before = kafka_io.end_offsets(self.config, self.orders_topic)
        self._record([self._entry(letter, ledger.PUBLISHING, orders_from=before) for letter in batch],
                     "recording the replay before publishing (nothing was published)")
        deliveries = kafka_io.deliver(self._producer, [
            kafka_io.Outgoing(self.orders_topic, letter.key, letter.value,
                              [(ledger.REPLAY_OF, letter.dedupe_key.encode()),
                               (ledger.REPLAYED_FROM, letter.coordinates.encode())],
                              partition=self._partition(letter, before))
            for letter in batch])
        done = []
        for letter, delivery in zip(batch, deliveries, strict=True):
            if delivery.error is not None:
                report.failed.append((letter, delivery.error))
                self.say(f"FAILED to replay {self._label(letter)}: {delivery.error}")
            else:
                done.append(self._entry(letter, ledger.REPLAYED, replayed_to=delivery.landed_at))
                self.say(f"replayed {self._label(letter)} -> {delivery.landed_at}")
        self._record(done, "recording published replays (the next run finds them by their x-replay-of header)")

    def _partition(self, letter: DeadLetter, partitions: Mapping[int, int]) -> int | None:
        """The partition the original was on, when it came from the orders topic; else the key decides."""
        if letter.original_topic == self.orders_topic and letter.original_partition in partitions:
            return letter.original_partition
        return None

    def _entry(self, letter: DeadLetter, state: str, **fields: Any) -> kafka_io.Outgoing:
        entry = ledger.Entry(state, letter.coordinates, _now_ms(), letter.order_id, **fields)
        return kafka_io.Outgoing(self.ledger_topic, letter.dedupe_key.encode(), entry.to_bytes())

    def _record(self, records: list[kafka_io.Outgoing], what: str) -> None:
        failed = [d.error for d in kafka_io.deliver(self._producer, records) if d.error is not None]
        if failed:
            raise ReplayError(f"{what}: {len(failed)} ledger write(s) to {self.ledger_topic} failed: {failed[0]}")

    @staticmethod
    def _label(letter: DeadLetter) -> str:
        order = letter.order_id or f"undecodable value ({letter.value_size} bytes)"
        return f"{order} from {letter.coordinates} (original {letter.original or '?'})"
