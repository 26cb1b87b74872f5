"""SASL over TLS: the worker, `produce-orders` and `faust send` work with the CA that signed the broker's
certificate, and a client that trusts another CA stops at once with a message that says so."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from orders.startup import EXIT_CANNOT_START
from tests.stack import SASL_PASSWORD, SASL_USERNAME, SSL_BOOTSTRAP, SSL_CAFILE

from .conftest import FAUST, ROOT, app_env, free_port, wait_for_topics


def over_tls(cafile: str) -> dict:
    return dict(KAFKA_BOOTSTRAP_SERVERS=SSL_BOOTSTRAP, KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                KAFKA_SASL_MECHANISM="SCRAM-SHA-512", KAFKA_SASL_USERNAME=SASL_USERNAME,
                KAFKA_SASL_PASSWORD=SASL_PASSWORD, KAFKA_SSL_CAFILE=cafile)


def run_cli(names, env: dict, *args: str, datadir=None) -> subprocess.CompletedProcess:
    command = [str(FAUST), *(["--datadir", str(datadir)] if datadir else []), "-A", "app", *args]
    return subprocess.run(command, cwd=ROOT, env=app_env(names, **env), capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> str:
    """A CA that did not sign the broker's certificate, made with openssl as an operator would."""
    folder = tmp_path_factory.mktemp("other-ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=some other CA", "-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.pem")],
                   check=True, capture_output=True)
    return str(folder / "ca.pem")


def test_worker_producer_and_send_work_over_sasl_ssl(names, start_worker):
    worker = start_worker(**over_tls(SSL_CAFILE))
    wait_for_topics(names.orders)
    produced = run_cli(names, over_tls(SSL_CAFILE), "produce-orders", "--count", "5", "--interval", "0")
    assert produced.returncode == 0, produced.stderr[-2000:]
    assert "sent 5 of 5 orders" in produced.stdout + produced.stderr
    sent = run_cli(names, over_tls(SSL_CAFILE), "send", names.orders,
                   json.dumps({"orderId": "tls-1", "product": "Vault", "price": 12.5}))
    assert sent.returncode == 0, sent.stderr[-2000:]
    worker.wait_for(lambda s: s["orders"] == 6, 60, "the orders sent over TLS counted")


@pytest.mark.parametrize("command", [["worker", "-l", "info", "--web-port", "0"], ["produce-orders", "--count", "1"]])
def test_a_ca_that_did_not_sign_the_brokers_certificate_fails_fast_with_a_clear_message(
        names, other_ca, tmp_path, command):
    if command[0] == "worker":
        command[-1] = str(free_port())
    started = time.monotonic()
    result = run_cli(names, {**over_tls(other_ca), "STARTUP_TIMEOUT_SECONDS": 60}, *command, datadir=tmp_path)
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_CANNOT_START, output[-2000:]
    assert took < 20, f"gave up after {took:.0f}s, not at once"
    assert f"the TLS handshake with Kafka at {SSL_BOOTSTRAP} failed" in output, output[-2000:]
    assert "certificate verify failed" in output and f"KAFKA_SSL_CAFILE={other_ca}" in output, output[-2000:]
