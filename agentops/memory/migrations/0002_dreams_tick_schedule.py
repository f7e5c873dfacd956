from django.conf import settings
from django.db import migrations

TICK_NAME = "agentops: dreams tick (lost and scheduled dreams)"


def create_tick(apps, schema_editor):
    # A row for django-celery-beat, so admins can see and tune it.
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule, _ = IntervalSchedule.objects.get_or_create(
        every=settings.AGENTOPS_DREAM_TICK_S, period="seconds"
    )
    PeriodicTask.objects.get_or_create(
        name=TICK_NAME,
        defaults={"task": "agentops.memory.dreams_tick", "interval": schedule},
    )


def remove_tick(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TICK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("memory", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_tick, remove_tick)]
