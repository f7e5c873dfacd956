from django.db import migrations


def mark_graded(apps, schema_editor):
    """Threads graded before the flag existed: those with an evaluation, and their runs."""
    Evaluation = apps.get_model("outcomes", "Evaluation")
    Run = apps.get_model("runs", "Run")
    Thread = apps.get_model("runs", "Thread")
    graded = Evaluation.objects.filter(thread__isnull=False)
    Thread.objects.filter(pk__in=graded.values("thread_id")).update(is_graded=True)
    Run.objects.filter(pk__in=graded.values("thread__run_id")).update(has_graded_threads=True)


class Migration(migrations.Migration):
    dependencies = [
        ("outcomes", "0003_evaluation_thread"),
        ("runs", "0005_engine_flags"),
    ]

    operations = [migrations.RunPython(mark_graded, migrations.RunPython.noop)]
