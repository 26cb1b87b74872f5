"""A real Prometheus for the tests: Debian's `prometheus` on a free port, scraping workers every second with
the repository's alert rules."""
from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from .conftest import ROOT, free_port, wait_until

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "prometheus" / "alerts.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found on PATH: scripts/setup installs Debian's prometheus package"
    return path


class Prometheus:
    """A Prometheus server on a free port, scraping `targets` every second with the repository's rules."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "orders-app", "metrics_path": "/metrics",
                                "static_configs": [{"targets": targets}]}]}))
        self.log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 60, "Prometheus to be ready")
        # Scraped before anything happens, as in production: increase() needs a sample before the first event.
        wait_until(lambda: [s["value"][1] for s in self.query("up")] == ["1"] * len(targets), 30,
                   "a first successful scrape of every worker")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited with {self.proc.returncode}"
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def firing(self, alertname: str) -> list[dict]:
        """The alerts of that name firing now."""
        return [alert for alert in self.api("alerts")["alerts"]
                if alert["labels"]["alertname"] == alertname and alert["state"] == "firing"]
