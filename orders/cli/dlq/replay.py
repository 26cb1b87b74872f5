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

The dead letters are read as a stream and decided one at a time against the
ledger's index on disk (`LedgerIndex`), so memory stays flat however large
the DLQ; the dedupe keys replayed in this run go into the same index, which
keeps a second DLQ copy of an original from being replayed twice. A stop
request (Ctrl-C) is honoured between batches: the batch in progress commits
whole, and a later run skips what this one replayed.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from ...dead_letters import ledger
from ...dead_letters.letters import ALREADY_REPLAYED, REPLAY, UNDECODABLE, DeadLetter, Selection, decide
from ...domain.headers import origin_key
from ...kafka import admin, producing, reading

BATCH_SIZE = 500
CALL_TIMEOUT_S = 60


class ReplayError(RuntimeError):
    """The replay could not be completed; the message says what was and was not done."""


@dataclass
class ReplayReport:
    #: dead letters read
    read: int = 0
    replayed: int = 0
    #: decide()'s answer -> how many dead letters got it (replayed ones are counted when published)
    decided: Counter = field(default_factory=Counter)
    #: dead letters whose original bytes could not be read back (too large for the DLQ, and gone from the source)
    unavailable: list[tuple[DeadLetter, str]] = field(default_factory=list)
    #: the x-dlq-reason values of the dead letters read
    reasons: set = field(default_factory=set)
    #: the run stopped early: Ctrl-C (interrupted) or --limit reached
    interrupted: bool = False
    limit_reached: bool = False

    @property
    def already_replayed(self) -> int:
        return self.decided[ALREADY_REPLAYED]

    @property
    def undecodable(self) -> int:
        return self.decided[UNDECODABLE]

    @property
    def not_matching(self) -> int:
        return self.read - self.decided[REPLAY] - self.already_replayed - self.undecodable


def _now_ms() -> int:
    return int(time.time() * 1000)


class Replayer:
    def __init__(self, config: Mapping[str, Any], orders_topic: str, ledger_topic: str, transactional_id: str, *,
                 dry_run: bool, say: Callable[[str], None], batch_size: int = BATCH_SIZE,
                 replication: admin.Replication = admin.Replication(), quiet: bool = False,
                 limit: int | None = None, rate: float | None = None,
                 progress: Callable[[ReplayReport], None] = lambda report: None) -> None:
        self.config = config
        self.quiet = quiet
        #: replay at most this many (None: all)
        self.limit = limit
        #: at most this many replays a second (None: as fast as the broker takes them)
        self.rate = rate
        #: told after every dead letter read
        self.progress = progress
        #: set from another thread to stop after the batch in progress (Ctrl-C)
        self.stop = threading.Event()
        self.replication = replication
        self.orders_topic = orders_topic
        self.ledger_topic = ledger_topic
        self.transactional_id = transactional_id
        self.dry_run = dry_run
        self.say = say
        # A batch is at most about a second's worth at the rate asked for.
        self.batch_size = batch_size if rate is None else max(1, min(batch_size, int(rate)))
        self._producer = None

    def run(self, letters: Iterable[DeadLetter], selection: Selection, force: bool) -> ReplayReport:
        """Replay the chosen dead letters of `letters` (read in DLQ order); the report says what happened."""
        if not self.dry_run:
            if admin.ensure_compacted_topic(self.config, self.ledger_topic, self.replication):
                self.say(f"created ledger topic {self.ledger_topic} (compacted)")
            # librdkafka's own log stays quiet: a fenced run says so in one line of its own.
            self._producer = producing.producer(self.config, **{"transactional.id": self.transactional_id,
                                                               "log_level": 0})
            self._call("starting the replay producer", self._producer.init_transactions)
        report = ReplayReport()
        started = time.monotonic()
        # Read after the producer started: every batch an earlier or concurrent run committed is in it.
        with ledger.LedgerIndex.read(self.config, self.ledger_topic) as replayed:
            batch: list[tuple[DeadLetter, bytes | None]] = []
            for letter in letters:
                if self.stop.is_set():
                    report.interrupted = True
                    break
                report.read += 1
                report.reasons.add(letter.reason)
                decision = decide(letter, selection, replayed, force)
                report.decided[decision] += 1
                if decision == UNDECODABLE and not self.quiet:
                    self.say(f"refused {letter.coordinates}: {letter.undecodable}; --force replays it as it is")
                if decision == REPLAY:
                    value = self._original_value(letter, report)
                    if value is not None or letter.value is None:
                        # Taken now (a later DLQ copy of the same original is then already replayed), and for
                        # good once the batch commits; a batch that does not commit ends the run.
                        replayed.put(letter.dedupe_key, ledger.Entry(letter.coordinates, _now_ms()))
                        batch.append((letter, value))
                self.progress(report)
                if len(batch) >= self.batch_size:
                    self._publish(batch, report, replayed)
                    batch = []
                    self._keep_pace(started, report)
                if self.limit is not None and report.replayed + len(batch) >= self.limit:
                    report.limit_reached = True
                    break
            if batch:
                self._publish(batch, report, replayed)
            self.progress(report)
        return report

    def _keep_pace(self, started: float, report: ReplayReport) -> None:
        """With --rate: wait until the replays so far are due, or a stop request comes."""
        if self.rate is not None:
            self.stop.wait(max(0.0, started + report.replayed / self.rate - time.monotonic()))

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

    def _publish(self, batch: list[tuple[DeadLetter, bytes | None]], report: ReplayReport,
                 replayed: ledger.LedgerIndex) -> None:
        if self.dry_run:
            if not self.quiet:
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
            entries = []
            for index, (letter, _value) in enumerate(batch):
                entry = ledger.Entry(letter.coordinates, _now_ms(), letter.order_id, replayed_to=landed[index])
                entries.append((letter.dedupe_key, entry))
                producing.produce(producer, self.ledger_topic, key=letter.dedupe_key.encode(), value=entry.to_bytes(),
                                 on_delivery=report_delivery(-1))
            producer.commit_transaction(CALL_TIMEOUT_S)
        except (ReplayError, KafkaException) as exc:
            self._abort(report, exc)
        for key, entry in entries:
            replayed.put(key, entry)
        if not self.quiet:
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
