"""docker-compose.yml cannot be run here (no Docker engine), so it is checked against what is run:
scripts/stack's broker properties, its SASL user, the app's defaults and the monitoring files."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from orders.settings import Settings
from tests import stack as test_stack

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
#: Listeners of scripts/stack without a compose counterpart, and why (the compose file says so too).
STACK_ONLY_LISTENERS = {"SASL_SSL": "its CA and broker certificate are generated per clone by scripts/stack"}
#: Broker properties both must set alike.
SHARED_PROPERTIES = (
    "auto.create.topics.enable", "message.max.bytes", "num.partitions", "offsets.topic.replication.factor",
    "offsets.topic.num.partitions", "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor", "share.coordinator.state.topic.min.isr",
    "group.initial.rebalance.delay.ms", "sasl.enabled.mechanisms", "controller.listener.names",
)


def load_stack_script():
    loader = importlib.machinery.SourceFileLoader("stack_script", str(ROOT / "scripts" / "stack"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("stack_script", loader))
    loader.exec_module(module)
    return module


STACK = load_stack_script()


def stack_properties() -> dict[str, str]:
    return dict(line.split("=", 1) for line in STACK.broker_properties().splitlines() if "=" in line)


def compose_properties(service: str = "kafka") -> dict[str, str]:
    """A kafka service's KAFKA_* variables as the apache/kafka image turns them into properties."""
    env = SERVICES[service]["environment"]
    return {key[len("KAFKA_"):].lower().replace("_", "."): str(value) for key, value in env.items()
            if key.startswith("KAFKA_") and key != "KAFKA_OPTS"}


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """'NAME://host:port,...' -> {NAME: (host, port)}."""
    found = {}
    for item in value.split(","):
        name, address = item.split("://")
        host, port = address.rsplit(":", 1)
        found[name] = (host, int(port))
    return found


def protocols(value: str) -> dict[str, str]:
    return dict(item.split(":") for item in value.split(","))


def published(service: str) -> set[int]:
    return {int(str(mapping).split(":")[0]) for mapping in SERVICES[service].get("ports", [])}


def mounts(service: str) -> dict[str, Path]:
    """Container path -> repository path of the service's bind mounts."""
    found = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def test_the_brokers_host_listeners_match_scripts_stack_except_the_tls_one():
    stack, compose = stack_properties(), compose_properties()
    stack_advertised = listeners(stack["advertised.listeners"])
    compose_advertised = listeners(compose["advertised.listeners"])
    stack_map, compose_map = protocols(stack["listener.security.protocol.map"]), protocols(
        compose["listener.security.protocol.map"])
    for name, (_host, port) in stack_advertised.items():
        if name in STACK_ONLY_LISTENERS:
            assert name not in compose_advertised
            continue
        assert name in compose_advertised, f"listener {name} of scripts/stack is missing from docker-compose.yml"
        host, compose_port = compose_advertised[name]
        assert (host, compose_port) == ("localhost", port), f"{name}: {host}:{compose_port}, stack port {port}"
        assert compose_map[name] == stack_map[name], name
        assert port in published("kafka"), f"port {port} ({name}) is not published"


@pytest.mark.parametrize("key", SHARED_PROPERTIES)
def test_the_broker_settings_match_scripts_stack(key):
    assert compose_properties()[key] == stack_properties()[key]


def test_the_sasl_user_is_scripts_stacks_for_plain_and_scram():
    jaas_mount = shlex.split(SERVICES["kafka"]["environment"]["KAFKA_OPTS"])[0].split("=", 1)[1]
    jaas = mounts("kafka")[jaas_mount].read_text()
    assert f'user_{STACK.SASL_USER}="{STACK.SASL_PASSWORD}"' in jaas and "ScramLoginModule" in jaas
    setup = " ".join(SERVICES["kafka-setup"]["command"])
    assert f"--entity-name {STACK.SASL_USER}" in setup
    assert f"SCRAM-SHA-512=[iterations=4096,password={STACK.SASL_PASSWORD}]" in setup
    assert (test_stack.SASL_USERNAME, test_stack.SASL_PASSWORD) == (STACK.SASL_USER, STACK.SASL_PASSWORD)


