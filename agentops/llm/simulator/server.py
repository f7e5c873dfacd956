"""The simulator as a loopback HTTP server, with latency, rate limits and injected faults.

start_simulator_server() runs it in a background thread (tests, benchmarks);
`manage.py simulator` runs it until Ctrl-C. The server is stdlib ThreadingHTTPServer: one
thread per connection is plenty for a local stand-in and needs no dependency.
"""

import contextlib
import json
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from .app import JSON, STEP_HEADER, ApiResponse, SimulatorApp, Stats, new_request_id
from .faults import FAULT_NAMES, MALFORMED_BODY, Fault, error_body, scheduled_fault
from .ratelimit import DEFAULT_ITPM, DEFAULT_OTPM, DEFAULT_RPM, RateLimits

log = logging.getLogger(__name__)

LATENCY_HEADER = "x-simulator-latency-ms"


@dataclass(frozen=True)
class ServerOptions:
    seed: int = 0
    latency_ms: float = 0
    jitter_ms: float = 0
    rpm: int = DEFAULT_RPM
    itpm: int = DEFAULT_ITPM
    otpm: int = DEFAULT_OTPM
    fault_rate: float = 0.0
    faults: tuple = field(default=FAULT_NAMES)
    # A hung request is held this long (or until the server stops), then dropped.
    hang_seconds: float = 30.0

    def __post_init__(self):
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        faults = tuple(str(name).strip().lower() for name in self.faults if str(name).strip())
        for name in faults:
            Fault.from_name(name)  # raises ValueError for an unknown name
        object.__setattr__(self, "faults", faults)
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.hang_seconds < 0:
            raise ValueError("latency, jitter and hang time cannot be negative")


def latency_for(options: ServerOptions, index: int) -> float:
    """Milliseconds of delay for the index-th API request: fixed part plus seeded jitter."""
    jitter = 0.0
    if options.jitter_ms:
        jitter = random.Random(f"latency:{options.seed}:{index}").uniform(0, options.jitter_ms)
    return round(options.latency_ms + jitter, 3)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # The stdlib's listen backlog of 5 drops the SYNs of a burst of new connections (a
    # fan-out of 50 children connecting at once); the kernel retries them only after 1 s.
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agentops-simulator"
    timeout = 30  # idle keep-alive connections close after this many seconds
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and
    # delayed ACKs add ~40 ms to every answer.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        log.debug("simulator: " + format, *args)

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _send(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _dispatch(self) -> None:
        arrived = time.monotonic()
        sim: SimulatorServer = self.server.simulator
        parts = urlsplit(self.path)
        path, query = parts.path, dict(parse_qsl(parts.query))
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if path in ("/_stats", "/_stats/reset"):
            self._control(sim, path)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        step = headers.get(STEP_HEADER)
        index = sim._next_index()
        delay_ms = latency_for(sim.options, index)
        fault = scheduled_fault(
            seed=sim.options.seed,
            index=index,
            fault_rate=sim.options.fault_rate,
            faults=sim.options.faults,
        )
        base_headers = {"request-id": new_request_id(), LATENCY_HEADER: str(delay_ms)}
        if fault is not None:
            if delay_ms and sim._stopping.wait(delay_ms / 1000):
                self._drop()
                return
            sim.stats.record(path=path, step=step, status=fault.response_status, fault=fault.name)
            self._serve_fault(sim, fault, base_headers)
            return
        # The API checks its rate limits when a request arrives; the latency is the time it
        # then takes to answer. So the answer (and the admission) is decided first, and a
        # refusal goes back at once, as a real 429 does.
        try:
            answer = sim.app.handle(self.command, path, query, body, headers)
        except Exception as exc:
            # A simulator bug must look like a server error, not a silently closed socket.
            log.exception("simulator failed on %s %s", self.command, path)
            answer = ApiResponse(500, {"content-type": JSON}, error_body(500, f"simulator: {exc}"))
        # The latency is the time the answer takes from the request's arrival, so the time
        # the simulator itself spent composing it is part of it, as a real API's is.
        remaining_s = delay_ms / 1000 - (time.monotonic() - arrived)
        if answer.status != 429 and remaining_s > 0 and sim._stopping.wait(remaining_s):
            self._drop()
            return
        sim.stats.record(path=path, step=step, status=answer.status, fault=None)
        self._send(answer.status, {**answer.headers, **base_headers}, answer.body)

    def _serve_fault(self, sim, fault: Fault, headers: dict) -> None:
        if fault.kind == "hang":
            sim._stopping.wait(sim.options.hang_seconds)
            self._drop()
        elif fault.kind in ("drop", "connect"):
            self._drop()
        elif fault.kind == "malformed":
            self._send(200, {**headers, "content-type": JSON}, MALFORMED_BODY)
        else:
            if fault.status == 429:
                headers.update(sim.app.limiter.snapshot())
            self._send(fault.status, {**headers, **fault.headers()}, fault.body())

    def _control(self, sim, path: str) -> None:
        if path == "/_stats" and self.command == "GET":
            payload = sim.stats_snapshot()
        elif path == "/_stats/reset" and self.command == "POST":
            sim.reset_stats()
            payload = {"reset": True}
        else:
            self._send(405, {"content-type": JSON}, b'{"error": "method not allowed"}')
            return
        self._send(200, {"content-type": JSON}, json.dumps(payload).encode())


class SimulatorServer:
    """A running simulator server. Use as a context manager or call stop()."""

    def __init__(self, *, host: str, port: int, options: ServerOptions):
        self.options = options
        limits = RateLimits(rpm=options.rpm, itpm=options.itpm, otpm=options.otpm)
        self.app = SimulatorApp(seed=options.seed, limits=limits)
        self.stats = Stats()
        self._index = 0
        self._index_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.simulator = self
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _next_index(self) -> int:
        with self._index_lock:
            index = self._index
            self._index += 1
            return index

    def stats_snapshot(self) -> dict:
        return {**self.stats.as_dict(), "seed": self.options.seed}

    def reset_stats(self) -> None:
        """Zero the counts and restart the fault and latency schedule from request 0."""
        with self._index_lock:
            self._index = 0
            self.stats.reset()

    def stop(self) -> None:
        self._stopping.set()  # wakes hung requests and pending latency sleeps
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_simulator_server(host: str = "127.0.0.1", port: int = 0, **options) -> SimulatorServer:
    """Start the server in a background thread; port 0 picks a free port (see .url)."""
    return SimulatorServer(host=host, port=port, options=ServerOptions(**options))
