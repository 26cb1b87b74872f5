"""Where the tests find Kafka and the schema registry, and how the local stack is started for them.

Defaults point at `scripts/stack` on this machine. Set these to run the suite
against Kafka and a registry elsewhere (Docker on other ports, a remote
cluster); the session then leaves the local stack alone:

- TEST_KAFKA_BOOTSTRAP_SERVERS: a PLAINTEXT listener
- TEST_SCHEMA_REGISTRY_URL: Confluent's root URL or Apicurio's
- TEST_KAFKA_SASL_BOOTSTRAP_SERVERS, TEST_KAFKA_SASL_USERNAME, TEST_KAFKA_SASL_PASSWORD: a SASL_PLAINTEXT
  listener that takes SCRAM-SHA-512 and PLAIN for that user
- TEST_KAFKA_SSL_BOOTSTRAP_SERVERS, TEST_KAFKA_SSL_CAFILE: a SASL_SSL listener (same user) and the CA
  file that verifies its certificate
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "scripts" / "stack"

LOCAL_BOOTSTRAP = "127.0.0.1:9092"
LOCAL_REGISTRY_URL = "http://127.0.0.1:8081"
BOOTSTRAP = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS", LOCAL_BOOTSTRAP)
REGISTRY_URL = os.environ.get("TEST_SCHEMA_REGISTRY_URL", LOCAL_REGISTRY_URL)
SASL_BOOTSTRAP = os.environ.get("TEST_KAFKA_SASL_BOOTSTRAP_SERVERS", "127.0.0.1:9094")
SASL_USERNAME = os.environ.get("TEST_KAFKA_SASL_USERNAME", "orders")
SASL_PASSWORD = os.environ.get("TEST_KAFKA_SASL_PASSWORD", "orders-secret")
SSL_BOOTSTRAP = os.environ.get("TEST_KAFKA_SSL_BOOTSTRAP_SERVERS", "127.0.0.1:9095")
SSL_CAFILE = os.environ.get("TEST_KAFKA_SSL_CAFILE", str(ROOT / ".stack" / "tls" / "ca.pem"))
#: The tests use the local stack, which they may start, stop and restart (outage tests).
USES_LOCAL_STACK = (BOOTSTRAP, REGISTRY_URL) == (LOCAL_BOOTSTRAP, LOCAL_REGISTRY_URL)


#: The three-broker cluster `scripts/stack --brokers 3 up` starts (its node N at 9192 + 100 * (N - 1)).
CLUSTER_NODES = {1: "127.0.0.1:9192", 2: "127.0.0.1:9292", 3: "127.0.0.1:9392"}
CLUSTER_BOOTSTRAP = ",".join(CLUSTER_NODES.values())


def stack_command(*args: str, timeout_s: float = 300, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STACK), *args], timeout=timeout_s, capture_output=capture,
                          text=capture)


def local_stack_running() -> bool:
    return subprocess.run([sys.executable, str(STACK), "status"], capture_output=True).returncode == 0
