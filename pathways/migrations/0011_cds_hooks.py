"""CDS Hooks: trusted EHR clients, used JWT ids, issued cards and their feedback (issue 13)."""

import uuid

import django.db.models.deletion
import simple_history.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pathways", "0010_card_actions_worklist"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="CdsClient",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=200)),
                (
                    "issuer",
                    models.CharField(
                        help_text="The `iss` of the EHR's JWTs, exactly as it sends it.",
                        max_length=500,
                        unique=True,
                        verbose_name="issuer (iss)",
                    ),
                ),
                (
                    "jwks_url",
                    models.URLField(
                        blank=True,
                        help_text="Where the EHR publishes its public keys; or give the JWKS.",
                        max_length=500,
                        verbose_name="JWKS URL",
                    ),
                ),
                (
                    "jwks",
                    models.JSONField(
                        blank=True,
                        help_text='The EHR\'s public keys as a JSON Web Key Set: {"keys": [...]}.',
                        null=True,
                        verbose_name="JWKS",
                    ),
                ),
                (
                    "mrn_system",
                    models.CharField(
                        blank=True,
                        help_text="Identifier system of the MRN; empty: identifiers typed MR.",
                        max_length=500,
                        verbose_name="MRN identifier system",
                    ),
                ),
                (
                    "fhir_base_url",
                    models.URLField(
                        blank=True,
                        help_text="The only fhirServer to fetch missing data from; empty: none.",
                        max_length=500,
                        verbose_name="FHIR server base URL",
                    ),
                ),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "clinic",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="cds_clients",
                        to="pathways.clinic",
                    ),
                ),
            ],
            options={
                "verbose_name": "CDS Hooks client",
            },
        ),
        migrations.CreateModel(
            name="CdsCard",
            fields=[
                ("uuid", models.UUIDField(default=uuid.uuid4, primary_key=True, serialize=False)),
                ("service", models.CharField(max_length=40)),
                (
                    "rule_code",
                    models.CharField(blank=True, help_text="Empty: a summary card.", max_length=60),
                ),
                ("rule_set_version", models.CharField(max_length=40)),
                ("issued_at", models.DateTimeField(db_index=True)),
                (
                    "patient",
                    models.ForeignKey(
                        blank=True,
                        help_text="The clinic's patient with the EHR patient's MRN, if any.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="pathways.patient",
                    ),
                ),
                (
                    "client",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="cards",
                        to="pathways.cdsclient",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="HistoricalCdsClient",
            fields=[
                (
                    "id",
                    models.BigIntegerField(
                        auto_created=True, blank=True, db_index=True, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=200)),
                (
                    "issuer",
                    models.CharField(
                        db_index=True,
                        help_text="The `iss` of the EHR's JWTs, exactly as it sends it.",
                        max_length=500,
                        verbose_name="issuer (iss)",
                    ),
                ),
                (
                    "jwks_url",
                    models.URLField(
                        blank=True,
                        help_text="Where the EHR publishes its public keys; or give the JWKS.",
                        max_length=500,
                        verbose_name="JWKS URL",
                    ),
                ),
                (
                    "jwks",
                    models.JSONField(
                        blank=True,
                        help_text='The EHR\'s public keys as a JSON Web Key Set: {"keys": [...]}.',
                        null=True,
                        verbose_name="JWKS",
                    ),
                ),
                (
                    "mrn_system",
                    models.CharField(
                        blank=True,
                        help_text="Identifier system of the MRN; empty: identifiers typed MR.",
                        max_length=500,
                        verbose_name="MRN identifier system",
                    ),
                ),
                (
                    "fhir_base_url",
                    models.URLField(
                        blank=True,
                        help_text="The only fhirServer to fetch missing data from; empty: none.",
                        max_length=500,
                        verbose_name="FHIR server base URL",
                    ),
                ),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(blank=True, editable=False)),
                ("history_id", models.AutoField(primary_key=True, serialize=False)),
                ("history_date", models.DateTimeField(db_index=True)),
                ("history_change_reason", models.CharField(max_length=100, null=True)),
                (
                    "history_type",
                    models.CharField(
                        choices=[("+", "Created"), ("~", "Changed"), ("-", "Deleted")], max_length=1
                    ),
                ),
                (
                    "clinic",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="pathways.clinic",
                    ),
                ),
                (
                    "history_user",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "historical CDS Hooks client",
                "verbose_name_plural": "historical CDS Hooks clients",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.CreateModel(
            name="CdsFeedback",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "outcome",
                    models.CharField(
                        choices=[("accepted", "Accepted"), ("overridden", "Overridden")],
                        max_length=12,
                    ),
                ),
                (
                    "override_reason",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("contraindicated", "Contraindicated for this patient"),
                            ("disagree-evidence", "Disagree with the evidence"),
                            ("done-elsewhere", "Already done elsewhere"),
                            ("not-applicable", "Not applicable to this patient"),
                            ("other", "Other (free text required)"),
                            ("patient-declined", "Patient declined"),
                        ],
                        max_length=30,
                    ),
                ),
                ("override_comment", models.TextField(blank=True)),
                ("accepted_suggestions", models.JSONField(blank=True, default=list)),
                (
                    "outcome_at",
                    models.DateTimeField(help_text="outcomeTimestamp, as the EHR sent it."),
                ),
                ("received_at", models.DateTimeField(auto_now_add=True)),
                (
                    "card",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="feedback",
                        to="pathways.cdscard",
                    ),
                ),
                (
                    "received_by",
                    models.ForeignKey(
                        help_text="The client that sent it.",
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="pathways.cdsclient",
                    ),
                ),
            ],
            options={
                "verbose_name": "CDS Hooks feedback",
                "verbose_name_plural": "CDS Hooks feedback",
                "ordering": ["-outcome_at"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("card", "outcome", "outcome_at"), name="cds_feedback_once"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="CdsJwtUse",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("jti", models.CharField(max_length=200)),
                ("expires_at", models.DateTimeField(db_index=True)),
                (
                    "client",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="pathways.cdsclient",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("client", "jti"), name="cds_jwt_use_once")
                ],
            },
        ),
    ]
