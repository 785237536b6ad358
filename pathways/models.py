"""alpcare's data: clinics and their patients, serial results, clinical context, follow-ups,
the access log, API tokens, and the versioned rule sets the engine runs.

Patient data is written only through model ``save()``/``delete()`` (see services.py) so that
django-simple-history records every change; ``QuerySet.update()`` would bypass it.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from pathways import engine, entry_checks
from pathways.engine import declaration, vocabulary


def _choices(item: engine.CaseField) -> list[tuple[str, str]]:
    """A declared case field's allowed values and labels (engine/declaration.py)."""
    return [(choice.value, choice.label) for choice in item.choices]


def validate_diagnoses(value: object) -> None:
    """Diagnoses are a list of the declared values (a JSON column has no choices of its own)."""
    allowed = declaration.CLINICAL["diagnoses"].values
    if not isinstance(value, list) or any(item not in allowed for item in value):
        raise ValidationError(f"Diagnoses must be a list of: {', '.join(allowed)}.")


# Lab tests and units as declared; a new test or unit changes these choices (one migration).
LAB_TEST_CHOICES: list[tuple[str, str]] = [(test.code, test.label) for test in engine.LAB_TESTS]
UNIT_CHOICES = list(
    {unit.code: unit.shown for test in engine.LAB_TESTS for unit in test.units}.items()
)


class Clinic(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        CLINICIAN = "clinician", "Clinician"
        RULE_EDITOR = "rule_editor", "Rule editor"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.CLINICIAN)
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "clinic"], name="membership_once_per_clinic")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.clinic} ({self.role})"


