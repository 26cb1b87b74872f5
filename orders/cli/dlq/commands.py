"""`faust -A app dlq list` and `faust -A app dlq replay`: a Faust command group.

`app.command` makes each function a Faust `AppCommand` (app loaded, options,
`self.say`, `self.tabulate`); Faust registers those on its root `faust` group.
`DlqCommand` registers them on a `dlq` click group instead, which this module
adds to Faust's root group, so the two-word form works and `faust -A app dlq --help`
lists the subcommands. The entry module `app.py` imports this module.
"""
from __future__ import annotations

import asyncio
import heapq
import io
import json
import sys
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import click
from confluent_kafka import KafkaException
from faust.cli import option
from faust.cli.base import cli

from avro_codec import RegistryUnavailable

from ...app import app, settings
from ...client_config import confluent_config
from ...dead_letters import ledger
from ...dead_letters.formatting import TABLE_HEADERS, json_object, table_row
from ...dead_letters.ledger import LedgerError
from ...dead_letters.letters import DeadLetter, Selection, dead_letter, dlq_order_key, parse_time
from ...faust_overrides.commands import GroupedAppCommand
from ...kafka.producing import error_text
from ...kafka.reading import TopicMissing, partitions_of, stream_partition
from ...startup import replication
from .replay import Replayer, ReplayError, ReplayReport


@cli.group("dlq")
def dlq_group() -> None:
    """Inspect and replay dead letters (the DLQ topic)."""


class DlqCommand(GroupedAppCommand):
    """An app command that lives under `faust dlq`; `cli_name` (passed to `app.command`) names it."""

    abstract: ClassVar[bool] = True
    group: ClassVar[click.Group] = dlq_group

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command; an outage or a bad ledger ends it with one line, not a traceback."""
        app.runtime  # noqa: B018  (a setting the app cannot use ends the command here, exit 2)
        try:
            return await super().execute(*args, **kwargs)
        except KafkaException as exc:
            raise SystemExit(f"dlq {self.cli_name}: Kafka at {settings.kafka_bootstrap_servers}: "
                             f"{error_text(exc)}") from None
        except (RegistryUnavailable, TimeoutError, TopicMissing, LedgerError, ReplayError) as exc:
            raise SystemExit(f"dlq {self.cli_name}: {exc}") from None

    def selection(self, order_ids: tuple[str, ...], reasons: tuple[str, ...], since: int | None,
                  until: int | None) -> Selection:
        try:
            return Selection(frozenset(order_ids), frozenset(reasons), since, until)
        except ValueError as exc:
            raise SystemExit(f"dlq {self.cli_name}: {exc}") from None

    def dead_letters(self) -> tuple[Iterator[DeadLetter], int]:
        """The DLQ topic's dead letters as a stream, oldest first (by dead-letter time, each partition read in
        order and merged), decoded with the app's codec; and how many records the topic holds at most (its
        offsets: transaction markers count too), for the progress bar. Memory stays flat however many."""
        config = confluent_config(settings)
        try:
            total = sum(high - low for low, high in partitions_of(config, settings.dlq_topic).values())
        except TopicMissing:
            self.note(f"topic {settings.dlq_topic} does not exist: no dead letters yet")
            return iter(()), 0
        decode = app.runtime.codec.loads
        partitions = [(dead_letter(record, decode) for record in stream_partition(
            config, settings.dlq_topic, partition, low, high))
            for partition, (low, high) in sorted(partitions_of(config, settings.dlq_topic).items())]
        return heapq.merge(*partitions, key=dlq_order_key), total

    def note(self, message: str) -> None:
        """A remark for the operator, on stderr so that stdout stays machine-readable."""
        self.say(message, file=self.stderr)

    def check_reasons(self, selection: Selection, present: set[str | None]) -> None:
        """Say when a --reason matches no dead letter at all: most likely a typo."""
        for reason in sorted(selection.reasons - present):
            self.note(f"no dead letter has reason {reason!r} (reasons present: "
                      f"{', '.join(sorted(str(r) for r in present)) or 'none'})")

    def progress_bar(self, total: int, label: str, show: bool = True) -> Any:
        """Click's progress bar on stderr (drawn only when stderr is a terminal and `show`)."""
        return click.progressbar(length=max(total, 1), label=label, file=self.stderr if show else io.StringIO(),
                                 show_pos=True, show_eta=True)

    def list_letters(self, selection: Selection, as_json: bool) -> tuple[int, int]:
        """Stream the DLQ to stdout (JSON lines, or tables of TABLE_PAGE_ROWS rows); (shown, read)."""
        letters, total = self.dead_letters()
        shown = read = 0
        present: set[str | None] = set()
        page: list[list[str]] = []

        def flush() -> None:
            if page:
                self.say(self.tabulate(page, headers=TABLE_HEADERS, title=f" {settings.dlq_topic} ",
                                       wrap_last_row=False))
                page.clear()

        # The bar only when the output goes elsewhere: drawn between table rows it would garble them.
        with ledger.LedgerIndex.read(confluent_config(settings), settings.replay_ledger_topic) as replayed, \
                self.progress_bar(total, "reading dead letters", show=not sys.stdout.isatty()) as bar:
            for letter in letters:
                read += 1
                bar.update(1)
                present.add(letter.reason)
                if not selection.matches(letter):
                    continue
                shown += 1
                entry = replayed.get(letter.dedupe_key)
                if as_json:
                    self.say(json.dumps(json_object(letter, entry), allow_nan=False))
                else:
                    page.append(table_row(letter, entry))
                    if len(page) >= TABLE_PAGE_ROWS:
                        flush()
            flush()
        self.check_reasons(selection, present)
        return shown, read


