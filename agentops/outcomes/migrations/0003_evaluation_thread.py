import django.db.models.deletion
from django.db import migrations, models


def graded_threads(apps, schema_editor):
    """Evaluations of runs graded before threads could be graded grade the run's lead; its
    grader threads point at that lead."""
    Evaluation = apps.get_model("outcomes", "Evaluation")
    Thread = apps.get_model("runs", "Thread")
    for evaluation in Evaluation.objects.filter(run__isnull=False, thread__isnull=True):
        lead = (
            Thread.objects.filter(run_id=evaluation.run_id, parent__isnull=True, role="lead")
            .order_by("id")
            .first()
        )
        if lead is None:
            continue
        evaluation.thread = lead
        evaluation.save(update_fields=["thread"])
        Thread.objects.filter(run_id=evaluation.run_id, role="grader").update(graded_thread=lead)


class Migration(migrations.Migration):
    dependencies = [
        ("outcomes", "0002_evaluation_run"),
        ("runs", "0004_thread_graded_thread"),
    ]

    operations = [
        migrations.AddField(
            model_name="evaluation",
            name="thread",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="evaluation",
                to="runs.thread",
            ),
        ),
        migrations.RunPython(graded_threads, migrations.RunPython.noop),
    ]