class PatientQuerySet(models.QuerySet["Patient"]):
    def for_user(self, user: Any) -> PatientQuerySet:
        """Only the patients of the clinics the user belongs to."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(clinic__in=Clinic.objects.filter(memberships__user=user))


SORT_NAME_LENGTH = 200


def name_sort_key(name: str) -> str:
    """A name as a list is ordered by a reader: letters without their accents, in any case
    ("adams", "de Vries", "Élan", "Evans"); the database's own order is by character code on
    SQLite (every capital before "adams", "Élan" after "Zola")."""
    letters = unicodedata.normalize("NFKD", name)
    key = "".join(c for c in letters if not unicodedata.combining(c)).casefold()
    return key[:SORT_NAME_LENGTH]  # "ß" sorts as "ss", "ﬁ" as "fi": the key may run longer


class Patient(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="patients")
    mrn = models.CharField("MRN", max_length=40)
    # Kept in Unicode's composed form (NFC): "É" typed as E and an accent (pasted, or from a
    # feed) is the same name, found by the same search.
    name = models.CharField(max_length=200)
    sort_name = models.CharField(max_length=SORT_NAME_LENGTH, editable=False, default="")
    birth_date = models.DateField()
    sex = models.CharField(max_length=10, choices=_choices(declaration.PATIENT["sex"]))
    pregnant = models.BooleanField(default=False)
    # Revision 2 (spec §1): null is "not given" (weeks unknown; menopause assumed from age).
    gestational_weeks = models.PositiveSmallIntegerField("gestational weeks", null=True, blank=True)
    postmenopausal = models.BooleanField(null=True, blank=True, default=None)
    weight_kg = models.FloatField("weight (kg)", null=True, blank=True)
    # Who looks after this patient in the clinic (the worklist's "Only my patients"); optional.
    # A user who looks after patients is not deleted (the admin says which): the database's
    # SET NULL would unassign them with no history row (a bulk update the history misses).
    responsible = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="responsible clinician",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="responsible_for",
    )

    # Clinical context of the case document (spec §1, clinical.*).
    diagnoses = models.JSONField(default=list, blank=True, validators=[validate_diagnoses])
    cancer = models.CharField(
        max_length=20, choices=_choices(declaration.CLINICAL["cancer"]), blank=True
    )
    cancer_treated = models.BooleanField(default=False)
    bone_pain = models.BooleanField(default=False)
    osteolytic_pain = models.BooleanField(default=False)
    bone_scan = models.CharField(
        max_length=20, choices=_choices(declaration.CLINICAL["bone_scan"]), default="not_done"
    )
    fracture = models.CharField(
        max_length=20, choices=_choices(declaration.CLINICAL["fracture"]), default="none"
    )
    fracture_date = models.DateField("fracture date", null=True, blank=True)
    dental_exam_done = models.BooleanField(default=False)
    crcl_baseline = models.FloatField("CrCl baseline (mL/min)", null=True, blank=True)
    creatinine_baseline = models.FloatField("creatinine baseline (mg/dL)", null=True, blank=True)
    mm_requires_therapy = models.BooleanField("myeloma requires therapy", default=False)
    mm_bone_disease = models.BooleanField("myeloma bone disease (lytic lesions)", default=False)
    mm_active_bone_disease = models.BooleanField("active myeloma bone disease", default=False)
    mm_whole_body_imaging_done = models.BooleanField(
        "myeloma whole-body imaging done", default=False
    )
    mm_response = models.CharField(
        "myeloma response",
        max_length=4,
        choices=_choices(declaration.MYELOMA["response"]),
        blank=True,
    )
    mm_treatment_start = models.DateField("myeloma treatment start", null=True, blank=True)
    mm_bortezomib_start = models.DateField("bortezomib start", null=True, blank=True)

    # Optimistic locking: every write bumps it; a write based on an older value is refused.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    objects = PatientQuerySet.as_manager()

    class Meta:
        ordering = ["sort_name", "mrn"]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "mrn"], name="patient_mrn_unique_in_clinic"),
            models.CheckConstraint(
                condition=Q(weight_kg__isnull=True)
                | Q(weight_kg__gt=0, weight_kg__lt=declaration.WEIGHT_BELOW),
                name="patient_weight_positive",
            ),
            models.CheckConstraint(
                condition=Q(crcl_baseline__isnull=True)
                | Q(crcl_baseline__gte=0, crcl_baseline__lt=declaration.BASELINE_BELOW),
                name="patient_crcl_baseline_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(creatinine_baseline__isnull=True)
                | Q(creatinine_baseline__gte=0, creatinine_baseline__lt=declaration.BASELINE_BELOW),
                name="patient_creatinine_baseline_non_negative",
            ),
            # spec §1: gestational weeks 1-42, only for a pregnant patient.
            models.CheckConstraint(
                condition=Q(gestational_weeks__isnull=True)
                | Q(pregnant=True, gestational_weeks__gte=1, gestational_weeks__lte=42),
                name="patient_gestational_weeks_in_pregnancy",
            ),
        ]
        # A clinic's patients by name (the patient list), and the dashboard's search by name or
        # MRN reads this index instead of every patient row. The impact preview asks, on every
        # view, whether any patient changed since it ran (updated_at).
        indexes = [
            models.Index(fields=["clinic", "name", "mrn"], name="patient_clinic_name_idx"),
            models.Index(fields=["clinic", "sort_name", "mrn"], name="patient_clinic_sort_idx"),
            models.Index(fields=["updated_at"], name="patient_updated_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.mrn})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.name = unicodedata.normalize("NFC", self.name)
        self.sort_name = name_sort_key(self.name)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "name" in update_fields:
            kwargs["update_fields"] = {*update_fields, "sort_name"}
        super().save(*args, **kwargs)


# Finite and non-negative: NaN and ±Infinity fail `value < 1e12` on PostgreSQL and SQLite alike.
_FINITE_NON_NEGATIVE = declaration.LAB_NUMBER_BELOW


class LabResult(models.Model):
    class Source(models.TextChoices):
        ENTERED = "entered", "Entered"
        IMPORTED = "imported", "Imported"

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="lab_results")
    test = models.CharField(max_length=20, choices=LAB_TEST_CHOICES)
    value = models.FloatField(help_text="As entered, in `unit`.")
    unit = models.CharField(max_length=20, choices=UNIT_CHOICES)
    canonical_value = models.FloatField()
    canonical_unit = models.CharField(max_length=20, choices=UNIT_CHOICES)
    collected_on = models.DateField()
    # Null means the time of day is unknown, which is not the same as a draw at midnight.
    collected_time = models.TimeField(null=True, blank=True)
    reference_high = models.FloatField(null=True, blank=True, help_text="The lab's ULN, in `unit`.")
    reference_low = models.FloatField(null=True, blank=True, help_text="The lab's LLN, in `unit`.")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.ENTERED)
    lab_comment = models.TextField(
        blank=True, help_text="The laboratory's comment on the result (HL7 NTE after its OBX)."
    )
    corrected_from = models.CharField(
        max_length=60,
        blank=True,
        help_text="The value a correction by the laboratory (HL7 or FHIR) replaced.",
    )
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        # A bare date first on its day (spec §2 sorts it as 00:00) on every database: PostgreSQL
        # puts nulls last by default, SQLite first.
        ordering = ["collected_on", models.F("collected_time").asc(nulls_first=True), "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "test", "collected_on", "collected_time"],
                condition=Q(collected_time__isnull=False),
                name="labresult_once_per_timed_collection",
            ),
            models.UniqueConstraint(
                fields=["patient", "test", "collected_on"],
                condition=Q(collected_time__isnull=True),
                name="labresult_once_per_untimed_collection",
            ),
            models.CheckConstraint(
                condition=Q(value__gte=0, value__lt=_FINITE_NON_NEGATIVE)
                & Q(canonical_value__gte=0, canonical_value__lt=_FINITE_NON_NEGATIVE),
                name="labresult_value_finite_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(reference_high__isnull=True)
                | Q(reference_high__gte=0, reference_high__lt=_FINITE_NON_NEGATIVE),
                name="labresult_reference_high_finite_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(reference_low__isnull=True)
                | Q(reference_low__gte=0, reference_low__lt=_FINITE_NON_NEGATIVE),
                name="labresult_reference_low_finite_non_negative",
            ),
            # spec §1: reference_low < reference_high when both are given.
            models.CheckConstraint(
                condition=Q(reference_low__isnull=True)
                | Q(reference_high__isnull=True)
                | Q(reference_low__lt=models.F("reference_high")),
                name="labresult_reference_low_below_high",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_test_display()} {self.value_shown} on {self.collected_on}"

    @property
    def unit_shown(self) -> str:
        return declaration.unit_shown(self.test, self.unit)

    @property
    def value_shown(self) -> str:
        """As entered ("412 U/L"): what ``corrected_from`` keeps of a replaced value."""
        return f"{self.value:g} {self.unit_shown}"

    @property
    def canonical_unit_shown(self) -> str:
        return declaration.unit_shown(self.test, self.canonical_unit)

    @property
    def unconfirmed_unusual_value(self) -> str | None:
        """Why a result that arrived without a person confirming it (lab feed, FHIR) would have
        needed a confirmation if typed by hand: it is stored and assessed, and the patient page
        flags it (reference-intervals.md). None for a typed result (confirmed when entered)."""
        if self.source == self.Source.ENTERED:
            return None
        return entry_checks.unusual_lab(self.test, self.value, self.unit)


class Therapy(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="therapies")
    agent = models.CharField(max_length=30, choices=_choices(declaration.THERAPY["agent"]))
    start = models.DateField()
    end = models.DateField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["start", "pk"]
        verbose_name_plural = "therapies"
        constraints = [
            models.CheckConstraint(
                condition=Q(end__isnull=True) | Q(end__gte=models.F("start")),
                name="therapy_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        return f"{self.agent} from {self.start}"


FOLLOW_UP_OUTCOMES = [
    ("done", "Done as planned"),
    ("done_elsewhere", "Done elsewhere"),
    ("declined", "Patient declined"),
    ("not_needed", "Not needed"),
]


class FollowUp(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="follow_ups")
    code = models.CharField(max_length=60)  # a follow-up rule's code (FollowUpRule.code)
    due = models.DateField()
    rule = models.CharField(max_length=60, blank=True, help_text="The rule that created it.")
    title = models.CharField(max_length=300)
    rule_set_version = models.CharField(max_length=40)
    completed_at = models.DateTimeField(null=True, blank=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Spec §5: a matching result recorded on or after due - 14 days completes it; such a
    # completion is reopened if that result is later removed (a completion by hand is kept).
    completed_by_result = models.BooleanField(default=False)
    # "Mark done" by hand records what was done: the outcome, the day and a note.
    outcome = models.CharField(max_length=20, choices=FOLLOW_UP_OUTCOMES, blank=True)
    done_on = models.DateField(null=True, blank=True)
    note = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["due", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "code", "due"], name="followup_once_per_code_and_due"
            )
        ]
        indexes = [models.Index(fields=["due"], name="followup_due_idx")]

    def __str__(self) -> str:
        return f"{self.code} due {self.due}"


# Urgent and high cards not acted on put a patient on the worklist, as do open follow-ups.
ACTION_RANK = engine.PRIORITY_RANK["high"]
ON_WORKLIST = Q(action_rank__lte=ACTION_RANK) | Q(next_due__isnull=False)


class AssessmentSnapshot(models.Model):
    """The latest assessment of a patient, kept for the dashboard's filters and sorting.

    Derived data (no history): refreshed on every write to the patient, after a rule set is
    published, and daily by `manage.py reassess` since results depend on today's date.
    """

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="snapshot")
    as_of = models.DateField()
    rule_set_version = models.CharField(max_length=40)
    pathway = models.CharField(max_length=10)
    alp_latest = models.FloatField(null=True, blank=True)
    alp_x_uln = models.FloatField(null=True, blank=True)
    alp_elevated = models.BooleanField(default=False)
    # The card the worklist shows: the highest one nobody has acted on, or, when every card has
    # been acted on, the highest (services.worklist_copies_store).
    top_priority = models.CharField(max_length=10, blank=True)
    top_priority_rank = models.PositiveSmallIntegerField(default=9)
    top_code = models.CharField(max_length=60, blank=True)
    top_title = models.CharField(max_length=400, blank=True)
    recommendation_codes = models.JSONField(default=list)
    assessed_at = models.DateTimeField(default=timezone.now)
    # The worklist's copies (kept by services.worklist_copies_store): the patient's clinic, the
    # rank of the highest card no clinician has acted on (9: none) and the first open follow-up's
    # due date. The worklist is one row per patient: a patient is on it
    # with an urgent or high card not acted on, or an open follow-up (ON_WORKLIST), and is
    # paged from the snapshot_worklist indexes in the order of urgency, then due date.
    # ``snooze_ends``: the first day a snooze in force ends (the worklist re-assesses such
    # patients on that day, see services.snoozes_ended_reassess).
    clinic = models.ForeignKey(Clinic, null=True, on_delete=models.CASCADE, related_name="+")
    action_rank = models.PositiveSmallIntegerField(default=9)
    next_due = models.DateField(null=True, blank=True)
    # next_due is set: ordering by it first puts a patient with nothing scheduled first within
    # its urgency the same way on SQLite and PostgreSQL, which place NULLs apart (and only
    # PostgreSQL's indexes can say NULLS FIRST).
    scheduled = models.BooleanField(default=False)
    snooze_ends = models.DateField(null=True, blank=True)
    # What this patient adds to WorklistTally: [[clinic, pathway, action rank, next due (ISO or
    # null)]] when on the worklist, else [], as last counted (services.worklist_copies_store
    # applies the difference).
    tallied = models.JSONField(default=list)

    class Meta:
        indexes = [
            models.Index(fields=["top_priority_rank"], name="snapshot_priority_idx"),
            models.Index(fields=["pathway"], name="snapshot_pathway_idx"),
            models.Index(
                fields=["clinic", "action_rank", "scheduled", "next_due", "patient"],
                name="snapshot_worklist_idx",
                condition=ON_WORKLIST,
            ),
            models.Index(
                fields=["clinic", "pathway", "action_rank", "scheduled", "next_due", "patient"],
                name="snapshot_worklist_pathway_idx",
                condition=ON_WORKLIST,
            ),
            models.Index(
                fields=["clinic", "scheduled", "next_due", "patient"],
                name="snapshot_worklist_due_idx",
                condition=ON_WORKLIST,
            ),
            models.Index(
                fields=["clinic", "snooze_ends"],
                name="snapshot_snooze_idx",
                condition=Q(snooze_ends__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.patient_id} {self.top_priority} ({self.rule_set_version})"

    @property
    def pathway_label(self) -> str:
        """The pathway as the screens name it ("bone workup", "multiple myeloma")."""
        return engine.PATHWAY_LABELS.get(self.pathway, self.pathway)

    @property
    def top_acted_on(self) -> bool:
        """Every card was acted on: the top card is the highest, shown marked "acted on"."""
        return bool(self.top_code) and self.action_rank > self.top_priority_rank


class WorklistTally(models.Model):
    """How many patients are on the worklist per clinic, pathway, action rank and first due date
    (none: no open follow-up, on the list for a card).

    The worklist's counts per status add up these rows (a few per day of the calendar) instead
    of counting every patient, which at 100,000 patients read as many index entries
    (bench/pages.py). Derived data, no history: kept in the same transaction as the snapshot by
    services.worklist_copies_store, from the difference between what a patient adds now and
    what it added last time (AssessmentSnapshot.tallied); rebuilt by
    services.worklist_tally_rebuild.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    pathway = models.CharField(max_length=10, blank=True)
    action_rank = models.PositiveSmallIntegerField(default=9)
    next_due = models.DateField(null=True, blank=True)
    patients = models.IntegerField(default=0)

    class Meta:
        constraints = [
            # Two constraints, as NULLs are distinct in a unique index (SQLite, PostgreSQL < 15).
            models.UniqueConstraint(
                fields=["clinic", "pathway", "action_rank", "next_due"],
                condition=Q(next_due__isnull=False),
                name="worklist_tally_key",
            ),
            models.UniqueConstraint(
                fields=["clinic", "pathway", "action_rank"],
                condition=Q(next_due__isnull=True),
                name="worklist_tally_unscheduled_key",
            ),
        ]

    def __str__(self) -> str:
        key = f"{self.clinic_id} {self.pathway} {self.action_rank} {self.next_due}"
        return f"{key}: {self.patients}"


