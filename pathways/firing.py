"""Which rules start and stop firing for each patient (the firing log), what a publication
changed for each clinic's patients, and the worklist notice that tells clinicians about it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from pathways.models import (
    Clinic,
    Patient,
    PublicationClinicImpact,
    PublicationNoticeDismissal,
    ReassessmentRun,
    RuleFiring,
    RuleSetPublication,
)

REASSESSMENT = "reassessment"


def firing_log_record(
    *,
    patient: Patient,
    before: Iterable[str],
    after: Iterable[str],
    rule_set_version: str,
    cause: str = "edit",
    run_id: int | None = None,
) -> list[RuleFiring]:
    """Append a row for each rule code that started or stopped firing; nothing if none did."""
    old, new = set(before), set(after)
    if old == new:
        return []
    now = timezone.now()
    rows = [
        RuleFiring(
            patient=patient,
            clinic_id=patient.clinic_id,
            code=code,
            change=change,
            at=now,
            rule_set_version=rule_set_version,
            cause=cause,
            run_id=run_id,
        )
        for codes, change in (
            (sorted(new - old), RuleFiring.Change.STARTED),
            (sorted(old - new), RuleFiring.Change.STOPPED),
        )
        for code in codes
    ]
    return RuleFiring.objects.bulk_create(rows)


# ---------------------------------------------------------------------------------------------
# What a publication changed for each clinic (counted when its re-assessment run finishes).


def publication_impact_store(*, run: ReassessmentRun) -> list[PublicationClinicImpact]:
    """Count, per clinic, the patients who gained or lost each recommendation under the version
    ``run``'s publication put in force.

    Each patient is re-assessed with the rule set in force when their turn comes, so the
    publication's changes are the firing rows of its version logged since it was published by
    the re-assessments of publications: its own run and retries, but also an earlier
    publication's run still going when it was published (which re-assesses its patients under
    the newer version first, leaving nothing to change for the newer one's run) and that run's
    retries. What other re-assessments logged meanwhile (the daily run, a manual one, a
    snooze's end, an edit) does not count.
    """
    publication = run.publication
    origin = run
    while publication is None and origin.retry_of_id is not None:
        origin = ReassessmentRun.objects.get(pk=origin.retry_of_id)
        publication = origin.publication
    if publication is None:
        return []
    own = _with_retries({origin.pk})
    # And the other publications' runs not yet finished when this one was published (their
    # retries too): their rows of this version since then.
    others = _with_retries(
        set(
            ReassessmentRun.objects.filter(publication__isnull=False)
            .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=publication.at))
            .exclude(pk=origin.pk)
            .values_list("pk", flat=True)
        )
    )
    rows = RuleFiring.objects.filter(
        Q(run__in=own) | Q(run__in=others - own, at__gte=publication.at),
        rule_set_version=publication.rule_set.version,
    ).values_list("clinic_id", "patient_id", "code", "change")
    changes: dict[int, dict[str, dict[str, int]]] = defaultdict(dict)
    patients: dict[int, set[int]] = defaultdict(set)
    for clinic_id, patient_id, code, change in rows:
        key = "gained" if change == RuleFiring.Change.STARTED else "lost"
        counts = changes[clinic_id].setdefault(code, {"gained": 0, "lost": 0})
        counts[key] += 1
        patients[clinic_id].add(patient_id)
    stored = []
    with transaction.atomic():
        for clinic_id in Clinic.objects.values_list("pk", flat=True):
            impact, _ = PublicationClinicImpact.objects.update_or_create(
                publication=publication,
                clinic_id=clinic_id,
                defaults={
                    "patients_changed": len(patients.get(clinic_id, ())),
                    "changes": dict(sorted(changes.get(clinic_id, {}).items())),
                    "computed_at": timezone.now(),
                },
            )
            stored.append(impact)
    return stored


def _with_retries(runs: set[int]) -> set[int]:
    """These runs, their retries, and theirs."""
    found, added = set(runs), set(runs)
    while added:
        added = set(ReassessmentRun.objects.filter(retry_of__in=added).values_list("pk", flat=True))
        added -= found
        found |= added
    return found


# ---------------------------------------------------------------------------------------------
# The worklist notice.


@dataclass(frozen=True)
class CodeCount:
    code: str
    title: str
    gained: int
    lost: int


@dataclass(frozen=True)
class PublicationNotice:
    publication: RuleSetPublication
    counted: bool  # False while the re-assessment has not finished
    patients_changed: int
    codes: list[CodeCount]


def publication_notice_for(
    user: Any, *, publication: RuleSetPublication | None = None
) -> PublicationNotice | None:
    """The latest publication this clinician has not dismissed, with their clinics' counts
    (or, given ``publication``, that one's counts whether dismissed or not)."""
    if not getattr(user, "is_authenticated", False):
        return None
    if publication is None:
        # One query for the worklist: the latest publication, and whether it was dismissed.
        dismissed = PublicationNoticeDismissal.objects.filter(user=user, publication=OuterRef("pk"))
        publication = (
            RuleSetPublication.objects.select_related("rule_set", "by")
            .annotate(dismissed=Exists(dismissed))
            .order_by("-at", "-pk")
            .first()
        )
        if publication is None or getattr(publication, "dismissed", False):
            return None
    impacts = list(
        PublicationClinicImpact.objects.filter(
            publication=publication, clinic__memberships__user=user
        )
    )
    titles = dict(publication.rule_set.rules.values_list("code", "title"))
    totals: dict[str, list[int]] = {}
    for impact in impacts:
        for code, counts in impact.changes.items():
            total = totals.setdefault(code, [0, 0])
            total[0] += counts.get("gained", 0)
            total[1] += counts.get("lost", 0)
    codes = [
        CodeCount(code, titles.get(code, code), gained, lost)
        for code, (gained, lost) in sorted(totals.items())
    ]
    return PublicationNotice(
        publication=publication,
        counted=bool(impacts),
        patients_changed=sum(impact.patients_changed for impact in impacts),
        codes=codes,
    )


def publication_notice_dismiss(*, user: Any, publication: RuleSetPublication) -> None:
    PublicationNoticeDismissal.objects.get_or_create(user=user, publication=publication)
