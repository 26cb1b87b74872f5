"""Every setting of the app, read from the environment once and checked at start-up.

This is the only module that reads `os.environ`.
"""
from __future__ import annotations

import math
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Union, get_args, get_origin, get_type_hints


class SettingsError(ValueError):
    """An environment variable has a value the app cannot use."""


@dataclass(frozen=True)
class Secret:
    """A password: printing or logging it shows stars, `.value` gives it to the client that needs it."""

    value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


@dataclass(frozen=True)
class Settings:
    #: Kafka bootstrap servers, comma separated.
    kafka_bootstrap_servers: str = "localhost:9092"
    #: Schema registry: Confluent's root URL or Apicurio's; Apicurio's /apis/ccompat/v7 is found by itself.
    schema_registry_url: str = "http://localhost:8081"
    #: Faust application id: consumer group and prefix of the table's changelog topic.
    app_id: str = "orders-app"
    orders_topic: str = "orders"
    retry_topic: str = "orders-retry"
    dlq_topic: str = "orders-dlq"
    #: Compacted topic where `faust dlq replay` records what it replayed; empty: "<DLQ_TOPIC>-replayed".
    dlq_replayed_topic: str = ""
    #: Most dead letters the live page shows (the newest; `GET /dead-letters/` reads no more than this).
    dlq_page_limit: int = 50
    #: Partitions of `orders` and `orders-retry` (and the table's changelog); they must match.
    partitions: int = 6
    #: Replicas of every topic the app or its tools create (Faust's too); -1: the brokers'
    #: default.replication.factor.
    replication_factor: int = -1
    #: min.insync.replicas of the topics the app creates; unset: the brokers' default.
    min_insync_replicas: int | None = None
    #: A name for this worker that stays the same across its restarts (a pod's name): the consumer's
    #: group.instance.id, so a worker back within BROKER_SESSION_TIMEOUT_SECONDS gets its partitions back
    #: without a rebalance of the whole group. Unset: a new member at every start. Unique per worker.
    worker_id: str = ""
    #: Retries after the first attempt before an order is dead-lettered.
    max_retries: int = 3
    #: Minimum time between two attempts of the same order.
    retry_delay_seconds: float = 2.0
    #: How far past RETRY_DELAY_SECONDS a retry copy's x-not-before-ms may lie, counted from the copy's own
    #: timestamp (or from when this worker first saw it): a copy whose not-before lies further ahead (a
    #: writer's clock running ahead, an older and longer delay) is tried at that bound instead.
    retry_not_before_allowance_seconds: float = 1.0
    #: Failed attempts in a row to apply or commit a partition's records (a registry that does not answer,
    #: an output the broker refuses) after which the partition reports itself blocked: one ERROR line,
    #: `orders_partition_blocked`, /readyz. It keeps trying, and resumes by itself once it gets through.
    attempts_before_blocked: int = 5
    #: Test only (the fault-injection test): probability that applying a record raises an exception at each
    #: of its steps, to prove that nothing half-applied is ever committed. 0 in any real deployment.
    fault_injection_rate: float = 0.0
    #: Probability that processing an order fails (simulated, retryable).
    failure_rate: float = 0.1
    #: Seed that makes simulated failures reproducible: the same order and attempt always fail or pass.
    failure_seed: int | None = None
    #: Orders that fail on purpose, e.g. "o-1:2,o-9:always": o-1 fails its first 2 attempts.
    simulated_failures: str = ""
    #: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    kafka_security_protocol: str = "PLAINTEXT"
    #: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol).
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret | None = None
    #: CA bundle that signed the brokers' certificates (SSL, SASL_SSL); empty: the system's.
    kafka_ssl_cafile: str = ""
    #: Client certificate and key, for brokers that require TLS client authentication.
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    #: Basic auth for the schema registry; empty: none.
    schema_registry_username: str = ""
    schema_registry_password: Secret | None = None
    #: Faust table store: memory:// or rocksdb://.
    table_store: str = "memory://"
    #: Address the web view binds to; 0.0.0.0 serves other hosts too.
    web_bind: str = "127.0.0.1"
    #: Host name other workers use to reach this one's web view (for the global /average/).
    web_host: str = "127.0.0.1"
    #: How long a starting worker waits for Kafka and the registry before it gives up and exits.
    startup_timeout_seconds: float = 60.0
    #: How long /average/ waits for another worker's share.
    peer_timeout_seconds: float = 2.0
    #: A worker silent this long is dropped from the group and its partitions move to the others.
    broker_session_timeout_seconds: float = 10.0
    #: Add Faust's own stream, consumer and table metrics to /metrics (Faust's Prometheus sensor: about 30 µs
    #: more CPU per message on the stock path). Off by default: the dashboard and the alerts use the app's own
    #: metrics only, and on the fast path Faust's sensor does not see the orders anyway.
    faust_metrics: bool = False
    #: Most records an agent takes from its stream at once.
    batch_max_records: int = 1000
    #: Most records one poll of the consumer turns into Python objects, over all its partitions. Unbounded,
    #: a poll materialises every fetched record at once (about 18,000 per partition from a 1 MiB fetch):
    #: 206 MiB peak RSS draining 1,000,000 orders against 160 MiB at 12,000.
    max_poll_records: int = 10_000
    #: Longest an agent waits to fill a batch before it processes what it has (bounds latency).
    batch_max_wait_seconds: float = 0.02
    #: Hand each fetched partition's records to the agent as one batch (the fast path); false: Faust's
    #: stock path, an event per record.
    fast_path: bool = True
    #: How long a partition's transaction stays open at most while records come: its state, retry copies and
    #: dead letters become visible (and durable) together when it commits. A commit holds its partition's
    #: records back while the broker answers: at 0.1 s that was the p99 latency at 10,000 orders/s.
    commit_interval_seconds: float = 0.25
    #: Per-order log lines (processed, retry, dead letter) at most this often per second; the
    #: rest are counted into the periodic summary. 0: summaries only.
    order_log_lines_per_second: int = 20
    #: How often a worker logs a summary of what it processed, when lines were left out.
    log_summary_seconds: float = 10.0

    @property
    def replay_ledger_topic(self) -> str:
        """Where `dlq replay` records replayed dead letters (DLQ_REPLAYED_TOPIC or derived from DLQ_TOPIC)."""
        return self.dlq_replayed_topic or f"{self.dlq_topic}-replayed"

    @property
    def forced_failures(self) -> dict[str, int | None]:
        """orderId -> number of failing attempts (None: every attempt)."""
        return parse_forced_failures(self.simulated_failures)


