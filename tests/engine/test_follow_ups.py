"""Follow-ups (§5): every code, its due date, its creating rule and each reachable status."""

from __future__ import annotations

from typing import Any

import pytest

from pathways.engine import FollowUp
from tests.engine.clinical_cases import (
    assess_document,
    lab,
    merged,
    myeloma_on_zoledronic_acid_14_months,
    myeloma_starting_bortezomib,
    paget_with_elevated_alp_on_alendronate,
)


def follow_ups(document: dict[str, Any]) -> dict[str, FollowUp]:
    result = assess_document(document)
    found = {follow_up.code: follow_up for follow_up in result.follow_ups}
    assert len(found) == len(result.follow_ups), "one entry per code"
    return found


def due_and_status(document: dict[str, Any], code: str) -> tuple[str, str]:
    follow_up = follow_ups(document)[code]
    return follow_up.due.isoformat(), follow_up.status


# --- alp-3-months, alp-6-months -------------------------------------------------------------


def test_alp_3_and_6_months_after_treatment_start_are_upcoming() -> None:
    found = follow_ups(myeloma_starting_bortezomib())
    assert (found["alp-3-months"].due.isoformat(), found["alp-3-months"].status) == (
        "2026-12-01",
        "upcoming",
    )
    assert found["alp-6-months"].due.isoformat() == "2027-03-01"
    assert found["alp-3-months"].rule == found["alp-6-months"].rule == "mm-alp-3-6-months"


def _treated_from_may(alp_dates: list[str]) -> dict[str, Any]:
    document = merged(
        myeloma_starting_bortezomib(),
        labs=[lab("alp", 90, day) for day in alp_dates],
        clinical={"myeloma": {"treatment_start": "2026-05-01", "bortezomib_start": None}},
    )
    return document


def test_alp_3_months_done_by_an_alp_from_due_minus_14_days() -> None:
    assert due_and_status(_treated_from_may(["2026-07-18"]), "alp-3-months") == (
        "2026-08-01",
        "done",
    )


def test_alp_3_months_overdue_when_the_alp_came_a_day_too_early() -> None:
    assert due_and_status(_treated_from_may(["2026-07-17"]), "alp-3-months") == (
        "2026-08-01",
        "overdue",
    )


def test_alp_6_months_done_after_the_due_date() -> None:
    assert due_and_status(_treated_from_may(["2026-11-20"]), "alp-6-months") == (
        "2026-11-01",
        "done",
    )


def test_treatment_start_on_31_january_gives_month_ends() -> None:
    document = merged(
        myeloma_starting_bortezomib(),
        as_of="2026-02-10",
        labs=[lab("alp", 90, "2026-01-30")],
        clinical={"myeloma": {"treatment_start": "2026-01-31", "bortezomib_start": None}},
    )
    found = follow_ups(document)
    assert found["alp-3-months"].due.isoformat() == "2026-04-30"
    assert found["alp-6-months"].due.isoformat() == "2026-07-31"


# --- alp-day-42 -------------------------------------------------------------------------------


def test_alp_day_42_is_created_by_the_bortezomib_start_alone() -> None:
    follow_up = follow_ups(myeloma_starting_bortezomib())["alp-day-42"]
    assert follow_up.due.isoformat() == "2026-10-13"
    assert follow_up.status == "overdue"
    assert follow_up.rule is None


def test_alp_day_42_done_and_upcoming() -> None:
    document = myeloma_starting_bortezomib()
    document["labs"].append(lab("alp", 100, "2026-09-29"))  # due - 14 days
    assert due_and_status(document, "alp-day-42") == ("2026-10-13", "done")
    document = merged(myeloma_starting_bortezomib(), as_of="2026-10-13")
    assert due_and_status(document, "alp-day-42") == ("2026-10-13", "upcoming")


# --- renal-before-infusion --------------------------------------------------------------------


def _on_zoledronic_acid(start: str, as_of: str, labs: list[dict[str, Any]]) -> dict[str, Any]:
    return merged(
        myeloma_on_zoledronic_acid_14_months(),
        as_of=as_of,
        labs=labs,
        clinical={
            "therapies": [{"agent": "zoledronic_acid", "start": start}],
            "myeloma": {"treatment_start": None},
        },
    )


