"""A reverse proxy in front of the real schema registry that can behave like a load balancer with no
healthy backend: while `failing`, it answers schema look-ups by id with `502 Bad Gateway` and an HTML page
(as nginx or an AWS load balancer do); everything else is forwarded as is."""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .conftest import free_port

BAD_GATEWAY_PAGE = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
                    b"</body>\r\n</html>\r\n")


class RegistryProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._failing_until = 0.0
        #: 502 pages still owed past `_failing_until` (see `fail_for`)
        self._owed = 0
        self.bad_gateways = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                if "/schemas/ids/" in self.path and (time.monotonic() < proxy._failing_until or proxy._owed > 0):
                    proxy.bad_gateways += 1
                    proxy._owed = max(0, proxy._owed - 1)
                    self.send_response(502)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(BAD_GATEWAY_PAGE)))
                    self.end_headers()
                    self.wfile.write(BAD_GATEWAY_PAGE)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command,
                                                 headers={k: v for k, v in self.headers.items()
                                                          if k.lower() not in ("host", "content-length")})
                try:
                    with urllib.request.urlopen(request, timeout=30) as resp:
                        status, headers, payload = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as exc:
                    status, headers, payload = exc.code, exc.headers, exc.read()
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail_for(self, seconds: float, at_least: int = 0) -> None:
        """Answer look-ups by id with a 502 page for the next `seconds`, and past them until `at_least` pages
        have been served since this call (an outage that lasts until a client has met it)."""
        self._failing_until = time.monotonic() + seconds
        self._owed = at_least

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