class TimeParam(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_time(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SELECTION_OPTIONS = [
    option("--order-id", "order_ids", multiple=True, metavar="ORDER_ID",
           help="Only dead letters of this orderId (repeatable)."),
    option("--reason", "reasons", multiple=True, metavar="REASON",
           help="Only dead letters with this x-dlq-reason, e.g. retries-exhausted, invalid-order, undecodable "
                "(repeatable)."),
    option("--since", type=TimeParam(), help="Only dead letters from this time on: ISO-8601 (UTC unless an "
           "offset is given) or epoch seconds/milliseconds."),
    option("--until", type=TimeParam(), help="Only dead letters before this time (same formats)."),
]


#: Rows per table `dlq list` prints (each page its own table: the whole list is never held at once).
TABLE_PAGE_ROWS = 500


@app.command(*SELECTION_OPTIONS,
             option("--json", "as_json", is_flag=True, help="One JSON object per line, every field, for scripts."),
             base=DlqCommand, cli_name="list")
async def dlq_list(self: DlqCommand, order_ids: tuple[str, ...], reasons: tuple[str, ...], since: int | None,
                   until: int | None, as_json: bool) -> None:
    """List dead letters, oldest first: decoded order, reason, attempts, original coordinates, replay state."""
    selection = self.selection(order_ids, reasons, since, until)
    as_json = as_json or bool(self.json)
    shown, read = await asyncio.to_thread(self.list_letters, selection, as_json)
    self.note(f"{shown} of {read} dead letter(s) shown")


@app.command(*SELECTION_OPTIONS,
             option("--all", "everything", is_flag=True, help="Replay every dead letter (required when no "
                    "other selection is given)."),
             option("--force", is_flag=True, help="Also replay dead letters whose value does not decode "
                    "(they will be dead-lettered again)."),
             option("--dry-run", is_flag=True, help="Show what would be replayed; write nothing."),
             option("--limit", type=click.IntRange(min=1), help="Replay at most this many, then stop (a rerun "
                    "continues with the next ones)."),
             option("--rate", type=click.FloatRange(min=0, min_open=True),
                    help="Replay at most this many dead letters a second (spare the workers after an outage)."),
             option("--quiet", is_flag=True, help="No line per dead letter: the progress bar and the summary."),
             base=DlqCommand, cli_name="replay")
async def dlq_replay(self: DlqCommand, order_ids: tuple[str, ...], reasons: tuple[str, ...], since: int | None,
                     until: int | None, everything: bool, force: bool, dry_run: bool, limit: int | None,
                     rate: float | None, quiet: bool) -> None:
    """Publish chosen dead letters to the orders topic again, as new first attempts, each at most once.

    Ctrl-C stops after the batch in progress (it commits whole); run the command again to replay the rest:
    the replay ledger skips what was replayed."""
    selection = self.selection(order_ids, reasons, since, until)
    if selection.is_everything and not everything:
        raise SystemExit("dlq replay: choose what to replay: --order-id, --reason, --since/--until, or --all")
    if everything and not selection.is_everything:
        raise SystemExit("dlq replay: --all replays everything; drop it or the other selection options")
    letters, total = self.dead_letters()
    with self.progress_bar(total, "replaying dead letters", show=quiet or not sys.stdout.isatty()) as bar:
        shown = [0]

        def progress(report: ReplayReport) -> None:
            bar.update(report.read - shown[0])
            shown[0] = report.read

        replayer = Replayer(confluent_config(settings), settings.orders_topic, settings.replay_ledger_topic,
                            f"{settings.app_id}-dlq-replay", dry_run=dry_run, say=self.say,
                            replication=replication(settings), quiet=quiet, limit=limit, rate=rate,
                            progress=progress)
        outcome: dict[str, Any] = {}

        def replay() -> None:
            try:
                outcome["report"] = replayer.run(letters, selection, force)
            except BaseException as exc:  # raised again below, in the command
                outcome["error"] = exc

        thread = threading.Thread(target=replay, name="dlq-replay", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                await asyncio.sleep(0.2)
        except asyncio.CancelledError:  # Ctrl-C or SIGTERM: the batch in progress commits whole, then report
            replayer.stop.set()
            thread.join()
        if "error" in outcome:
            raise outcome["error"]
        report = outcome["report"]
    for letter, why in report.unavailable:
        self.note(f"cannot replay {letter.coordinates}: only part of its value is in the DLQ and {why}")
    self.check_reasons(selection, report.reasons)
    self.say(f"{'dry run: would replay' if dry_run else 'replayed'} {report.replayed}, "
             f"skipped already-replayed {report.already_replayed}, not matching {report.not_matching}"
             + (f", refused undecodable {report.undecodable} (--force replays them)" if report.undecodable else "")
             + (f", UNAVAILABLE {len(report.unavailable)}" if report.unavailable else "")
             + (f"; stopped at --limit {limit}" if report.limit_reached else "")
             + ("; INTERRUPTED: run it again to replay the rest (nothing is replayed twice)"
                if report.interrupted else ""))
    if report.unavailable:
        raise SystemExit(f"dlq replay: {len(report.unavailable)} dead letter(s) could not be replayed")
    if report.interrupted:
        raise SystemExit(130)
