"""Real processes for the crash-recovery tests, the browser journey and the benchmark: a
Celery worker subprocess on the test database, and a redis-server of our own."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from agentops.llm.benchmarks import celery_worker_command

ROOT = Path(__file__).resolve().parents[2]


def database_url():
    """The URL of the database this process uses (the test database under pytest)."""
    db = connection.settings_dict
    auth = db["USER"] or ""
    if db["PASSWORD"]:
        auth += f":{db['PASSWORD']}"
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{auth}@{host}/{db['NAME']}"


# Worker subprocesses share the test database and the broker: PostgreSQL and Redis only.
needs_postgres_and_redis = pytest.mark.skipif(
    settings.EMBEDDED or not settings.REDIS_URL,
    reason="real-process tests need DATABASE_URL (PostgreSQL) and REDIS_URL",
)


def worker_env(*, redis_url, model_base_url=None, **extra):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "agentops.settings",
        "AGENTOPS_RATE_DEFAULT_RPM": "1000000",
        "AGENTOPS_RATE_DEFAULT_ITPM": "1000000000",
        "AGENTOPS_RATE_DEFAULT_OTPM": "1000000000",
        "AGENTOPS_LOG_LEVEL": "INFO",
    }
    env.pop("CELERY_BROKER_URL", None)
    if model_base_url:
        env["ANTHROPIC_BASE_URL"] = model_base_url
        env["ANTHROPIC_API_KEY"] = "sim"  # a key that stands for the simulator server
    else:
        env.pop("ANTHROPIC_BASE_URL", None)
        env.pop("ANTHROPIC_API_KEY", None)
    env.update({key: str(value) for key, value in extra.items()})
    return env


class Worker:
    """`celery worker` (threads pool), optionally with embedded beat for the sweeper."""

    def __init__(self, env, *, name, queue, beat=False, concurrency=4):
        self.env = {**env, "AGENTOPS_CELERY_QUEUE": queue}
        self.restarts = 0
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the process
            prefix=f"agentops-{name}-", suffix=".log", delete=False
        )
        self.command = command = celery_worker_command(
            name=name, concurrency=concurrency, queue=queue, loglevel="INFO"
        )
        if beat:
            command += ["-B", "--schedule", str(Path(tempfile.gettempdir()) / f"{name}-beat")]
        self._spawn()

    def _spawn(self):
        # Its own process group: embedded beat is a child process, and a kill takes both.
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def supervise(self):
        """Start the worker again if it exited, as a process manager's restart policy does
        (docker-compose `restart: unless-stopped`, systemd `Restart=always`)."""
        if self.process.poll() is not None:
            self._signal_group(signal.SIGKILL)
            self.restarts += 1
            self._spawn()

    def _signal_group(self, signum):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self):
        """SIGKILL the worker and its children: no warm shutdown, no ack, no cleanup."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        # Whatever is left of the group (a beat child) goes too.
        self._signal_group(signal.SIGKILL)
        self.log.close()

    def output(self):
        return Path(self.log.name).read_text(errors="replace")[-6000:]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A throwaway redis-server without persistence: a restart loses every message."""

    def __init__(self, port):
        self.port = port
        self.process = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self):
        self.stop()
        self.start()


def wait_for(predicate, *, timeout, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def broker_url():
    return settings.CELERY_BROKER_URL
