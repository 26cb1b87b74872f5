"""Headless Chromium driven through chromedriver's W3C WebDriver HTTP API, with the standard library only.

Debian's `chromium` and `chromium-driver` packages (installed by `scripts/setup`).
A missing browser fails the test that needs it: CI installs it, so a skip
would hide a broken install.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def _installed(command: str, package: str) -> str:
    found = shutil.which(command)
    if found is None:
        raise AssertionError(f"{command} not found on PATH: run scripts/setup (it installs Debian's {package})")
    return found


class WebDriverError(AssertionError):
    """chromedriver answered with an error (or not at all)."""


class Browser:
    """One chromedriver process and one headless browser session on it."""

    def __init__(self, port: int, log_path: Path, window: tuple[int, int] = (1280, 1000)) -> None:
        chromium = _installed("chromium", "chromium")
        chromedriver = _installed("chromedriver", "chromium-driver")
        self.base = f"http://127.0.0.1:{port}"
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([chromedriver, f"--port={port}"], stdout=self._log, stderr=subprocess.STDOUT)
        self.session = ""
        try:
            self._wait_ready()
            options = {"binary": chromium,
                       "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                f"--window-size={window[0]},{window[1]}"]}
            session = self._call("POST", "/session",
                                 {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})
            self.session = f"/session/{session['sessionId']}"
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WebDriverError(f"chromedriver exited with {self.proc.returncode}")
            try:
                if self._call("GET", "/status").get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            time.sleep(0.2)
        raise WebDriverError(f"chromedriver not ready within {timeout:.0f}s")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as exc:
            raise WebDriverError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None

    def open(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def run(self, script: str, *args: object) -> object:
        """Runs `script` (a function body; `return` gives the result) in the page."""
        return self._call("POST", f"{self.session}/execute/sync", {"script": script, "args": list(args)})

    def text_of(self, *element_ids: str) -> dict[str, str | None]:
        """The rendered text of each element, by id (None when the page has no such element)."""
        texts = self.run("return arguments[0].map(id => document.getElementById(id)?.textContent ?? null);",
                         list(element_ids))
        return dict(zip(element_ids, texts, strict=True))

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._call("GET", f"{self.session}/screenshot")))
        return path

    def close(self) -> None:
        try:
            if self.session:
                self._call("DELETE", self.session)
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
