import pytest

from orders.settings import Secret, Settings, SettingsError, load_settings


def test_defaults_match_the_documented_ones():
    s = load_settings({})
    assert (s.kafka_bootstrap_servers, s.max_retries, s.retry_delay_seconds, s.failure_rate) == \
        ("localhost:9092", 3, 2.0, 0.1)
    assert (s.orders_topic, s.retry_topic, s.dlq_topic) == ("orders", "orders-retry", "orders-dlq")
    assert s.web_bind == "127.0.0.1"


def test_values_are_read_from_the_environment():
    s = load_settings({"MAX_RETRIES": "5", "FAILURE_RATE": "0", "FAILURE_SEED": "9", "ORDERS_TOPIC": "o2"})
    assert (s.max_retries, s.failure_rate, s.failure_seed, s.orders_topic) == (5, 0.0, 9, "o2")


@pytest.mark.parametrize("env, words", [
    ({"MAX_RETRIES": "three"}, "MAX_RETRIES"),
    ({"MAX_RETRIES": "-1"}, "MAX_RETRIES"),
    ({"FAILURE_RATE": "1.5"}, "FAILURE_RATE"),
    ({"RETRY_DELAY_SECONDS": "inf"}, "RETRY_DELAY_SECONDS"),
    ({"PARTITIONS": "0"}, "PARTITIONS"),
    ({"TABLE_STORE": "redis://"}, "TABLE_STORE"),
    ({"SCHEMA_REGISTRY_URL": "localhost:8081"}, "SCHEMA_REGISTRY_URL"),
    ({"DLQ_TOPIC": "orders"}, "DLQ_TOPIC"),
    ({"SIMULATED_FAILURES": "o-1:often"}, "SIMULATED_FAILURES"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL"}, "KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
    ({"SCHEMA_REGISTRY_USERNAME": "u"}, "SCHEMA_REGISTRY_PASSWORD"),
    ({"FAUST_METRICS": "maybe"}, "FAUST_METRICS"),
])
def test_bad_values_are_refused_naming_the_variable(env, words):
    with pytest.raises(SettingsError, match=words):
        load_settings(env)


@pytest.mark.parametrize("raw, expected", [("false", False), ("0", False), ("No", False), ("TRUE", True),
                                           ("1", True), ("yes", True)])
def test_switches_read_the_usual_words_for_yes_and_no(raw, expected):
    assert load_settings({"FAUST_METRICS": raw}).faust_metrics is expected


def test_faust_metrics_are_off_by_default_so_the_published_figures_are_the_defaults():
    assert load_settings({}).faust_metrics is False


def test_forced_failures_are_parsed():
    assert Settings(simulated_failures="o-1:2, o-2:always").forced_failures == {"o-1": 2, "o-2": None}


def test_passwords_never_print():
    s = load_settings({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u",
                       "KAFKA_SASL_PASSWORD": "hunter2", "SCHEMA_REGISTRY_USERNAME": "r",
                       "SCHEMA_REGISTRY_PASSWORD": "swordfish"})
    assert s.kafka_sasl_password == Secret("hunter2")
    assert "hunter2" not in repr(s) and "swordfish" not in repr(s) and "hunter2" not in str(s)


def test_the_replay_ledger_topic_is_derived_from_the_dlq_topic_unless_set():
    assert load_settings({"DLQ_TOPIC": "dead"}).replay_ledger_topic == "dead-replayed"
    assert load_settings({"DLQ_REPLAYED_TOPIC": "ledger"}).replay_ledger_topic == "ledger"
    with pytest.raises(SettingsError, match="DLQ_REPLAYED_TOPIC"):
        load_settings({"DLQ_REPLAYED_TOPIC": "orders"})


def test_every_setting_has_a_type_the_loader_converts():
    from dataclasses import fields
    from typing import get_type_hints

    from orders.settings import _field_kind
    hints = get_type_hints(Settings)
    for field in fields(Settings):
        kind, _optional = _field_kind(hints[field.name])
        assert kind in (str, int, float, bool, Secret), f"{field.name}: {hints[field.name]}"


def test_an_optional_number_is_read_as_a_number_not_as_text():
    assert load_settings({"FAILURE_SEED": "42"}).failure_seed == 42
    with pytest.raises(SettingsError, match="FAILURE_SEED must be a whole number"):
        load_settings({"FAILURE_SEED": "forty-two"})
