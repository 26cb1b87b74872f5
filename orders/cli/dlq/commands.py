"""`faust -A app dlq list` and `faust -A app dlq replay`: a Faust command group.

`app.command` makes each function a Faust `AppCommand` (app loaded, options,
`self.say`, `self.tabulate`); Faust registers those on its root `faust` group.
`DlqCommand` registers them on a `dlq` click group instead, which this module
adds to Faust's root group, so the two-word form works and `faust -A app dlq --help`
lists the subcommands. The entry module `app.py` imports this module.
"""
from __future__ import annotations

import json
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
from ...dead_letters.letters import DeadLetter, Selection, dead_letter, in_dlq_order, parse_time
from ...faust_overrides.commands import GroupedAppCommand
from ...kafka.producing import error_text
from ...kafka.reading import TopicMissing, read_topic
from ...startup import replication
from .replay import Replayer, ReplayError


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

    def dead_letters(self) -> list[DeadLetter]:
        """Every record in the DLQ topic, oldest first, decoded with the app's codec."""
        try:
            records = read_topic(confluent_config(settings), settings.dlq_topic)
        except TopicMissing:
            self.note(f"topic {settings.dlq_topic} does not exist: no dead letters yet")
            return []
        return in_dlq_order(dead_letter(record, app.runtime.codec.loads) for record in records)

    def note(self, message: str) -> None:
        """A remark for the operator, on stderr so that stdout stays machine-readable."""
        self.say(message, file=self.stderr)

    def check_reasons(self, selection: Selection, letters: list[DeadLetter]) -> None:
        """Say when a --reason matches no dead letter at all: most likely a typo."""
        present = {letter.reason for letter in letters}
        for reason in sorted(selection.reasons - present):
            self.note(f"no dead letter has reason {reason!r} (reasons present: "
                      f"{', '.join(sorted(str(r) for r in present)) or 'none'})")


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


@app.command(*SELECTION_OPTIONS,
             option("--json", "as_json", is_flag=True, help="One JSON object per line, every field, for scripts."),
             base=DlqCommand, cli_name="list")
async def dlq_list(self: DlqCommand, order_ids: tuple[str, ...], reasons: tuple[str, ...], since: int | None,
                   until: int | None, as_json: bool) -> None:
    """List dead letters, oldest first: decoded order, reason, attempts, original coordinates, replay state."""
    selection = self.selection(order_ids, reasons, since, until)
    letters = self.dead_letters()
    self.check_reasons(selection, letters)
    entries = ledger.load(confluent_config(settings), settings.replay_ledger_topic)
    shown = [letter for letter in letters if selection.matches(letter)]
    if as_json or self.json:
        for letter in shown:
            self.say(json.dumps(json_object(letter, entries.get(letter.dedupe_key)), allow_nan=False))
        return
    if shown:
        rows = [table_row(letter, entries.get(letter.dedupe_key)) for letter in shown]
        self.say(self.tabulate(rows, headers=TABLE_HEADERS, title=f" {settings.dlq_topic} ", wrap_last_row=False))
    self.note(f"{len(shown)} of {len(letters)} dead letter(s) shown")


@app.command(*SELECTION_OPTIONS,
             option("--all", "everything", is_flag=True, help="Replay every dead letter (required when no "
                    "other selection is given)."),
             option("--force", is_flag=True, help="Also replay dead letters whose value does not decode "
                    "(they will be dead-lettered again)."),
             option("--dry-run", is_flag=True, help="Show what would be replayed; write nothing."),
             base=DlqCommand, cli_name="replay")
async def dlq_replay(self: DlqCommand, order_ids: tuple[str, ...], reasons: tuple[str, ...], since: int | None,
                     until: int | None, everything: bool, force: bool, dry_run: bool) -> None:
    """Publish chosen dead letters to the orders topic again, as new first attempts, each at most once."""
    selection = self.selection(order_ids, reasons, since, until)
    if selection.is_everything and not everything:
        raise SystemExit("dlq replay: choose what to replay: --order-id, --reason, --since/--until, or --all")
    if everything and not selection.is_everything:
        raise SystemExit("dlq replay: --all replays everything; drop it or the other selection options")
    letters = self.dead_letters()
    self.check_reasons(selection, letters)
    replayer = Replayer(confluent_config(settings), settings.orders_topic, settings.replay_ledger_topic,
                        f"{settings.app_id}-dlq-replay", dry_run=dry_run, say=self.say,
                        replication=replication(settings))
    report = replayer.run(letters, selection, force)
    plan = report.plan
    for letter, why in report.unavailable:
        self.note(f"cannot replay {letter.coordinates}: only part of its value is in the DLQ and {why}")
    self.say(f"{'dry run: would replay' if dry_run else 'replayed'} {report.replayed}, "
             f"skipped already-replayed {len(plan.already_replayed)}, not matching {len(plan.not_matching)}"
             + (f", refused undecodable {len(plan.undecodable)} (--force replays them)" if plan.undecodable else "")
             + (f", UNAVAILABLE {len(report.unavailable)}" if report.unavailable else ""))
    if report.unavailable:
        raise SystemExit(f"dlq replay: {len(report.unavailable)} dead letter(s) could not be replayed")