@pytest.mark.parametrize(
    ("start", "as_of", "due"),
    [
        ("2025-09-15", "2026-11-22", "2026-12-15"),
        ("2025-09-15", "2026-11-15", "2026-11-15"),  # an anniversary on as_of counts
        ("2025-09-15", "2026-11-16", "2026-12-15"),
        ("2026-01-31", "2026-02-15", "2026-02-28"),  # 31 January + 1 month
        ("2026-01-31", "2026-03-01", "2026-03-31"),  # computed from the start, not chained
        ("2028-01-31", "2028-02-01", "2028-02-29"),
        ("2026-11-22", "2026-11-22", "2026-11-22"),  # first infusion today
    ],
)
def test_renal_before_infusion_is_the_next_monthly_anniversary(
    start: str, as_of: str, due: str
) -> None:
    follow_up = follow_ups(_on_zoledronic_acid(start, as_of, []))["renal-before-infusion"]
    assert follow_up.due.isoformat() == due
    assert follow_up.status == "upcoming"
    assert follow_up.rule == "iv-bp-renal-before-infusion"


@pytest.mark.parametrize("test", ["crcl", "creatinine"])
def test_renal_before_infusion_done_by_crcl_or_creatinine_within_14_days(test: str) -> None:
    in_window = _on_zoledronic_acid("2025-09-15", "2026-12-10", [lab(test, 1, "2026-12-01")])
    assert due_and_status(in_window, "renal-before-infusion") == ("2026-12-15", "done")
    too_early = _on_zoledronic_acid("2025-09-15", "2026-12-10", [lab(test, 1, "2026-11-30")])
    assert due_and_status(too_early, "renal-before-infusion") == ("2026-12-15", "upcoming")


def test_renal_before_infusion_is_not_satisfied_by_an_alp() -> None:
    document = _on_zoledronic_acid("2025-09-15", "2026-12-10", [lab("alp", 90, "2026-12-05")])
    assert due_and_status(document, "renal-before-infusion") == ("2026-12-15", "upcoming")


# --- bp-review-1y, bp-review-2y -------------------------------------------------------------


def test_bisphosphonate_reviews_at_one_and_two_years() -> None:
    found = follow_ups(myeloma_on_zoledronic_acid_14_months())
    assert (found["bp-review-1y"].due.isoformat(), found["bp-review-1y"].status) == (
        "2026-09-15",
        "overdue",
    )
    assert (found["bp-review-2y"].due.isoformat(), found["bp-review-2y"].status) == (
        "2027-09-15",
        "upcoming",
    )
    assert found["bp-review-1y"].rule is None and found["bp-review-2y"].rule is None


def test_bisphosphonate_reviews_are_events_no_lab_marks_them_done() -> None:
    document = myeloma_on_zoledronic_acid_14_months()
    document["labs"] += [lab("alp", 90, "2026-09-15"), lab("creatinine", 1, "2026-09-15")]
    assert follow_ups(document)["bp-review-1y"].status == "overdue"


def test_no_bisphosphonate_review_without_an_iv_bisphosphonate() -> None:
    document = merged(myeloma_on_zoledronic_acid_14_months(), clinical={"therapies": []})
    assert not {"bp-review-1y", "bp-review-2y", "renal-before-infusion"} & set(follow_ups(document))


# --- dental-exam ------------------------------------------------------------------------------


def test_dental_exam_is_due_on_as_of() -> None:
    document = merged(myeloma_on_zoledronic_acid_14_months(), clinical={"dental_exam_done": False})
    follow_up = follow_ups(document)["dental-exam"]
    assert (follow_up.due.isoformat(), follow_up.status, follow_up.rule) == (
        "2026-11-22",
        "upcoming",
        "antiresorptive-dental-exam",
    )


def test_no_dental_exam_follow_up_once_done() -> None:
    assert "dental-exam" not in follow_ups(myeloma_on_zoledronic_acid_14_months())


# --- alp-recheck ------------------------------------------------------------------------------


def test_alp_recheck_three_months_after_the_latest_alp() -> None:
    follow_up = follow_ups(paget_with_elevated_alp_on_alendronate())["alp-recheck"]
    assert (follow_up.due.isoformat(), follow_up.status) == ("2027-01-01", "upcoming")
    assert follow_up.rule == "paget-monitor-alp"  # as in the spec's §6 example
    assert follow_up.title == "Recheck ALP"


