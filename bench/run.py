"""What every bench shares: unique names, the workers' environment, Kafka look-ups, clean-up.

A `BenchRun` owns everything one bench creates (topics, the consumer group,
the registry subject, a temp dir for data and logs) and removes it on exit,
also when the bench fails or is interrupted.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from avro_codec import SchemaCache
from orders.client_config import confluent_config, registry_auth
from orders.kafka import reading
from orders.settings import Settings, load_settings

CLEANUP_TIMEOUT_S = 30


class BenchFailure(RuntimeError):
    """The bench cannot produce a correct figure; the message says why."""


@dataclass(frozen=True)
class WorkerOptions:
    """How the bench's workers run, from the command line."""

    partitions: int = 6
    faust_metrics: bool = False
    table_store: str = "memory://"


def say(line: str) -> None:
    print(line, flush=True)


@dataclass
class BenchRun:
    """Names and resources of one bench; use as a context manager, which cleans up on exit."""

    kind: str
    options: WorkerOptions = field(default_factory=WorkerOptions)
    settings: Settings = field(default_factory=load_settings)
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.kind}-"))
        self._app_ids: list[str] = []

    # -- names: everything this run creates starts with `prefix` -------------

    @property
    def prefix(self) -> str:
        return f"bench-{self.kind}-{self.suffix}"

    @property
    def orders_topic(self) -> str:
        return f"{self.prefix}-orders"

    def app_id(self, label: str = "app") -> str:
        app_id = f"{self.prefix}-{label}"
        if app_id not in self._app_ids:
            self._app_ids.append(app_id)
        return app_id

    def changelog_topic(self, app_id: str) -> str:
        return f"{app_id}-order-stats-changelog"

    def env(self, app_id: str, **overrides: str) -> dict[str, str]:
        """Environment of a worker or of `produce-orders` for this run: the caller's, with the bench's topics."""
        return {**os.environ,
                "APP_ID": app_id, "ORDERS_TOPIC": self.orders_topic,
                "RETRY_TOPIC": f"{self.prefix}-retry", "DLQ_TOPIC": f"{self.prefix}-dlq",
                # The workload: no simulated failures (the ceiling and the seed's design have none either).
                # Everything else is the app's default, as a user runs it, unless the bench's options say so.
                "PARTITIONS": str(self.options.partitions), "FAILURE_RATE": "0",
                "TABLE_STORE": self.options.table_store,
                **({"FAUST_METRICS": "true"} if self.options.faust_metrics else {}),
                **overrides}

    # -- Kafka ----------------------------------------------------------------

    def kafka_config(self) -> dict:
        return confluent_config(self.settings)

    def end_offsets(self, topic: str) -> int:
        """Sum over partitions of the next offset to be written (0 for a topic that does not exist)."""
        try:
            return sum(reading.end_offsets(self.kafka_config(), topic).values())
        except reading.TopicMissing:
            return 0

    def registry(self) -> SchemaCache:
        return SchemaCache(self.settings.schema_registry_url, auth=registry_auth(self.settings))

    # -- clean-up ---------------------------------------------------------------

    def __enter__(self) -> BenchRun:
        say(f"run {self.prefix}: its topics, app ids and consumer groups start with this; temp dir {self.tmp}")
        return self

    def __exit__(self, *exc_info) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Delete this run's topics, consumer groups and registry subject; remove its temp dir."""
        problems: list[str] = []
        admin = AdminClient(self.kafka_config())
        try:
            topics = [name for name in admin.list_topics(timeout=10).topics if name.startswith(self.prefix + "-")]
            for name, future in (admin.delete_topics(topics) if topics else {}).items():
                try:
                    future.result(CLEANUP_TIMEOUT_S)
                except KafkaException as exc:
                    problems.append(f"topic {name}: {exc}")
            problems += self._delete_groups(admin, self._app_ids)
        except KafkaException as exc:
            problems.append(f"listing topics: {exc}")
        problems += self._delete_subject(f"{self.orders_topic}-value")
        shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            say(f"clean-up incomplete: {'; '.join(problems)}")

    @staticmethod
    def _delete_groups(admin: AdminClient, groups: list[str]) -> list[str]:
        """Delete the consumer groups; a group whose killed member the broker has not dropped yet (its session
        timeout) is asked again for a while."""
        # librdkafka's default session timeout is 45 s: the seed design's killed consumer stays a member that long.
        deadline = time.monotonic() + 60
        problems: dict[str, str] = {}
        while groups:
            problems, busy = {}, []
            for group, future in admin.delete_consumer_groups(groups).items():
                try:
                    future.result(CLEANUP_TIMEOUT_S)
                except KafkaException as exc:
                    if "NON_EMPTY_GROUP" in str(exc) and time.monotonic() < deadline:
                        busy.append(group)
                    elif "GROUP_ID_NOT_FOUND" not in str(exc):
                        problems[group] = str(exc)
            groups = busy
            if busy:
                time.sleep(1)
        return [f"group {group}: {error}" for group, error in problems.items()]

    def _delete_subject(self, subject: str) -> list[str]:
        """Soft, then permanent delete (the Confluent API's two steps); an absent subject is fine."""
        try:
            base = self.registry().base_url
            auth = registry_auth(self.settings)
            for params in ({}, {"permanent": "true"}):
                resp = httpx.delete(f"{base}/subjects/{subject}", params=params, auth=auth, timeout=10)
                if resp.status_code not in (200, 404):
                    return [f"subject {subject}: HTTP {resp.status_code} {resp.text[:200]}"]
        except Exception as exc:  # clean-up reports, it does not mask the bench's own result
            return [f"subject {subject}: {exc!r}"]
        return []
