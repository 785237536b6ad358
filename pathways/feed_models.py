"""The HL7 v2 lab feed's data: which sending facility feeds which clinic, local codes, every
message received (raw, before it is applied) and each of its results with what became of it.

Imported by models.py so that they belong to the pathways app.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from pathways.models import LAB_TEST_CHOICES, Clinic, LabResult, Patient


class Hl7Feed(models.Model):
    """A laboratory system allowed to send results: its MSH-4 sending facility -> a clinic."""

    sending_facility = models.CharField(
        max_length=100, unique=True, help_text="MSH-4, first component (namespace ID), exactly."
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="hl7_feeds")
    service_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Recorded as the author of the results this feed stores.",
    )
    assigning_authority = models.CharField(
        max_length=100,
        blank=True,
        help_text="PID-3.4 the MRNs must carry (blank: any).",
    )
    enabled = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["sending_facility"]
        verbose_name = "HL7 feed"

    def __str__(self) -> str:
        return f"{self.sending_facility} -> {self.clinic}"


class Hl7LocalCode(models.Model):
    """A laboratory's own OBX-3 code for a test, per clinic (LOINC codes need no entry)."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="hl7_codes")
    code = models.CharField(max_length=60, help_text="OBX-3.1 as the laboratory sends it.")
    test = models.CharField(max_length=20, choices=LAB_TEST_CHOICES)
    history = HistoricalRecords()

    class Meta:
        ordering = ["clinic", "code"]
        verbose_name = "HL7 local code"
        constraints = [
            models.UniqueConstraint(fields=["clinic", "code"], name="hl7code_once_per_clinic")
        ]

    def __str__(self) -> str:
        return f"{self.code} -> {self.test}"


class Hl7Message(models.Model):
    """One received message, stored raw before anything is applied."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received (not applied yet)"
        APPLIED = "applied", "Applied"
        REFUSED = "refused", "Refused (AE)"
        REJECTED = "rejected", "Rejected (AR: not HL7)"

    control_id = models.CharField(max_length=100, blank=True, help_text="MSH-10")
    sending_facility = models.CharField(max_length=100, blank=True, help_text="MSH-4")
    clinic = models.ForeignKey(Clinic, null=True, blank=True, on_delete=models.PROTECT)
    raw = models.TextField()
    received_via = models.CharField(max_length=20)
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    ack_code = models.CharField(max_length=2, blank=True)
    ack_text = models.CharField(max_length=500, blank=True)
    resent = models.PositiveIntegerField(default=0, help_text="Times received again.")

    class Meta:
        ordering = ["-received_at", "-pk"]
        verbose_name = "HL7 message"
        constraints = [
            models.UniqueConstraint(
                fields=["sending_facility", "control_id"],
                condition=~Q(control_id=""),
                name="hl7message_once_per_control_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.sending_facility} {self.control_id} ({self.status})"


class Hl7Result(models.Model):
    """One OBX of a message and what became of it; unmatched ones form the inbox."""

    class State(models.TextChoices):
        UNMATCHED = "unmatched", "Unmatched (inbox)"
        APPLIED = "applied", "Applied"
        CORRECTED = "corrected", "Replaced by a correction"
        WITHDRAWN = "withdrawn", "Withdrawn"
        NOT_STORED = "not_stored", "Not stored (status not final)"
        DISMISSED = "dismissed", "Dismissed from the inbox"

    message = models.ForeignKey(Hl7Message, on_delete=models.PROTECT, related_name="results")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    set_id = models.CharField(max_length=20, blank=True)
    mrn = models.CharField(max_length=40)
    assigning_authority = models.CharField(max_length=100, blank=True)
    patient_name = models.CharField(max_length=200, blank=True)
    birth_date_sent = models.CharField(
        max_length=8, blank=True,
        help_text="PID-7 as far as it names a date: YYYY, YYYYMM or YYYYMMDD.",
    )  # fmt: skip
    sex_sent = models.CharField(max_length=1, blank=True, help_text="PID-8: F or M (blank: none).")
    filler_order = models.CharField(max_length=100, blank=True, help_text="OBR-3")
    code = models.CharField(max_length=60, help_text="OBX-3.1")
    coding_system = models.CharField(max_length=20, blank=True)
    code_text = models.CharField(max_length=200, blank=True)
    sub_id = models.CharField(max_length=20, blank=True, help_text="OBX-4")
    value = models.CharField(max_length=100, blank=True, help_text="OBX-5")
    unit = models.CharField(max_length=40, blank=True, help_text="OBX-6")
    reference_range = models.CharField(max_length=60, blank=True, help_text="OBX-7")
    comment = models.TextField(blank=True, help_text="NTE-3 of the NTE segments after the OBX")
    status = models.CharField(max_length=2, help_text="OBX-11")
    collected_at = models.DateTimeField()
    collected_has_time = models.BooleanField(default=True)
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.SET_NULL)
    test = models.CharField(max_length=20, blank=True, choices=LAB_TEST_CHOICES)
    unit_matched = models.CharField(max_length=20, blank=True)
    lab_result = models.ForeignKey(
        LabResult, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=12, choices=State.choices)
    reason = models.CharField(max_length=300, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    # The laboratory's X, D or W that withdrew it: stored (its result removed) or still waiting
    # in the inbox (then never stored, and no longer there to match).
    withdrawn_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The OBX-11 X, D or W result that withdrew it.",
    )  # fmt: skip
    # A clinician cleared it from the inbox without storing it, and why (kept, with history).
    dismissed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )  # fmt: skip
    dismissed_at = models.DateTimeField(null=True, blank=True)
    dismissal_note = models.CharField(max_length=300, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-pk"]
        verbose_name = "HL7 result"
        indexes = [
            models.Index(fields=["clinic", "state"], name="hl7result_inbox_idx"),
            models.Index(fields=["patient", "filler_order", "code"], name="hl7result_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.mrn} {self.code} {self.value} {self.unit} ({self.state})"

    @property
    def birth_date_shown(self) -> str:
        """PID-7's date as an ISO date, or as far as it was sent (1950, 1950-03)."""
        sent = self.birth_date_sent
        return "-".join(part for part in (sent[:4], sent[4:6], sent[6:8]) if part)