def test_alp_recheck_six_months_when_alp_normalised() -> None:
    document = merged(
        paget_with_elevated_alp_on_alendronate(),
        labs=[
            lab("alp", 412, "2026-01-05", reference_high=129),
            lab("alp", 100, "2026-10-01", reference_high=129),
        ],
    )
    result = assess_document(document)
    assert "alp-normalised" in [r.code for r in result.recommendations]
    (follow_up,) = [f for f in result.follow_ups if f.code == "alp-recheck"]
    assert (follow_up.due.isoformat(), follow_up.status) == ("2027-04-01", "upcoming")


def test_alp_recheck_overdue() -> None:
    document = merged(
        paget_with_elevated_alp_on_alendronate(),
        labs=[lab("alp", 412, "2026-05-31", reference_high=129)],
    )
    assert due_and_status(document, "alp-recheck") == ("2026-08-31", "overdue")


def test_alp_recheck_from_monitor_alp_response_outside_paget() -> None:
    document = merged(
        paget_with_elevated_alp_on_alendronate(),
        clinical={"diagnoses": ["hyperparathyroidism"]},
    )
    follow_up = follow_ups(document)["alp-recheck"]
    assert follow_up.rule == "monitor-alp-response"


def test_no_alp_recheck_without_an_alp_to_count_from() -> None:
    document = merged(paget_with_elevated_alp_on_alendronate(), labs=[])
    assert "alp-recheck" not in follow_ups(document)


# --- paget-evaluation -------------------------------------------------------------------------


def test_paget_evaluation_six_months_after_start_plus_six_months_when_no_end() -> None:
    follow_up = follow_ups(paget_with_elevated_alp_on_alendronate())["paget-evaluation"]
    assert (follow_up.due.isoformat(), follow_up.status, follow_up.rule) == (
        "2027-01-10",
        "upcoming",
        None,
    )


def _course_ended(end: str, alp_date: str) -> dict[str, Any]:
    return merged(
        paget_with_elevated_alp_on_alendronate(),
        labs=[lab("alp", 150, alp_date, reference_high=129)],
        clinical={"therapies": [{"agent": "alendronate", "start": "2025-10-01", "end": end}]},
    )


def test_paget_evaluation_after_the_course_end() -> None:
    assert due_and_status(_course_ended("2026-04-01", "2026-09-16"), "paget-evaluation") == (
        "2026-10-01",
        "overdue",
    )
    assert due_and_status(_course_ended("2026-04-01", "2026-09-17"), "paget-evaluation") == (
        "2026-10-01",
        "done",
    )


def test_paget_evaluation_after_a_zoledronic_acid_infusion_too() -> None:
    # Revision 2: any bisphosphonate course (the most recent), not only alendronate.
    document = merged(
        paget_with_elevated_alp_on_alendronate(),
        clinical={
            "therapies": [{"agent": "zoledronic_acid", "start": "2026-01-10", "end": "2026-01-10"}]
        },
    )
    # the ALP of 2026-10-01 came after the due date: done
    assert due_and_status(document, "paget-evaluation") == ("2026-07-10", "done")


def test_no_paget_evaluation_without_a_bisphosphonate_course() -> None:
    document = merged(
        paget_with_elevated_alp_on_alendronate(),
        clinical={"therapies": [{"agent": "denosumab", "start": "2026-01-10"}]},
    )
    assert "paget-evaluation" not in follow_ups(document)


# --- ordering --------------------------------------------------------------------------------


def test_follow_ups_are_ordered_by_due_date_then_code() -> None:
    result = assess_document(myeloma_on_zoledronic_acid_14_months())
    keys = [(follow_up.due, follow_up.code) for follow_up in result.follow_ups]
    assert keys == sorted(keys)
    same_day = merged(
        myeloma_starting_bortezomib(),
        clinical={"myeloma": {"treatment_start": "2026-07-13", "bortezomib_start": "2026-09-01"}},
    )
    codes = [
        f.code for f in assess_document(same_day).follow_ups if f.due.isoformat() == "2026-10-13"
    ]
    assert codes == ["alp-3-months", "alp-day-42"]
