import json
import sys
from importlib import import_module
from importlib.util import find_spec

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from agentops.llm.benchmarks import REGISTRY


def discover():
    for app_config in apps.get_app_configs():
        module = f"{app_config.name}.bench"
        if app_config.name.startswith("agentops.") and find_spec(module):
            import_module(module)
    return REGISTRY


class Command(BaseCommand):
    help = "Run a registered benchmark (or `all`) and print its figures; --json for one object."

    def add_arguments(self, parser):
        registry = discover()
        parser.add_argument("name", help=f"one of: all, {', '.join(sorted(registry))}")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        seen = set()
        for benchmark in registry.values():
            for flag, kwargs in benchmark.arguments:
                if flag not in seen:
                    seen.add(flag)
                    parser.add_argument(flag, **kwargs)

    def handle(self, *args, name, **options):
        registry = discover()
        if name != "all" and name not in registry:
            raise CommandError(
                f"no benchmark {name!r}; choose from all, {', '.join(sorted(registry))}"
            )
        chosen = sorted(registry) if name == "all" else [name]

        def log(message):
            if options["verbosity"] > 0:
                sys.stderr.write(f"[bench] {message}\n")
                sys.stderr.flush()

        results = {}
        for bench_name in chosen:
            log(f"{bench_name}: starting")
            results[bench_name] = registry[bench_name].run(options, log)
        output = results if name == "all" else results[name]
        if options["json"]:
            self.stdout.write(json.dumps(output, sort_keys=True))
            return
        for bench_name, result in results.items():
            self.stdout.write(self.style.MIGRATE_HEADING(bench_name))
            for key, value in result.items():
                self.stdout.write(f"  {key}: {value}")
