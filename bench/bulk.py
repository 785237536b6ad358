"""Bulk seeding for the benchmarks only: patients, results and therapies with bulk_create.

That skips history rows and services (acceptable in a benchmark, never in the app); the cases
are the demo's synthetic ones, parsed by the engine like any other.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date

from django.db import transaction
from django.utils import timezone

from pathways import engine
from pathways.cases import apply_case_to_patient, lab_result_fields
from pathways.demo import synthetic_case
from pathways.models import (
    AssessmentSnapshot,
    Clinic,
    FollowUp,
    LabResult,
    Patient,
    Therapy,
    name_sort_key,
)
from pathways.rules import current_rule_set
from pathways.services import snapshot_fields, worklist_share, worklist_tally_rebuild

BATCH = 1000


def bulk_seed(
    *, clinic: Clinic, count: int, start: int, results: int, today: date
) -> Iterator[list[tuple[Patient, engine.Case]]]:
    """Seed ``count`` synthetic patients numbered from ``start``; yields each stored batch
    (inside its transaction) so a caller can add what it derives from the cases."""
    rng = random.Random(start + 1)
    for first in range(start, start + count, BATCH):
        batch: list[tuple[Patient, engine.Case]] = []
        for number in range(first, min(first + BATCH, start + count)):
            case = engine.parse_case(synthetic_case(rng, today, results=results))
            name = f"Patient Bench{number}"  # bulk_create skips save(): its sort key here
            patient = Patient(
                clinic=clinic, mrn=f"B-{number:06d}", name=name, sort_name=name_sort_key(name)
            )
            apply_case_to_patient(case, patient)
            batch.append((patient, case))
        with transaction.atomic():
            Patient.objects.bulk_create([patient for patient, _ in batch])
            LabResult.objects.bulk_create(
                [
                    LabResult(patient=patient, **lab_result_fields(lab))
                    for patient, case in batch
                    for lab in case.labs
                ],
                batch_size=2000,
            )
            Therapy.objects.bulk_create(
                [
                    Therapy(patient=patient, agent=t.agent, start=t.start, end=t.end)
                    for patient, case in batch
                    for t in case.clinical.therapies
                ]
            )
            yield batch


def seed_assessed(*, clinic: Clinic, count: int, start: int, results: int, today: date) -> None:
    """Bulk seeding, then each patient's follow-ups and snapshot from the real engine result,
    as services.follow_ups_sync stores them."""
    rule_set = current_rule_set()
    now = timezone.now()
    for batch in bulk_seed(clinic=clinic, count=count, start=start, results=results, today=today):
        follow_ups, snapshots = [], []
        for patient, case in batch:
            result = engine.assess(case, rule_set)
            snapshot = snapshot_fields(result)
            follow_ups += [
                FollowUp(
                    patient=patient,
                    code=item.code,
                    due=item.due,
                    rule=item.rule or "",
                    title=item.title,
                    rule_set_version=result.rule_set,
                    completed_at=now if item.status == "done" else None,
                    completed_by_result=item.status == "done",
                )
                for item in result.follow_ups
            ]
            next_due = min(
                (item.due for item in result.follow_ups if item.status != "done"), default=None
            )
            snapshots.append(
                AssessmentSnapshot(
                    patient=patient,
                    clinic=clinic,
                    # the worklist's copies, as services.worklist_copies_store (no actions yet)
                    action_rank=snapshot["top_priority_rank"],
                    next_due=next_due,
                    scheduled=next_due is not None,
                    tallied=worklist_share(
                        clinic.pk, snapshot["pathway"], snapshot["top_priority_rank"], next_due
                    ),
                    **snapshot,
                )
            )
        FollowUp.objects.bulk_create(follow_ups, batch_size=2000)
        AssessmentSnapshot.objects.bulk_create(snapshots, batch_size=2000)
    worklist_tally_rebuild()  # the worklist's counts, as the app keeps them
