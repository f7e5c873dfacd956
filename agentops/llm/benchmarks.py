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

from dataclasses import dataclass, field


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
