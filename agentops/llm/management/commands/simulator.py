import time

from django.core.management.base import BaseCommand, CommandError

from agentops.llm.simulator.faults import FAULT_NAMES
from agentops.llm.simulator.ratelimit import DEFAULT_ITPM, DEFAULT_OTPM, DEFAULT_RPM
from agentops.llm.simulator.server import start_simulator_server


class Command(BaseCommand):
    help = (
        "Serve the offline Messages API simulator on loopback until Ctrl-C. Point the SDK at "
        "it with ANTHROPIC_BASE_URL=http://HOST:PORT."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
        parser.add_argument("--latency-ms", type=float, default=0)
        parser.add_argument("--jitter-ms", type=float, default=0)
        parser.add_argument("--rpm", type=int, default=DEFAULT_RPM, help="0 turns it off")
        parser.add_argument("--itpm", type=int, default=DEFAULT_ITPM, help="0 turns it off")
        parser.add_argument("--otpm", type=int, default=DEFAULT_OTPM, help="0 turns it off")
        parser.add_argument("--fault-rate", type=float, default=0.0, help="0.0 to 1.0")
        parser.add_argument(
            "--faults",
            default=",".join(FAULT_NAMES),
            help=f"comma-separated, from: {','.join(FAULT_NAMES)}",
        )
        parser.add_argument("--hang-seconds", type=float, default=30.0)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--duration", type=float, default=0, help="stop after this many seconds (0: never)"
        )

    def handle(self, *args, **options):
        try:
            server = start_simulator_server(
                host=options["host"],
                port=options["port"],
                seed=options["seed"],
                latency_ms=options["latency_ms"],
                jitter_ms=options["jitter_ms"],
                rpm=options["rpm"],
                itpm=options["itpm"],
                otpm=options["otpm"],
                fault_rate=options["fault_rate"],
                faults=tuple(options["faults"].split(",")),
                hang_seconds=options["hang_seconds"],
            )
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Simulator listening on {server.url} (seed {options['seed']})")
        self.stdout.write(f"Stats: GET {server.url}/_stats  reset: POST {server.url}/_stats/reset")
        deadline = time.monotonic() + options["duration"] if options["duration"] else None
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            self.stdout.write("Stopping.")
        finally:
            server.stop()
