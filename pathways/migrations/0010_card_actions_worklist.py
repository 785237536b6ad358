"""Card actions (acknowledge, override, snooze; worklist and CDS Hooks in one store), the
outcome of a follow-up marked done and the snapshot's worklist copies (backfilled from the
stored snapshots). The rule firing log comes with 0012."""

import django.db.models.deletion
import django.utils.timezone
import simple_history.models
from django.conf import settings
from django.db import migrations, models


def backfill_worklist_copies(apps, schema_editor):
    """Clinic and open follow-ups per snapshot; the highest card not acted on is the top card
    (no actions exist yet)."""
    snapshot_model = apps.get_model("pathways", "AssessmentSnapshot")
    follow_up_model = apps.get_model("pathways", "FollowUp")
    open_counts = dict(
        follow_up_model.objects.filter(completed_at__isnull=True)
        .values("patient_id")
        .annotate(n=models.Count("pk"))
        .values_list("patient_id", "n")
    )
    for snapshot in snapshot_model.objects.select_related("patient").iterator():
        snapshot.clinic_id = snapshot.patient.clinic_id
        snapshot.action_rank = snapshot.top_priority_rank
        snapshot.open_follow_ups = open_counts.get(snapshot.patient_id, 0)
        snapshot.save(update_fields=["clinic", "action_rank", "open_follow_ups"])


