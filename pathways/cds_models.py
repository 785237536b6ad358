"""CDS Hooks: the trusted EHR clients, the JWTs they have used, the cards issued and the feedback.

A hook request's patient data is never stored: a card issued keeps only which rule it came
from (for feedback and the rule analytics) and, when the EHR's patient is one of the clinic's,
a link to that stored patient.
"""

from __future__ import annotations

import uuid

from django.db import models
from simple_history.models import HistoricalRecords

from pathways.engine.vocabulary import OVERRIDE_REASONS


class CdsClient(models.Model):
    """An EHR allowed to call the CDS Hooks services, on behalf of one clinic."""

    name = models.CharField(max_length=200)
    issuer = models.CharField(
        "issuer (iss)",
        max_length=500,
        unique=True,
        help_text="The `iss` of the EHR's JWTs, exactly as it sends it.",
    )
    clinic = models.ForeignKey(
        "pathways.Clinic", on_delete=models.PROTECT, related_name="cds_clients"
    )
    jwks_url = models.URLField(
        "JWKS URL",
        max_length=500,
        blank=True,
        help_text="Where the EHR publishes its public keys; or give the JWKS.",
    )
    jwks = models.JSONField(
        "JWKS",
        null=True,
        blank=True,
        help_text='The EHR\'s public keys as a JSON Web Key Set: {"keys": [...]}.',
    )
    mrn_system = models.CharField(
        "MRN identifier system",
        max_length=500,
        blank=True,
        help_text="Identifier system of the MRN; empty: identifiers typed MR.",
    )
    fhir_base_url = models.URLField(
        "FHIR server base URL",
        max_length=500,
        blank=True,
        help_text="The only fhirServer to fetch missing data from; empty: none.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "CDS Hooks client"

    def __str__(self) -> str:
        return f"{self.name} ({self.issuer})"


class CdsJwtUse(models.Model):
    """A JWT id already accepted from a client: a second use is a replay (CDS Hooks §JWT)."""

    client = models.ForeignKey(CdsClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=200)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "jti"], name="cds_jwt_use_once"),
        ]

    def __str__(self) -> str:
        return f"{self.jti} of client {self.client_id}"


class CdsCard(models.Model):
    """A card alpcare returned: which rule (and version) it came from, for feedback."""

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4)
    client = models.ForeignKey(CdsClient, on_delete=models.CASCADE, related_name="cards")
    service = models.CharField(max_length=40)
    rule_code = models.CharField(max_length=60, blank=True, help_text="Empty: a summary card.")
    rule_set_version = models.CharField(max_length=40)
    patient = models.ForeignKey(
        "pathways.Patient",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The clinic's patient with the EHR patient's MRN, if any.",
    )
    issued_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.service} card {self.rule_code or 'summary'} ({self.uuid})"


class CdsFeedback(models.Model):
    """What the clinician did with a card in the EHR (CDS Hooks feedback)."""

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted"
        OVERRIDDEN = "overridden"

    card = models.ForeignKey(CdsCard, on_delete=models.PROTECT, related_name="feedback")
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    override_reason = models.CharField(
        max_length=30, blank=True, choices=sorted(OVERRIDE_REASONS.items())
    )
    override_comment = models.TextField(blank=True)
    accepted_suggestions = models.JSONField(default=list, blank=True)
    outcome_at = models.DateTimeField(help_text="outcomeTimestamp, as the EHR sent it.")
    received_at = models.DateTimeField(auto_now_add=True)
    received_by = models.ForeignKey(
        CdsClient, on_delete=models.PROTECT, related_name="+", help_text="The client that sent it."
    )

    class Meta:
        ordering = ["-outcome_at"]
        # An EHR that resends its feedback (a retry after a timeout) does not count twice.
        constraints = [
            models.UniqueConstraint(
                fields=["card", "outcome", "outcome_at"], name="cds_feedback_once"
            ),
        ]
        verbose_name = "CDS Hooks feedback"
        verbose_name_plural = "CDS Hooks feedback"

    def __str__(self) -> str:
        return f"{self.outcome} {self.card}"


__all__ = ["CdsCard", "CdsClient", "CdsFeedback", "CdsJwtUse"]