class AppendOnlyError(Exception):
    pass


# interop.md, "Override reasons": one code system for the worklist, CDS Hooks and analytics.
OVERRIDE_REASON_SYSTEM = "https://alpcare.example.org/fhir/CodeSystem/override-reason"
# spec/interop.md's override reasons, one code system for the worklist, CDS Hooks and analytics.
OVERRIDE_REASONS = list(vocabulary.OVERRIDE_REASONS.items())


class CardAction(models.Model):
    """A clinician's action on one recommendation card of one patient: who, when, what.

    It holds for the card's code while the patient's case (``case_digest``: the case document
    without its as-of date) and the card as the rule set words it (``card_digest``) stay the
    same; the calendar alone does not end it (a snooze ends on its date). The first
    re-assessment that finds the case or the card changed sets ``ended_at``: an ended action
    stays ended, even when the change is taken back (a result removed again, a rollback). Undo
    sets ``undone_at``; rows are never deleted (history kept). ``source`` says where it came from:
    the worklist or CDS Hooks feedback.
    """

    class Kind(models.TextChoices):
        ACKNOWLEDGE = "acknowledge", "Acknowledged"
        OVERRIDE = "override", "Overridden"
        SNOOZE = "snooze", "Snoozed"
        ACCEPT = "accept", "Accepted"

    class Source(models.TextChoices):
        WORKLIST = "worklist", "Worklist"
        CDS = "cds", "CDS Hooks"

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="card_actions")
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    code = models.CharField(max_length=60)
    priority = models.CharField(max_length=10, blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    reason = models.CharField(max_length=30, choices=OVERRIDE_REASONS, blank=True)
    reason_text = models.TextField(blank=True, max_length=1000)
    snooze_until = models.DateField(null=True, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.WORKLIST)
    rule_set_version = models.CharField(max_length=40)
    case_digest = models.CharField(max_length=64)
    card_digest = models.CharField(max_length=64)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ended_at = models.DateTimeField(
        null=True, blank=True, help_text="When the case or the card changed after it was taken."
    )
    feedback = models.OneToOneField(
        "pathways.CdsFeedback", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="card_action",
        help_text="The EHR's report (CDS Hooks feedback) it stands for.",
    )  # fmt: skip
    history = HistoricalRecords()

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(fields=["patient", "code", "at"], name="cardaction_patient_idx"),
            models.Index(fields=["code", "at"], name="cardaction_code_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.code} for {self.patient_id} at {self.at:%Y-%m-%d %H:%M}"

    @property
    def reason_display(self) -> str:
        """The coded reason and what the clinician wrote with it (required for "other",
        optional with the others, and shown either way)."""
        label = "Other" if self.reason == "other" else dict(OVERRIDE_REASONS).get(self.reason)
        label = label or self.reason
        return f"{label}: {self.reason_text}" if self.reason_text else label


class AccessLogQuerySet(models.QuerySet["AccessLog"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("The access log is append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("The access log is append-only.")


class AccessLog(models.Model):
    """Who read which patient, when: written on every read, never changed or deleted."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=60)
    path = models.CharField(max_length=500)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = AccessLogQuerySet.as_manager()

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.user} {self.action} {self.patient_id} at {self.at:%Y-%m-%d %H:%M}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("The access log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("The access log is append-only.")


def _token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# How long a new API token lives unless its creator chooses a shorter life.
API_TOKEN_LIFETIME = timedelta(days=365)


def _api_token_expiry() -> datetime:
    return timezone.now() + API_TOKEN_LIFETIME


# "Last used" is kept to the minute: a busy integration does not write the row on every call.
API_TOKEN_USE_RESOLUTION = timedelta(minutes=1)


class ApiToken(models.Model):
    """A per-user API token with scopes and an expiry; only its SHA-256 digest is stored."""

    class Scope(models.TextChoices):
        ASSESS = "assess", "assess: assess case documents (no stored patient data)"
        READ = "read", "read: read your clinics' stored patients"
        WRITE = "write", "write: change your clinics' stored patients"
        HL7 = "hl7", "hl7: send HL7 v2 lab results"
        CDS = "cds", "cds: CDS Hooks advice for the EHR"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.CharField(
        max_length=100, default="", help_text="Space-separated: what the token may call."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=_api_token_expiry)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def allows(self, scope: str) -> bool:
        return scope in self.scope_list

    @property
    def expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def active(self) -> bool:
        return not self.revoked and not self.expired

    @classmethod
    def issue(
        cls,
        *,
        user: Any,
        name: str,
        scopes: Iterable[str],
        expires_at: datetime | None = None,
    ) -> tuple[ApiToken, str]:
        """Create a token and return it with its raw value, which is shown once."""
        chosen = [scope for scope in cls.Scope.values if scope in set(scopes)]
        unknown = set(scopes) - set(cls.Scope.values)
        if unknown or not chosen:
            raise ValueError(f"scopes must be some of {', '.join(cls.Scope.values)}")
        raw = "alp_" + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user,
            name=name,
            prefix=raw[:12],
            digest=_token_digest(raw),
            scopes=" ".join(chosen),
            expires_at=expires_at or _api_token_expiry(),
        )
        return token, raw

    @classmethod
    def authenticate(cls, raw: str) -> ApiToken | None:
        """The active token with this raw value (not revoked, not expired, user active)."""
        now = timezone.now()
        token = (
            cls.objects.select_related("user")
            .filter(
                digest=_token_digest(raw), revoked=False, expires_at__gt=now, user__is_active=True
            )
            .first()
        )
        if token is not None and (
            token.last_used_at is None or now - token.last_used_at >= API_TOKEN_USE_RESOLUTION
        ):
            # Written once a minute at most (not one write per call), and never backwards.
            cls.objects.filter(pk=token.pk).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=now)
            ).update(last_used_at=now)
        return token


# ---------------------------------------------------------------------------------------------
# Rule sets: the engine's rules, parameters, follow-ups, reference bands and citations as data.
# A published rule set is immutable; tuning happens in a draft that is published as a new
# version. Results name the version that produced them.
# ---------------------------------------------------------------------------------------------


class PublishedRuleSetError(Exception):
    """Raised on any attempt to change a published (immutable) rule set."""


class RuleSet(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        IN_REVIEW = "in_review", "In review"
        PUBLISHED = "published", "Published"

    version = models.CharField(max_length=40, unique=True, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    is_current = models.BooleanField(default=False, help_text="The rule set in force.")
    based_on = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(
        blank=True, help_text="The editor's rationale: why this version exists (change note)."
    )
    # Everyone who changed the draft's content (four-eyes: none of them may publish it).
    editors = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_edited_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-published_at", "-pk"]
        permissions = [("publish_ruleset", "Can publish a rule set (four-eyes)")]
        constraints = [
            models.UniqueConstraint(
                fields=["is_current"], condition=Q(is_current=True), name="one_current_rule_set"
            ),
            models.CheckConstraint(
                condition=Q(is_current=False) | Q(status="published"),
                name="current_rule_set_is_published",
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return self.version or f"draft-{self.pk}"

    @property
    def is_draft(self) -> bool:
        """Not published yet (a draft, or a draft in review)."""
        return self.status != self.Status.PUBLISHED

    @property
    def is_editable(self) -> bool:
        """A draft that is not in review: its content may change."""
        return self.status == self.Status.DRAFT

    @property
    def in_review(self) -> bool:
        return self.status == self.Status.IN_REVIEW


class RuleSetReview(models.Model):
    """One step of a draft's review: submitted, returned with comments, or approved."""

    class Action(models.TextChoices):
        SUBMITTED = "submitted", "Submitted for review"
        RETURNED = "returned", "Returned to draft"
        APPROVED = "approved", "Approved and published"

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="reviews")
    action = models.CharField(max_length=10, choices=Action.choices)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.rule_set} {self.action} {self.at:%Y-%m-%d %H:%M}"


class RuleSetPublication(models.Model):
    """Each time a version is put in force: a first publication or a rollback to it."""

    class Kind(models.TextChoices):
        PUBLISH = "publish", "Published"
        ROLLBACK = "rollback", "Re-published (rollback)"

    rule_set = models.ForeignKey(RuleSet, on_delete=models.PROTECT, related_name="publications")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    note = models.TextField()
    replaced = models.ForeignKey(
        RuleSet,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The version that was in force before.",
    )

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.rule_set} {self.kind} {self.at:%Y-%m-%d %H:%M}"


class RuleSetPartQuerySet(models.QuerySet[Any]):
    def update(self, **kwargs: Any) -> int:
        # QuerySet.update() skips save() and history: refuse it outright on published sets.
        if self.exclude(rule_set__status=RuleSet.Status.DRAFT).exists():
            raise PublishedRuleSetError("A published rule set cannot be modified.")
        return super().update(**kwargs)


class RuleSetPart(models.Model):
    """Rows that belong to one rule set and freeze when it is published."""

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="+")

    objects = RuleSetPartQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.assert_editable()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        self.assert_editable()
        return super().delete(*args, **kwargs)

    def assert_editable(self) -> None:
        rule_sets = RuleSet.objects.filter(pk=self.rule_set_id)
        if connection.in_atomic_block:  # the admin's saves: a submission for review waits
            rule_sets = rule_sets.select_for_update()  # or this save does (no edit slips in)
        status_now = rule_sets.values_list("status", flat=True).first()
        if status_now == RuleSet.Status.IN_REVIEW:
            raise PublishedRuleSetError(
                f"Rule set {self.rule_set_id} is in review and locked; "
                "a publisher returns it to draft to change it."
            )
        if status_now != RuleSet.Status.DRAFT:
            raise PublishedRuleSetError(
                f"Rule set {self.rule_set_id} is published and cannot be modified; "
                "start a draft to change it."
            )


_PATHWAY_CHOICES = [(pathway, engine.PATHWAY_LABELS[pathway]) for pathway in engine.RULE_PATHWAYS]
_PRIORITY_CHOICES = [(priority, priority) for priority in engine.PRIORITIES]


class Rule(RuleSetPart):
    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField(default=0)
    code = models.SlugField(max_length=60)
    pathway = models.CharField(max_length=10, choices=_PATHWAY_CHOICES)
    priority = models.CharField(max_length=10, choices=_PRIORITY_CHOICES)
    title = models.CharField(max_length=400)
    rationale = models.TextField(help_text="Template: {fact} placeholders; [[ … ]] drops on null.")
    condition = models.TextField(help_text="CEL expression over facts, params and fired.")
    escalate_when = models.TextField(blank=True, help_text="CEL: when true, use escalate_to.")
    escalate_to = models.CharField(max_length=10, choices=_PRIORITY_CHOICES, blank=True)
    citations = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    # Stood down when (spec §4): [{"condition": CEL, "reason": text shown to the clinician}].
    suppressions = models.JSONField(
        default=list,
        blank=True,
        help_text='Stood down when: [{"condition": "<CEL>", "reason": "<shown>"}, …]',
    )
    evidence_note = models.TextField(
        blank=True,
        help_text="Where the rule departs from a seed: what the seed says and why (shown).",
    )
    reviewed_on = models.DateField(
        null=True, blank=True, help_text="Date of the rule's last clinical review."
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["rule_set", "position", "code"]
        constraints = [
            models.UniqueConstraint(fields=["rule_set", "code"], name="rule_code_unique_in_set")
        ]

    def __str__(self) -> str:
        return self.code


class RuleExample(RuleSetPart):
    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="examples")
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="examples")
    name = models.CharField(max_length=200)
    case = models.JSONField(help_text="A full case document.")
    fires = models.BooleanField(help_text="Whether the rule must fire for this case.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["rule", "pk"]

    def __str__(self) -> str:
        return self.name


def parameter_label(description: str, name: str) -> str:
    """A parameter's human label: its description up to the first full stop or colon-led
    explanation ("Extreme ALP: latest ALP above this (…)." -> "Extreme ALP")."""
    text = description.strip()
    if not text:
        return name.replace("_", " ").capitalize()
    head = text.split(":", 1)[0].split("(", 1)[0].split(". ", 1)[0].rstrip(". ")
    return head or text


class Parameter(RuleSetPart):
    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="parameters")
    name = models.SlugField(max_length=60)
    value = models.FloatField()
    unit = models.CharField(max_length=30, blank=True)
    minimum = models.FloatField()
    maximum = models.FloatField()
    description = models.TextField(blank=True)
    rule_code = models.CharField(
        max_length=60, blank=True, help_text="The rule it belongs to (blank: shared)."
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["rule_set", "rule_code", "name"]
        constraints = [
            models.UniqueConstraint(fields=["rule_set", "name"], name="parameter_unique_in_set")
        ]

    def __str__(self) -> str:
        return f"{self.name} = {self.value:g} {self.unit}"

    @property
    def label(self) -> str:
        return parameter_label(self.description, self.name)


class FollowUpRule(RuleSetPart):
    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="follow_up_rules")
    position = models.PositiveIntegerField(default=0)
    code = models.SlugField(max_length=60)
    title = models.CharField(max_length=300)
    rules = models.JSONField(default=list, blank=True, help_text="Rule codes that create it.")
    when = models.TextField(blank=True, help_text="CEL: extra condition.")
    anchor = models.CharField(max_length=60, help_text="A date fact.")
    offset_value = models.IntegerField(null=True, blank=True)
    offset_parameter = models.CharField(max_length=60, blank=True)
    offset_unit = models.CharField(max_length=10, choices=[("months", "months"), ("days", "days")])
    satisfied_by = models.JSONField(
        default=list, blank=True, help_text="Lab tests marking it done."
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["rule_set", "position", "code"]

    def __str__(self) -> str:
        return self.code


class UlnBand(RuleSetPart):
    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="uln_bands")
    test = models.CharField(max_length=20, default="alp")
    sex = models.CharField(
        max_length=10, choices=[("male", "male"), ("female", "female"), ("any", "any")]
    )
    age_from = models.PositiveIntegerField()
    age_from_unit = models.CharField(max_length=10, choices=[("days", "days"), ("years", "years")])
    age_to = models.PositiveIntegerField(null=True, blank=True, help_text="Exclusive.")
    age_to_unit = models.CharField(max_length=10, choices=[("days", "days"), ("years", "years")])
    uln = models.FloatField()
    unit = models.CharField(max_length=20, default="U/L")
    source = models.CharField(max_length=300, blank=True)
    # Revision 2 (reference-intervals.md): lower limit, the label shown as the ULN's source,
    # the menopause a female adult band applies to, and pregnancy bands by gestational week.
    lln = models.FloatField(null=True, blank=True, help_text="Lower limit; blank: none.")
    label = models.CharField(
        max_length=100,
        blank=True,
        help_text='As the ULN source ("built-in: female ≥ 17 y"); blank: from the ages.',
    )
    menopause = models.CharField(
        max_length=4,
        choices=[("any", "any"), ("pre", "premenopausal"), ("post", "postmenopausal")],
        default="any",
    )
    gestational_week_from = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Set only for a pregnancy band (inclusive)."
    )
    gestational_week_to = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Exclusive; blank: to term."
    )
    trimester = models.CharField(
        max_length=6,
        blank=True,
        choices=[("", "—"), ("first", "first"), ("second", "second"), ("third", "third")],
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["rule_set", "test", "pk"]
        verbose_name = "reference interval (ULN band)"

    def __str__(self) -> str:
        return f"{self.test} {self.sex} {self.age_from}{self.age_from_unit[0]}: {self.uln:g}"


class DoseBand(RuleSetPart):
    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="dose_bands")
    crcl_from = models.FloatField(null=True, blank=True)
    crcl_to = models.FloatField(null=True, blank=True)
    dose_mg = models.FloatField(null=True, blank=True, help_text="Blank: not recommended.")
    source = models.CharField(max_length=300, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["rule_set", "crcl_from"]
        verbose_name = "zoledronic acid dose band"

    def __str__(self) -> str:
        return f"CrCl {self.crcl_from} to {self.crcl_to}: {self.dose_mg}"


class Citation(RuleSetPart):
    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="citations")
    key = models.CharField(max_length=60)
    kind = models.CharField(
        max_length=10,
        choices=[(kind, kind) for kind in engine.CITATION_KINDS],
        default="seed",
        help_text="What kind of source it is (shown beside each citation).",
    )
    text = models.TextField()
    grade = models.CharField(max_length=200, blank=True, help_text="The source's own grade.")
    url = models.URLField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["rule_set", "key"]
        constraints = [
            models.UniqueConstraint(fields=["rule_set", "key"], name="citation_unique_in_set")
        ]

    def __str__(self) -> str:
        return self.key


