from django.conf import settings
from django.db import migrations

SWEEPER_NAME = "agentops: sweep run steps"


def create_sweeper(apps, schema_editor):
    # The periodic sweeper is a row for django-celery-beat, so admins can see and tune it.
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule, _ = IntervalSchedule.objects.get_or_create(
        every=settings.AGENTOPS_SWEEP_INTERVAL_S, period="seconds"
    )
    PeriodicTask.objects.get_or_create(
        name=SWEEPER_NAME,
        defaults={"task": "agentops.runs.steps_sweep", "interval": schedule},
    )


def remove_sweeper(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SWEEPER_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_sweeper, remove_sweeper)]