class Migration(migrations.Migration):
    dependencies = [
        ("pathways", "0009_case_declaration_choices"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="CardAction",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("code", models.CharField(max_length=60)),
                ("priority", models.CharField(blank=True, max_length=10)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("acknowledge", "Acknowledged"),
                            ("override", "Overridden"),
                            ("snooze", "Snoozed"),
                            ("accept", "Accepted"),
                        ],
                        max_length=12,
                    ),
                ),
                (
                    "reason",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("not-applicable", "Not applicable to this patient"),
                            ("patient-declined", "Patient declined"),
                            ("done-elsewhere", "Already done elsewhere"),
                            ("contraindicated", "Contraindicated for this patient"),
                            ("disagree-evidence", "Disagree with the evidence"),
                            ("other", "Other (free text required)"),
                        ],
                        max_length=30,
                    ),
                ),
                ("reason_text", models.TextField(blank=True, max_length=1000)),
                ("snooze_until", models.DateField(blank=True, null=True)),
                (
                    "source",
                    models.CharField(
                        choices=[("worklist", "Worklist"), ("cds", "CDS Hooks")],
                        default="worklist",
                        max_length=10,
                    ),
                ),
                ("rule_set_version", models.CharField(max_length=40)),
                ("case_digest", models.CharField(max_length=64)),
                ("card_digest", models.CharField(max_length=64)),
                ("at", models.DateTimeField(default=django.utils.timezone.now)),
                ("undone_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "ordering": ["-at", "-pk"],
            },
        ),
        migrations.CreateModel(
            name="HistoricalCardAction",
            fields=[
                (
                    "id",
                    models.BigIntegerField(
                        auto_created=True, blank=True, db_index=True, verbose_name="ID"
                    ),
                ),
                ("code", models.CharField(max_length=60)),
                ("priority", models.CharField(blank=True, max_length=10)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("acknowledge", "Acknowledged"),
                            ("override", "Overridden"),
                            ("snooze", "Snoozed"),
                            ("accept", "Accepted"),
                        ],
                        max_length=12,
                    ),
                ),
                (
                    "reason",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("not-applicable", "Not applicable to this patient"),
                            ("patient-declined", "Patient declined"),
                            ("done-elsewhere", "Already done elsewhere"),
                            ("contraindicated", "Contraindicated for this patient"),
                            ("disagree-evidence", "Disagree with the evidence"),
                            ("other", "Other (free text required)"),
                        ],
                        max_length=30,
                    ),
                ),
                ("reason_text", models.TextField(blank=True, max_length=1000)),
                ("snooze_until", models.DateField(blank=True, null=True)),
                (
                    "source",
                    models.CharField(
                        choices=[("worklist", "Worklist"), ("cds", "CDS Hooks")],
                        default="worklist",
                        max_length=10,
                    ),
                ),
                ("rule_set_version", models.CharField(max_length=40)),
                ("case_digest", models.CharField(max_length=64)),
                ("card_digest", models.CharField(max_length=64)),
                ("at", models.DateTimeField(default=django.utils.timezone.now)),
                ("undone_at", models.DateTimeField(blank=True, null=True)),
                ("history_id", models.AutoField(primary_key=True, serialize=False)),
                ("history_date", models.DateTimeField(db_index=True)),
                ("history_change_reason", models.CharField(max_length=100, null=True)),
                (
                    "history_type",
                    models.CharField(
                        choices=[("+", "Created"), ("~", "Changed"), ("-", "Deleted")], max_length=1
                    ),
                ),
            ],
            options={
                "verbose_name": "historical card action",
                "verbose_name_plural": "historical card actions",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.AddField(
            model_name="assessmentsnapshot",
            name="action_rank",
            field=models.PositiveSmallIntegerField(default=9),
        ),
        migrations.AddField(
            model_name="assessmentsnapshot",
            name="clinic",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="pathways.clinic",
            ),
        ),
        migrations.AddField(
            model_name="assessmentsnapshot",
            name="open_follow_ups",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="followup",
            name="done_on",
            field=models.DateField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="followup",
            name="note",
            field=models.TextField(blank=True, max_length=2000),
        ),
        migrations.AddField(
            model_name="followup",
            name="outcome",
            field=models.CharField(
                blank=True,
                choices=[
                    ("done", "Done as planned"),
                    ("done_elsewhere", "Done elsewhere"),
                    ("declined", "Patient declined"),
                    ("not_needed", "Not needed"),
                ],
                max_length=20,
            ),
        ),
        migrations.AddField(
            model_name="historicalfollowup",
            name="done_on",
            field=models.DateField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="historicalfollowup",
            name="note",
            field=models.TextField(blank=True, max_length=2000),
        ),
        migrations.AddField(
            model_name="historicalfollowup",
            name="outcome",
            field=models.CharField(
                blank=True,
                choices=[
                    ("done", "Done as planned"),
                    ("done_elsewhere", "Done elsewhere"),
                    ("declined", "Patient declined"),
                    ("not_needed", "Not needed"),
                ],
                max_length=20,
            ),
        ),
        migrations.AddIndex(
            model_name="assessmentsnapshot",
            index=models.Index(
                condition=models.Q(("action_rank__lte", 1), ("open_follow_ups", 0)),
                fields=["clinic", "action_rank", "patient"],
                name="snapshot_worklist_idx",
            ),
        ),
        migrations.AddField(
            model_name="cardaction",
            name="by",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="cardaction",
            name="clinic",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="pathways.clinic"
            ),
        ),
        migrations.AddField(
            model_name="cardaction",
            name="patient",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="card_actions",
                to="pathways.patient",
            ),
        ),
        migrations.AddField(
            model_name="cardaction",
            name="undone_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="historicalcardaction",
            name="by",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="historicalcardaction",
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
        migrations.AddField(
            model_name="historicalcardaction",
            name="history_user",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="historicalcardaction",
            name="patient",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="pathways.patient",
            ),
        ),
        migrations.AddField(
            model_name="historicalcardaction",
            name="undone_by",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="cardaction",
            index=models.Index(fields=["patient", "code", "at"], name="cardaction_patient_idx"),
        ),
        migrations.AddIndex(
            model_name="cardaction",
            index=models.Index(fields=["code", "at"], name="cardaction_code_idx"),
        ),
        migrations.RunPython(backfill_worklist_copies, migrations.RunPython.noop),
    ]