def _refuse_published_change(sender: type[models.Model], instance: Any, **kwargs: Any) -> None:
    # Signals also fire for QuerySet.delete() (the admin's bulk action), which skips delete().
    if isinstance(instance, RuleSetPart):
        instance.assert_editable()
    elif isinstance(instance, RuleSet) and instance.pk is not None:
        stored = RuleSet.objects.filter(pk=instance.pk).values_list("status", flat=True).first()
        if stored == RuleSet.Status.PUBLISHED:
            raise PublishedRuleSetError(f"Rule set {instance.label} is published: it is kept.")


def _refuse_published_edit(sender: type[models.Model], instance: Any, **kwargs: Any) -> None:
    if not isinstance(instance, RuleSet) or instance.pk is None:
        return
    stored = RuleSet.objects.filter(pk=instance.pk).values("status", "version", "note").first()
    if stored is None or stored["status"] != RuleSet.Status.PUBLISHED:
        return
    update_fields = kwargs.get("update_fields")
    # Only whether it is in force may change (publishing another version, or a rollback).
    if update_fields is None or not set(update_fields) <= {"is_current"}:
        raise PublishedRuleSetError(f"Rule set {instance.label} is published and immutable.")


models.signals.pre_delete.connect(_refuse_published_change, dispatch_uid="pathways-ruleset-del")
models.signals.pre_save.connect(_refuse_published_edit, sender=RuleSet, dispatch_uid="ruleset-save")


