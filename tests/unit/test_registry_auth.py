"""Registry basic auth, against a small local HTTP server that demands it."""
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from avro_codec import RegistryUnavailable, SchemaCache

USER, PASSWORD = "reader", "s3cret-pw"


class BasicAuthRegistry(BaseHTTPRequestHandler):
    def do_GET(self):
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps([]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def registry_url():
    server = HTTPServer(("127.0.0.1", 0), BasicAuthRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_credentials_are_sent_to_the_registry(registry_url):
    assert SchemaCache(registry_url, auth=(USER, PASSWORD)).base_url == registry_url


def test_refused_credentials_say_so_without_the_password(registry_url):
    with pytest.raises(RegistryUnavailable) as raised:
        SchemaCache(registry_url, auth=(USER, "wrong-pw")).connect()
    assert "refused the credentials" in str(raised.value)
    assert "wrong-pw" not in str(raised.value)
