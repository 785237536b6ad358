"""Copy each follow-up's clinic (from its patient) and its patient's dashboard pathway and top
priority (from the AssessmentSnapshot) onto the follow-up, for the dashboard's indexes (0005)."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_to_follow_ups(apps, schema_editor):
    FollowUp = apps.get_model("pathways", "FollowUp")
    Patient = apps.get_model("pathways", "Patient")
    AssessmentSnapshot = apps.get_model("pathways", "AssessmentSnapshot")

    def of_patient(model, column, key):
        return Subquery(model.objects.filter(**{key: OuterRef("patient_id")}).values(column)[:1])

    # Derived columns: QuerySet.update() (no history rows) is what is wanted here.
    FollowUp.objects.update(clinic_id=of_patient(Patient, "clinic_id", "pk"))
    snapshots = AssessmentSnapshot.objects.filter(patient_id=OuterRef("patient_id"))
    FollowUp.objects.filter(models.Exists(snapshots)).update(
        pathway=of_patient(AssessmentSnapshot, "pathway", "patient_id"),
        top_priority_rank=of_patient(AssessmentSnapshot, "top_priority_rank", "patient_id"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("pathways", "0003_followup_completed_by_result"),
    ]

    operations = [
        migrations.AddField(
            model_name="followup",
            name="clinic",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="pathways.clinic",
            ),
        ),
        migrations.AddField(
            model_name="followup",
            name="pathway",
            field=models.CharField(blank=True, max_length=10),
        ),
        migrations.AddField(
            model_name="followup",
            name="top_priority_rank",
            field=models.PositiveSmallIntegerField(default=9),
        ),
        migrations.AddField(
            model_name="historicalfollowup",
            name="clinic",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="pathways.clinic",
            ),
        ),
        migrations.RunPython(copy_to_follow_ups, migrations.RunPython.noop),
    ]
