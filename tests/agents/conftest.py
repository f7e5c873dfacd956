"""A local HTTP server that plays the outside world for http_fetch and webhook tools."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from agentops.agents.models import HostAllowlistEntry
from agentops.agents.services import agent_create

from .helpers import WEBHOOK_SECRET


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status, body, content_type="text/plain; charset=utf-8", headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.server.requests.append(("GET", self.path, dict(self.headers), b""))
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/hello":
            self._send(200, "hello from the test server")
        elif parts.path == "/host":
            self._send(200, f"host={self.headers.get('Host')}")
        elif parts.path == "/missing":
            self._send(404, "no such page")
        elif parts.path == "/image":
            self._send(200, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "image/png")
        elif parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path == "/big":
            # 1 MB without a Content-Length, so only the reader's limit stops it.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                for _ in range(1024):
                    self.wfile.write(b"x" * 1024)
                    self.server.big_chunks_sent += 1
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif parts.path == "/slow":
            self.server.release.wait(10)
            self._send(200, "too late")
        elif parts.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"d")
                    self.wfile.flush()
                    if self.server.release.wait(0.1):
                        break
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self._send(404, "unknown test route")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append(("POST", self.path, dict(self.headers), body))
        if self.path == "/webhook":
            timestamp = self.headers.get("X-Agentops-Timestamp", "")
            expected = (
                "sha256="
                + hmac.new(
                    WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
                ).hexdigest()
            )
            if not hmac.compare_digest(expected, self.headers.get("X-Agentops-Signature", "")):
                self._send(401, "bad signature")
                return
            payload = json.loads(body)
            self._send(200, json.dumps({"order": payload.get("order_id"), "status": "shipped"}))
        elif self.path == "/webhook-redirect":
            self.send_response(307)
            self.send_header("Location", "/webhook")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/webhook-big":
            self._send(200, "z" * 100_000)
        elif self.path == "/webhook-500":
            self._send(500, "the order service is down")
        elif self.path == "/webhook-slow":
            self.server.release.wait(10)
            self._send(200, "too late")
        else:
            self._send(404, "unknown test route")


@pytest.fixture
def local_server():
    """Base URL of a server on 127.0.0.1; `.requests` lists what it received."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.requests = []
    server.big_chunks_sent = 0
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def allow_local(team_a):
    """Team A may reach 127.0.0.1, private address and all (what the local server needs)."""
    return HostAllowlistEntry.objects.create(team=team_a, host="127.0.0.1", allow_private=True)


@pytest.fixture
def make_agent(team_a, alice):
    def make(name="Helper", **overrides):
        values = {
            "name": name,
            "model": "claude-sonnet-4-5",
            "system_prompt": "You help.",
            "max_tokens": 1024,
        }
        values.update(overrides)
        return agent_create(team=team_a, actor=alice, **values)

    return make