def parse_forced_failures(text: str) -> dict[str, int | None]:
    result: dict[str, int | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        order_id, sep, count = item.rpartition(":")
        if not sep or not order_id:
            raise SettingsError(f"SIMULATED_FAILURES item {item!r} must look like ORDER_ID:COUNT or ORDER_ID:always")
        if count == "always":
            result[order_id] = None
        elif count.isdigit():
            result[order_id] = int(count)
        else:
            raise SettingsError(f"SIMULATED_FAILURES item {item!r}: count must be a number or 'always'")
    return result


def _field_kind(hint: object) -> tuple[type, bool]:
    """The type a setting's value has, and whether it may be unset (None): `float | None` -> (float, True)."""
    if get_origin(hint) in (Union, types.UnionType):
        members = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(members) != 1:
            raise TypeError(f"a setting must have one type (optionally | None), not {hint}")
        return members[0], True
    return hint, False  # type: ignore[return-value]


def _convert(env: str, raw: str, kind: type) -> object:
    if kind is Secret:
        return Secret(raw)
    raw = raw.strip()
    if kind is bool:
        if raw.lower() not in BOOLEANS:
            raise SettingsError(f"{env} must be one of {', '.join(BOOLEANS)}, got {raw!r}")
        return BOOLEANS[raw.lower()]
    if kind is str:
        return raw
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        raise SettingsError(f"{env} must be a {'whole' if kind is int else 'finite'} number, got {raw!r}") from None
    raise TypeError(f"setting {env} has a type the loader does not know: {kind}")


def load_settings_or_defaults(environ: Mapping[str, str] = os.environ) -> tuple[Settings, SettingsError | None]:
    """The settings, or the defaults and the error when the environment has a value the app cannot use: the
    app is built at import with these, and a command reports the error when it runs (`faust -A app --help`
    works whatever the environment)."""
    try:
        return load_settings(environ), None
    except SettingsError as exc:
        return Settings(), exc


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """Settings from environment variables named like the fields in upper case; unset or blank: the default."""
    hints = get_type_hints(Settings)
    values: dict[str, object] = {}
    for field in fields(Settings):
        env = field.name.upper()
        raw = environ.get(env)
        if raw is None or raw.strip() == "":
            continue
        kind, _optional = _field_kind(hints[field.name])
        values[field.name] = _convert(env, raw, kind)
    settings = Settings(**values)  # type: ignore[arg-type]
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if s.max_retries < 0:
        raise SettingsError(f"MAX_RETRIES must be >= 0, got {s.max_retries}")
    if s.retry_delay_seconds < 0:
        raise SettingsError(f"RETRY_DELAY_SECONDS must be >= 0, got {s.retry_delay_seconds}")
    if s.retry_not_before_allowance_seconds < 0:
        raise SettingsError(f"RETRY_NOT_BEFORE_ALLOWANCE_SECONDS must be >= 0, got "
                            f"{s.retry_not_before_allowance_seconds}")
    if s.attempts_before_blocked < 1:
        raise SettingsError(f"ATTEMPTS_BEFORE_BLOCKED must be >= 1, got {s.attempts_before_blocked}")
    if not 0.0 <= s.fault_injection_rate < 0.1:
        raise SettingsError(f"FAULT_INJECTION_RATE must be >= 0 and below 0.1 (a test setting), got "
                            f"{s.fault_injection_rate}")
    if not 0.0 <= s.failure_rate <= 1.0:
        raise SettingsError(f"FAILURE_RATE must be between 0 and 1, got {s.failure_rate}")
    if s.broker_session_timeout_seconds < 6:
        raise SettingsError(f"BROKER_SESSION_TIMEOUT_SECONDS must be >= 6 (heartbeats every 3s), "
                            f"got {s.broker_session_timeout_seconds}")
    if s.batch_max_records < 1:
        raise SettingsError(f"BATCH_MAX_RECORDS must be >= 1, got {s.batch_max_records}")
    if s.max_poll_records < 1:
        raise SettingsError(f"MAX_POLL_RECORDS must be >= 1, got {s.max_poll_records}")
    if not 0 < s.batch_max_wait_seconds <= 10:
        raise SettingsError(f"BATCH_MAX_WAIT_SECONDS must be > 0 and <= 10, got {s.batch_max_wait_seconds}")
    if s.order_log_lines_per_second < 0:
        raise SettingsError(f"ORDER_LOG_LINES_PER_SECOND must be >= 0, got {s.order_log_lines_per_second}")
    if not 0 < s.commit_interval_seconds <= 10:
        raise SettingsError(f"COMMIT_INTERVAL_SECONDS must be > 0 and <= 10, got {s.commit_interval_seconds}")
    if s.log_summary_seconds <= 0:
        raise SettingsError(f"LOG_SUMMARY_SECONDS must be > 0, got {s.log_summary_seconds}")
    if not 1 <= s.dlq_page_limit <= 1000:
        raise SettingsError(f"DLQ_PAGE_LIMIT must be between 1 and 1000, got {s.dlq_page_limit}")
    if s.partitions < 1:
        raise SettingsError(f"PARTITIONS must be >= 1, got {s.partitions}")
    if s.replication_factor == 0 or s.replication_factor < -1:
        raise SettingsError(f"REPLICATION_FACTOR must be -1 (the brokers' default) or >= 1, got {s.replication_factor}")
    if s.min_insync_replicas is not None and not 1 <= s.min_insync_replicas:
        raise SettingsError(f"MIN_INSYNC_REPLICAS must be >= 1, got {s.min_insync_replicas}")
    if (s.min_insync_replicas is not None and s.replication_factor > 0
            and s.min_insync_replicas > s.replication_factor):
        raise SettingsError(f"MIN_INSYNC_REPLICAS={s.min_insync_replicas} is more than REPLICATION_FACTOR="
                            f"{s.replication_factor}: no write could ever be acknowledged")
    if not s.table_store.startswith(("memory://", "rocksdb://")):
        raise SettingsError(f"TABLE_STORE must be memory:// or rocksdb://, got {s.table_store!r}")
    if not s.schema_registry_url.startswith(("http://", "https://")):
        raise SettingsError(f"SCHEMA_REGISTRY_URL must start with http:// or https://, got {s.schema_registry_url!r}")
    topics = [s.orders_topic, s.retry_topic, s.dlq_topic, s.replay_ledger_topic]
    if len(set(topics)) != 4:
        raise SettingsError(f"ORDERS_TOPIC, RETRY_TOPIC, DLQ_TOPIC and DLQ_REPLAYED_TOPIC must differ, got {topics}")
    parse_forced_failures(s.simulated_failures)
    if s.kafka_security_protocol not in SECURITY_PROTOCOLS:
        raise SettingsError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                            f"got {s.kafka_security_protocol!r}")
    if s.kafka_security_protocol.startswith("SASL_"):
        if s.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise SettingsError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
                                f"got {s.kafka_sasl_mechanism!r}")
        if not s.kafka_sasl_username or s.kafka_sasl_password is None:
            raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol} needs KAFKA_SASL_USERNAME "
                                f"and KAFKA_SASL_PASSWORD")
    if bool(s.schema_registry_username) != (s.schema_registry_password is not None):
        raise SettingsError("SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD go together")
