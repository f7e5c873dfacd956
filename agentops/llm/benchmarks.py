"""A small registry for `manage.py bench NAME`.

Any app registers a benchmark in its own `bench.py` module (the command imports every
`agentops.<app>.bench`):

    from agentops.llm.benchmarks import register

    @register("fanout", help="...", arguments=[("--runs", {"type": int, "default": 20})])
    def bench_fanout(options, log):
        ...
        return {"runs": 20, ...}  # one JSON-safe dict

`options` holds every parsed command-line option; `log` writes progress to stderr.
"""

import os
from dataclasses import dataclass, field

from django.conf import settings

from agentops.celery import celery_command


@dataclass(frozen=True)
class Benchmark:
    name: str
    run: object
    help: str = ""
    arguments: list = field(default_factory=list)


REGISTRY: dict[str, Benchmark] = {}


def register(name, *, help="", arguments=()):  # noqa: A002 - argparse's word
    def decorator(function):
        REGISTRY[name] = Benchmark(name, function, help, list(arguments))
        return function

    return decorator


def worker_environment(**overrides):
    """The environment of a benchmark's Celery worker subprocess: this process's database
    and broker, settings as deployed (DJANGO_DEBUG=0, so no debug cursor logs every
    statement) with this process's keys (what it encrypted decrypts there), then
    `overrides`."""
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentops.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "localhost",
        "AGENTOPS_FERNET_KEY": settings.AGENTOPS_FERNET_KEY,
        "REDIS_URL": settings.REDIS_URL,
    }
    db = connection.settings_dict
    if db["ENGINE"].endswith("postgresql"):
        auth = db["USER"] or ""
        if db["PASSWORD"]:
            auth += f":{db['PASSWORD']}"
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        env["DATABASE_URL"] = f"postgres://{auth}@{host}/{db['NAME']}"
    return {**env, **overrides}


def celery_worker_command(*, name, concurrency, queue=None, loglevel="WARNING", extra=()):
    """The command line of a `celery worker` subprocess (threads pool, no gossip, mingle or
    heartbeat: nothing but the tasks) for benchmarks and process tests."""
    command = celery_command(
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        *extra,
    )
    if queue:
        command += ["-Q", queue]
    return [*command, "-n", f"{name}@%h"]
