"""The replay procedure behind `faust -A app dlq replay`.

A replayed dead letter goes to the orders topic as a new record: the original
key and value bytes unchanged, on the partition the original was on (the key
decides when the original came from elsewhere), no retry headers (the pipeline
sees a first attempt), plus `x-replay-of` (the dedupe key) and
`x-replayed-from` (the dead letter's coordinates) for tracing. A dead letter
cut to fit the DLQ (`too-large`) is replayed with the original's bytes, read
from where it first arrived.

Each batch of replays and their ledger entries is one Kafka transaction of a
producer whose transactional id is the same for every run of this app
(`<APP_ID>-dlq-replay`). Starting it fences any run still going: that run's
open batch is aborted and its next commit refused, so it stops, and this run
reads the ledger only after that, with every replay any run committed in it.
Two runs at once, or a run after a crash, publish each dead letter once.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from ...dead_letters import ledger
from ...dead_letters.letters import DeadLetter, ReplayPlan, Selection, plan_replay
from ...domain.headers import origin_key
from ...kafka import admin, producing, reading

BATCH_SIZE = 500
CALL_TIMEOUT_S = 60


class ReplayError(RuntimeError):
    """The replay could not be completed; the message says what was and was not done."""


@dataclass
class ReplayReport:
    plan: ReplayPlan
    replayed: int = 0
    #: dead letters whose original bytes could not be read back (too large for the DLQ, and gone from the source)
    unavailable: list[tuple[DeadLetter, str]] = field(default_factory=list)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Replayer:
    def __init__(self, config: Mapping[str, Any], orders_topic: str, ledger_topic: str, transactional_id: str, *,
                 dry_run: bool, say: Callable[[str], None], batch_size: int = BATCH_SIZE,
                 replication: admin.Replication = admin.Replication()) -> None:
        self.config = config
        self.replication = replication
        self.orders_topic = orders_topic
        self.ledger_topic = ledger_topic
        self.transactional_id = transactional_id
        self.dry_run = dry_run
        self.say = say
        self.batch_size = batch_size
        self._producer = None

    def run(self, letters: list[DeadLetter], selection: Selection, force: bool) -> ReplayReport:
        if not self.dry_run:
            if admin.ensure_compacted_topic(self.config, self.ledger_topic, self.replication):
                self.say(f"created ledger topic {self.ledger_topic} (compacted)")
            # librdkafka's own log stays quiet: a fenced run says so in one line of its own.
            self._producer = producing.producer(self.config, **{"transactional.id": self.transactional_id,
                                                               "log_level": 0})
            self._call("starting the replay producer", self._producer.init_transactions)
        # Read after the producer started: every batch an earlier or concurrent run committed is in it.
        report = ReplayReport(plan_replay(letters, ledger.load(self.config, self.ledger_topic), selection, force))
        for letter in report.plan.undecodable:
            self.say(f"refused {letter.coordinates}: {letter.undecodable}; --force replays it as it is")
        replay = [(letter, self._original_value(letter, report)) for letter in report.plan.replay]
        replay = [(letter, value) for letter, value in replay if value is not None or letter.value is None]
        for start in range(0, len(replay), self.batch_size):
            self._publish(replay[start:start + self.batch_size], report)
        return report

    def _original_value(self, letter: DeadLetter, report: ReplayReport) -> bytes | None:
        """The bytes to publish: the dead letter's, or for one cut to fit the DLQ, the original's."""
        if letter.truncated_from is None:
            return letter.value
        if letter.original is None:
            report.unavailable.append((letter, "it names no original coordinates"))
            return None
        found = reading.read_range(self.config, letter.original_topic, letter.original_partition,
                                    letter.original_offset, letter.original_offset + 1)
        if not found or len(found[0].value or b"") != letter.truncated_from:
            report.unavailable.append((letter, f"its original {letter.original} is no longer in the topic"))
            return None
        return found[0].value

    def _publish(self, batch: list[tuple[DeadLetter, bytes | None]], report: ReplayReport) -> None:
        if self.dry_run:
            for letter, _value in batch:
                self.say(f"would replay {self._label(letter)}")
            report.replayed += len(batch)
            return
        producer = self._producer
        landed: dict[int, str] = {}
        failed: list[str] = []

        def report_delivery(index: int):
            def on_delivery(err, msg) -> None:
                if err is not None:
                    failed.append(str(err))
                else:
                    landed[index] = origin_key(msg.topic(), msg.partition(), msg.offset())
            return on_delivery

        partitions = reading.end_offsets(self.config, self.orders_topic)
        try:
            producer.begin_transaction()
            for index, (letter, value) in enumerate(batch):
                producing.produce(producer, self.orders_topic, key=letter.key, value=value,
                                 headers=[(ledger.REPLAY_OF, letter.dedupe_key.encode()),
                                          (ledger.REPLAYED_FROM, letter.coordinates.encode())],
                                 partition=self._partition(letter, partitions), on_delivery=report_delivery(index))
            producer.flush(CALL_TIMEOUT_S)
            if failed or len(landed) < len(batch):
                raise ReplayError(f"{len(batch) - len(landed)} of {len(batch)} replays were not acknowledged "
                                  f"({failed[0] if failed else 'no answer'})")
            for index, (letter, _value) in enumerate(batch):
                entry = ledger.Entry(letter.coordinates, _now_ms(), letter.order_id, replayed_to=landed[index])
                producing.produce(producer, self.ledger_topic, key=letter.dedupe_key.encode(), value=entry.to_bytes(),
                                 on_delivery=report_delivery(-1))
            producer.commit_transaction(CALL_TIMEOUT_S)
        except (ReplayError, KafkaException) as exc:
            self._abort(report, exc)
        for index, (letter, _value) in enumerate(batch):
            self.say(f"replayed {self._label(letter)} -> {landed[index]}")
        report.replayed += len(batch)

    def _abort(self, report: ReplayReport, exc: Exception) -> None:
        """The batch did not commit, so none of it is published: say so, with what was done before it."""
        error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        fenced = isinstance(error, KafkaError) and (error.fatal() or error.code() in producing.FENCED_OR_FATAL)
        if not fenced:
            try:
                self._producer.abort_transaction(CALL_TIMEOUT_S)
            except KafkaException:
                pass  # the broker aborts it, or the next run's producer does when it starts
        why = ("another `dlq replay` of this app started and took over (this run's producer was fenced)"
               if fenced else producing.error_text(exc))
        raise ReplayError(f"stopped after replaying {report.replayed}: {why}; the batch in progress was not "
                          f"published. Run the command again to replay the rest; nothing is replayed twice") \
            from None

    def _call(self, what: str, method: Callable[[float], Any]) -> None:
        try:
            method(CALL_TIMEOUT_S)
        except KafkaException as exc:
            raise ReplayError(f"{what}: {producing.error_text(exc)}") from None

    def _partition(self, letter: DeadLetter, partitions: Mapping[int, int]) -> int | None:
        """The partition the original was on, when it came from the orders topic; else the key decides."""
        if letter.original_topic == self.orders_topic and letter.original_partition in partitions:
            return letter.original_partition
        return None

    @staticmethod
    def _label(letter: DeadLetter) -> str:
        order = letter.order_id or f"undecodable value ({letter.truncated_from or letter.value_size} bytes)"
        return f"{order} from {letter.coordinates} (original {letter.original or '?'})"
