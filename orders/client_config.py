"""One set of security settings, in the shape each Kafka client here wants it.

Faust (aiokafka underneath) takes a credentials object, confluent-kafka a
dict of librdkafka properties, and the benchmark's bare aiokafka consumer
keyword arguments. Passwords leave `Secret` only here, on their way into a client.
"""
from __future__ import annotations

import ssl
from typing import Any

import faust

from .settings import Settings


def ssl_context(s: Settings) -> ssl.SSLContext | None:
    if not s.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=s.kafka_ssl_cafile or None)
    if s.kafka_ssl_certfile:
        context.load_cert_chain(s.kafka_ssl_certfile, s.kafka_ssl_keyfile or None)
    return context


def faust_credentials(s: Settings) -> faust.types.auth.CredentialsT | None:
    if s.kafka_security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=s.kafka_sasl_username, password=s.kafka_sasl_password.value,
                                     mechanism=s.kafka_sasl_mechanism, ssl_context=ssl_context(s))
    if s.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(ssl_context(s))
    return None


def confluent_config(s: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": s.kafka_bootstrap_servers,
                              "security.protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol.startswith("SASL_"):
        config.update({"sasl.mechanism": s.kafka_sasl_mechanism, "sasl.username": s.kafka_sasl_username,
                       "sasl.password": s.kafka_sasl_password.value})
    if s.kafka_security_protocol.endswith("SSL"):
        config.update({key: value for key, value in (("ssl.ca.location", s.kafka_ssl_cafile),
                                                     ("ssl.certificate.location", s.kafka_ssl_certfile),
                                                     ("ssl.key.location", s.kafka_ssl_keyfile)) if value})
    return config


def aiokafka_config(s: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap_servers": s.kafka_bootstrap_servers,
                              "security_protocol": s.kafka_security_protocol, "ssl_context": ssl_context(s)}
    if s.kafka_security_protocol.startswith("SASL_"):
        config.update({"sasl_mechanism": s.kafka_sasl_mechanism, "sasl_plain_username": s.kafka_sasl_username,
                       "sasl_plain_password": s.kafka_sasl_password.value})
    return config


def registry_auth(s: Settings) -> tuple[str, str] | None:
    if s.schema_registry_password is None:
        return None
    return s.schema_registry_username, s.schema_registry_password.value
