import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

from agentops.celery import celery_command


class Command(BaseCommand):
    help = "Run the web server, a Celery worker and beat in the foreground; Ctrl-C stops all three."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args, addr, **options):
        commands = {
            "web": [sys.executable, "manage.py", "runserver", addr, "--noreload"],
            "worker": celery_command("worker", "--pool", "threads", "--loglevel", "INFO"),
            "beat": celery_command("beat", "--loglevel", "INFO"),
        }
        children = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
        self.stdout.write(
            self.style.SUCCESS(
                f"\nagentops is running at http://{addr}/\n"
                "Demo login: alice / demo (owner) or bob / demo (reviewer). Ctrl-C stops it.\n"
            )
        )
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with code {child.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        self._stop_all(children)

    def _stop_all(self, children):
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.stdout.write("agentops stopped.")
