"""The dashboard's indexes over open follow-ups, once 0004 has filled in the clinic."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pathways", "0004_followup_dashboard_copies"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="followup",
            name="clinic",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="pathways.clinic"
            ),
        ),
        migrations.AddIndex(
            model_name="followup",
            index=models.Index(
                condition=models.Q(("completed_at__isnull", True)),
                fields=["clinic", "due"],
                name="followup_open_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="followup",
            index=models.Index(
                condition=models.Q(("completed_at__isnull", True)),
                fields=["clinic", "pathway", "due"],
                name="followup_open_pathway_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="followup",
            index=models.Index(
                condition=models.Q(("completed_at__isnull", True)),
                fields=["clinic", "top_priority_rank", "due"],
                name="followup_open_priority_idx",
            ),
        ),
    ]
