from django.db import migrations


def mark_workflow_runs(apps, schema_editor):
    """Runs of workflows started before the flag existed."""
    Run = apps.get_model("runs", "Run")
    WorkflowRun = apps.get_model("workflows", "WorkflowRun")
    Run.objects.filter(pk__in=WorkflowRun.objects.values("run_id")).update(in_workflow=True)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0005_engine_flags"),
        ("workflows", "0003_rubrics"),
    ]

    operations = [migrations.RunPython(mark_workflow_runs, migrations.RunPython.noop)]
