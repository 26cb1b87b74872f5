"""The Kubernetes example (deploy/kubernetes/orders-worker.yaml) and the image it runs use the app's own port,
settings and probe paths (nothing here can run Kubernetes or Docker)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from orders.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "orders-worker.yaml").read_text()))
STATEFUL_SET = next(doc for doc in DOCS if doc["kind"] == "StatefulSet")
SERVICE = next(doc for doc in DOCS if doc["kind"] == "Service")
(CONTAINER,) = STATEFUL_SET["spec"]["template"]["spec"]["containers"]
DOCKERFILE = (ROOT / "docker" / "app" / "Dockerfile").read_text()
PAGES = (ROOT / "orders" / "web" / "pages.py").read_text()
#: What bench memory measured for one worker draining 1,000,000 orders (README, Performance).
MEASURED_PEAK_MIB = 157


def env() -> dict[str, dict]:
    return {item["name"]: item for item in CONTAINER["env"]}


def test_the_port_is_the_web_port_the_worker_is_started_with_and_the_service_exposes():
    (port,) = CONTAINER["ports"]
    args = CONTAINER["args"]
    assert args[:1] == ["worker"] and args[args.index("--web-port") + 1] == str(port["containerPort"]) == "6066"
    assert SERVICE["spec"]["clusterIP"] == "None" and SERVICE["spec"]["ports"][0]["targetPort"] == port["name"]
    assert STATEFUL_SET["spec"]["serviceName"] == SERVICE["metadata"]["name"]
    assert 'ENTRYPOINT ["faust", "--datadir", "/var/lib/orders", "-A", "app"]' in DOCKERFILE
    assert "EXPOSE 6066" in DOCKERFILE


def test_every_variable_is_a_setting_and_the_worker_id_is_the_pods_name():
    settings = {field.name.upper() for field in dataclasses.fields(Settings)}
    assert set(env()) <= settings, set(env()) - settings
    assert env()["WORKER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env()["WEB_BIND"]["value"] == "0.0.0.0"
    assert env()["WEB_HOST"]["value"] == f"$(WORKER_ID).{SERVICE['metadata']['name']}"


def test_the_probes_are_the_apps_pages():
    paths = {CONTAINER[probe]["httpGet"]["path"] for probe in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert paths == {"/healthz", "/readyz"}
    assert CONTAINER["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness asks no other service"
    for path in paths:
        assert re.search(rf'@app\.page\("{re.escape(path)}"\)', PAGES), f"{path} is not a page of the app"


def test_the_memory_limit_leaves_room_above_the_measured_peak():
    limit = CONTAINER["resources"]["limits"]["memory"]
    assert limit.endswith("Mi") and int(limit[:-2]) >= 2 * MEASURED_PEAK_MIB
    for folder in ("agents", "avro_codec", "orders", "schemas"):
        assert f"COPY {folder} {folder}/" in DOCKERFILE
