"""Choices and labels read from the case declaration (engine/declaration.py): lab tests and
units get labels and unit choices, diagnoses a validator. Values are unchanged, so every stored
row stays valid; no column changes."""

from django.db import migrations, models

import pathways.models


class Migration(migrations.Migration):
    dependencies = [
        ("pathways", "0008_background_tasks"),
    ]

    operations = [
        migrations.AlterField(
            model_name="historicallabresult",
            name="canonical_unit",
            field=models.CharField(
                choices=[
                    ("U/L", "U/L"),
                    ("ukat/L", "µkat/L"),
                    ("ug/L", "µg/L"),
                    ("ng/L", "ng/L"),
                    ("pg/mL", "pg/mL"),
                    ("mg/dL", "mg/dL"),
                    ("umol/L", "µmol/L"),
                    ("mL/min", "mL/min"),
                    ("mmol/L", "mmol/L"),
                    ("ng/mL", "ng/mL"),
                    ("nmol/L", "nmol/L"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="historicallabresult",
            name="test",
            field=models.CharField(
                choices=[
                    ("alp", "ALP (total)"),
                    ("bone_alp", "Bone ALP"),
                    ("ggt", "GGT"),
                    ("ctx", "CTX"),
                    ("creatinine", "Creatinine"),
                    ("crcl", "CrCl"),
                    ("calcium", "Calcium"),
                    ("vitamin_d", "25-OH vitamin D"),
                    ("bilirubin", "Bilirubin"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="historicallabresult",
            name="unit",
            field=models.CharField(
                choices=[
                    ("U/L", "U/L"),
                    ("ukat/L", "µkat/L"),
                    ("ug/L", "µg/L"),
                    ("ng/L", "ng/L"),
                    ("pg/mL", "pg/mL"),
                    ("mg/dL", "mg/dL"),
                    ("umol/L", "µmol/L"),
                    ("mL/min", "mL/min"),
                    ("mmol/L", "mmol/L"),
                    ("ng/mL", "ng/mL"),
                    ("nmol/L", "nmol/L"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="historicalpatient",
            name="diagnoses",
            field=models.JSONField(
                blank=True, default=list, validators=[pathways.models.validate_diagnoses]
            ),
        ),
        migrations.AlterField(
            model_name="labresult",
            name="canonical_unit",
            field=models.CharField(
                choices=[
                    ("U/L", "U/L"),
                    ("ukat/L", "µkat/L"),
                    ("ug/L", "µg/L"),
                    ("ng/L", "ng/L"),
                    ("pg/mL", "pg/mL"),
                    ("mg/dL", "mg/dL"),
                    ("umol/L", "µmol/L"),
                    ("mL/min", "mL/min"),
                    ("mmol/L", "mmol/L"),
                    ("ng/mL", "ng/mL"),
                    ("nmol/L", "nmol/L"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="labresult",
            name="test",
            field=models.CharField(
                choices=[
                    ("alp", "ALP (total)"),
                    ("bone_alp", "Bone ALP"),
                    ("ggt", "GGT"),
                    ("ctx", "CTX"),
                    ("creatinine", "Creatinine"),
                    ("crcl", "CrCl"),
                    ("calcium", "Calcium"),
                    ("vitamin_d", "25-OH vitamin D"),
                    ("bilirubin", "Bilirubin"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="labresult",
            name="unit",
            field=models.CharField(
                choices=[
                    ("U/L", "U/L"),
                    ("ukat/L", "µkat/L"),
                    ("ug/L", "µg/L"),
                    ("ng/L", "ng/L"),
                    ("pg/mL", "pg/mL"),
                    ("mg/dL", "mg/dL"),
                    ("umol/L", "µmol/L"),
                    ("mL/min", "mL/min"),
                    ("mmol/L", "mmol/L"),
                    ("ng/mL", "ng/mL"),
                    ("nmol/L", "nmol/L"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="patient",
            name="diagnoses",
            field=models.JSONField(
                blank=True, default=list, validators=[pathways.models.validate_diagnoses]
            ),
        ),
    ]