# ---------------------------------------------------------------------------------------------
# Background work: re-assessment runs, impact previews, task heartbeats.


class ReassessmentRun(models.Model):
    """One re-assessment of many patients by background tasks, one task per chunk.

    Each patient is re-assessed against the rule set in force when its turn comes (a later
    publication is never undone by an older run); ``rule_set`` is the version the run was
    started for. Progress and failures are kept per chunk, so re-running a chunk replaces its
    figures instead of adding to them.
    """

    class Reason(models.TextChoices):
        PUBLISH = "publish", "publication"
        ROLLBACK = "rollback", "rollback"
        DAILY = "daily", "daily"
        MANUAL = "manual", "manual"
        RETRY = "retry", "retry"

    reason = models.CharField(max_length=10, choices=Reason.choices)
    rule_set = models.ForeignKey(
        RuleSet, on_delete=models.PROTECT, related_name="reassessment_runs"
    )
    publication = models.ForeignKey(
        RuleSetPublication,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reassessment_runs",
    )
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The scheduler's daily run for this date: unique, so two schedulers cannot both start it.
    daily_for = models.DateField(null=True, blank=True, unique=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"re-assessment #{self.pk} ({self.get_reason_display()}, {self.rule_set})"


class ReassessmentChunk(models.Model):
    """The patients one task re-assesses, and what became of them on its latest run."""

    run = models.ForeignKey(ReassessmentRun, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    patient_ids = models.JSONField(default=list)
    # The last chunk of a full run also takes patients added after the run was planned.
    after_pk = models.BigIntegerField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    failures = models.JSONField(default=list)  # [{"patient": id, "error": "…"}]
    attempts = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="reassessmentchunk_once")
        ]

    def __str__(self) -> str:
        return f"chunk {self.number} of run {self.run_id}"