def test_the_apps_and_the_tests_defaults_reach_both_stacks():
    defaults = Settings()
    plaintext = listeners(compose_properties()["advertised.listeners"])["PLAINTEXT"]
    assert defaults.kafka_bootstrap_servers == f"{plaintext[0]}:{plaintext[1]}"
    assert int(defaults.kafka_bootstrap_servers.rsplit(":", 1)[1]) == STACK.BROKER_PORT
    assert int(test_stack.SASL_BOOTSTRAP.rsplit(":", 1)[1]) == STACK.SASL_PORT
    assert int(test_stack.SSL_BOOTSTRAP.rsplit(":", 1)[1]) == STACK.SSL_PORT
    registry = urlsplit(defaults.schema_registry_url)
    assert registry.port == STACK.REGISTRY_PORT and registry.port in published("schema-registry")
    # Confluent's registry serves the API at the root; Apicurio's under /apis/ccompat/v7, which the app finds.
    assert registry.path in ("", "/") and urlsplit(STACK.REGISTRY_API).path == "/apis/ccompat/v7"
    assert SERVICES["schema-registry"]["environment"]["SCHEMA_REGISTRY_SCHEMA_COMPATIBILITY_LEVEL"].upper() == \
        STACK.registry_env("")["APICURIO_RULES_GLOBAL_COMPATIBILITY"]


def test_prometheus_loads_the_repositorys_rules_and_scrapes_the_workers_web_port():
    config_mounts = mounts("prometheus")
    config = yaml.safe_load(config_mounts["/etc/prometheus/prometheus.yml"].read_text())
    for rule_file in config["rule_files"]:
        assert config_mounts[rule_file] == ROOT / "monitoring" / "prometheus" / "alerts.yml"
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "orders-app" and job["metrics_path"] == "/metrics"
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    assert targets and all(target.endswith(":6066") for target in targets), "Faust's default web port"
    assert "host.docker.internal:host-gateway" in SERVICES["prometheus"]["extra_hosts"]
    alerts = (ROOT / "monitoring" / "prometheus" / "alerts.yml").read_text()
    assert 'job="orders-app"' in alerts, "the rules name the job the configuration scrapes"


def test_the_prometheus_image_is_the_release_the_rules_were_tested_with():
    tag = SERVICES["prometheus"]["image"].split(":")[1]
    tested = re.search(r"Debian's prometheus (\d+\.\d+\.\d+)", (ROOT / "docker-compose.yml").read_text())
    assert tested and tag == f"v{tested.group(1)}"
    install = (ROOT / "scripts" / "install-tools").read_text()
    assert "prometheus" in install


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboard():
    grafana = mounts("grafana")
    datasources = yaml.safe_load((grafana["/etc/grafana/provisioning/datasources"] / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus" and url.port in published("prometheus")
    providers = yaml.safe_load((grafana["/etc/grafana/provisioning/dashboards"] / "orders.yml").read_text())
    (provider,) = providers["providers"]
    dashboards = grafana[provider["options"]["path"]]
    dashboard = json.loads((dashboards / "orders.json").read_text())
    used = {target.get("datasource", panel["datasource"])["uid"]
            for panel in dashboard["panels"] for target in panel["targets"]}
    assert used == {source["uid"]}, "every panel queries the provisioned datasource"
    assert grafana[str(Path(SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]).parent)] \
        == dashboards


#: Broker properties the three-broker cluster (scripts/stack --brokers 3, compose profile `cluster`) sets alike.
CLUSTER_PROPERTIES = (
    "auto.create.topics.enable", "message.max.bytes", "num.partitions", "default.replication.factor",
    "min.insync.replicas", "offsets.topic.replication.factor", "offsets.topic.num.partitions",
    "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor", "share.coordinator.state.topic.min.isr",
    "group.initial.rebalance.delay.ms", "controller.listener.names", "process.roles", "node.id",
)


@pytest.mark.parametrize("node", range(1, STACK.CLUSTER_NODES + 1))
def test_the_cluster_profile_matches_scripts_stacks_cluster(node):
    stack = dict(line.split("=", 1) for line in STACK.cluster_node_properties(node).splitlines() if "=" in line)
    service = f"kafka-{node}"
    compose = compose_properties(service)
    assert SERVICES[service]["profiles"] == ["cluster"], "the cluster is an option, not the default"
    for key in CLUSTER_PROPERTIES:
        assert compose[key] == stack[key], f"{service}: {key}"
    port = STACK.cluster_port(node)
    assert listeners(compose["advertised.listeners"])["PLAINTEXT"] == ("localhost", port)
    assert listeners(stack["advertised.listeners"])["PLAINTEXT"][1] == port and port in published(service)
    assert len(compose["controller.quorum.voters"].split(",")) == len(stack["controller.quorum.voters"].split(","))
    assert test_stack.CLUSTER_NODES[node] == f"127.0.0.1:{port}", "the tests find the node where the stack puts it"
