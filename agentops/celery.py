import os
import sys

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.settings")

app = Celery("agentops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def celery_command(*arguments):
    """The command line of a `celery -A agentops ...` subprocess run by this interpreter
    (`serve`'s worker and beat, the benchmarks' and process tests' workers)."""
    return [sys.executable, "-m", "celery", "-A", "agentops", *arguments]
