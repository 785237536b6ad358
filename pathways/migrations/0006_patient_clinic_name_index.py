"""An index for a clinic's patients by name and MRN (patient list, dashboard search)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pathways", "0005_followup_open_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="patient",
            index=models.Index(fields=["clinic", "name", "mrn"], name="patient_clinic_name_idx"),
        ),
    ]