class ImpactPreview(models.Model):
    """An impact preview computed by a background task for one editor (it names only the
    patients of that editor's clinics, so only they see it)."""

    draft = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="previews")
    published = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    # The draft's last edit when the preview was asked for: a later edit makes it out of date.
    draft_edited_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    patients_total = models.PositiveIntegerField(default=0)
    patients_done = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]

    def __str__(self) -> str:
        return f"impact preview #{self.pk} of {self.draft}"


class TaskHeartbeat(models.Model):
    """The last sign of life of a running background task (see tasks.tasks_reap)."""

    task_id = models.CharField(max_length=64, primary_key=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.task_id} at {self.beat_at:%H:%M:%S}"


# ---------------------------------------------------------------------------------------------
# Governance: which rules start and stop firing for a patient, what a publication changed for
# each clinic, and which clinicians have dismissed the notice about it.


class RuleFiring(models.Model):
    """A rule code started or stopped firing for a patient (written when the snapshot changes).

    Append-only evidence for rule analytics: for whom a rule fired in a period, and since when.
    """

    class Change(models.TextChoices):
        STARTED = "started", "started firing"
        STOPPED = "stopped", "stopped firing"

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="firings")
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    code = models.CharField(max_length=60)
    change = models.CharField(max_length=7, choices=Change.choices)
    at = models.DateTimeField(default=timezone.now)
    rule_set_version = models.CharField(max_length=40)
    # Why the assessment was refreshed: a clinician's edit, or a re-assessment run.
    cause = models.CharField(max_length=12, default="edit")
    # The re-assessment run whose chunk logged it (none: an edit, or a snooze's end): what a
    # publication changed is what its run and its retries logged, not what others did meanwhile.
    run = models.ForeignKey(
        ReassessmentRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["at", "pk"]
        indexes = [
            models.Index(fields=["code", "at"], name="rulefiring_code_at_idx"),
            models.Index(fields=["patient", "at"], name="rulefiring_patient_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.change} for {self.patient_id} at {self.at:%Y-%m-%d %H:%M}"


class PublicationClinicImpact(models.Model):
    """What a publication changed for one clinic's patients, counted by its re-assessment run:
    ``changes`` is {rule code: {"gained": n, "lost": n}}."""

    publication = models.ForeignKey(
        RuleSetPublication, on_delete=models.CASCADE, related_name="clinic_impacts"
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    patients_changed = models.PositiveIntegerField(default=0)
    changes = models.JSONField(default=dict)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["publication", "clinic"], name="publication_clinic_impact_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.publication} for {self.clinic}: {self.patients_changed} patient(s)"


class PublicationNoticeDismissal(models.Model):
    """A clinician dismissed the worklist notice about a publication."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    publication = models.ForeignKey(RuleSetPublication, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "publication"], name="notice_dismissed_once")
        ]

    def __str__(self) -> str:
        return f"{self.user} dismissed {self.publication}"


# CDS Hooks clients, cards and feedback live in their own module; imported here so that Django
# registers them with the app.
from pathways.cds_models import CdsCard, CdsClient, CdsFeedback, CdsJwtUse  # noqa: E402, F401

# The HL7 feed's models live in their own module; importing it registers them with the app.
from pathways.feed_models import Hl7Feed, Hl7LocalCode, Hl7Message, Hl7Result  # noqa: E402, F401
