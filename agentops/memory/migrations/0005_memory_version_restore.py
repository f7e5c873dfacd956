from django.db import migrations, models

RESTORE_NOTE = "Restored from retirement."  # memory_restore's note when none was given


def mark_restores(apps, schema_editor):
    # Restores used to be recorded as edits; the ones with the default note are certain.
    MemoryVersion = apps.get_model("memory", "MemoryVersion")
    MemoryVersion.objects.filter(operation="edit", note=RESTORE_NOTE).update(operation="restore")


def unmark_restores(apps, schema_editor):
    MemoryVersion = apps.get_model("memory", "MemoryVersion")
    MemoryVersion.objects.filter(operation="restore").update(operation="edit")


class Migration(migrations.Migration):
    dependencies = [
        ("memory", "0004_memory_plural_name"),
    ]

    operations = [
        migrations.AlterField(
            model_name="memoryversion",
            name="operation",
            field=models.CharField(
                choices=[
                    ("create", "Create"),
                    ("edit", "Edit"),
                    ("approve", "Approve"),
                    ("reject", "Reject"),
                    ("merge", "Merge"),
                    ("supersede", "Supersede"),
                    ("retire", "Retire"),
                    ("restore", "Restore"),
                    ("rollback", "Rollback"),
                ],
                max_length=12,
            ),
        ),
        migrations.RunPython(mark_restores, unmark_restores),
    ]
