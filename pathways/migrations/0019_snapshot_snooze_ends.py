"""The worklist's copy of when a snooze ends, so a snoozed card returns to the worklist on its
date rather than at the next daily re-assessment."""

from django.db import migrations, models
from django.db.models import Min


def snooze_ends_fill(apps, schema_editor):
    """Each snapshot's earliest snooze not undone. A snooze that no longer holds (its case has
    changed since) only makes the worklist re-assess that patient once, which clears it."""
    CardAction = apps.get_model("pathways", "CardAction")
    AssessmentSnapshot = apps.get_model("pathways", "AssessmentSnapshot")
    ends = (
        CardAction.objects.filter(kind="snooze", undone_at__isnull=True, source="worklist")
        .values("patient_id")
        .annotate(first=Min("snooze_until"))
    )
    for row in ends:
        AssessmentSnapshot.objects.filter(patient_id=row["patient_id"]).update(
            snooze_ends=row["first"]
        )


class Migration(migrations.Migration):
    dependencies = [
        ("pathways", "0018_patient_responsible"),
    ]

    operations = [
        migrations.AddField(
            model_name="assessmentsnapshot",
            name="snooze_ends",
            field=models.DateField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="assessmentsnapshot",
            index=models.Index(
                condition=models.Q(("snooze_ends__isnull", False)),
                fields=["clinic", "snooze_ends"],
                name="snapshot_snooze_idx",
            ),
        ),
        migrations.RunPython(snooze_ends_fill, migrations.RunPython.noop),
    ]
