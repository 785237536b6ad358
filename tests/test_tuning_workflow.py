"""Rule tuning services: drafts, the publish gate, four-eyes, rollback, impact preview, diff."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from pathways import engine, impact, publishing, rules, services, tasks, versions
from pathways.cases import patient_to_case
from pathways.models import (
    AssessmentSnapshot,
    Clinic,
    FollowUp,
    FollowUpRule,
    Parameter,
    Patient,
    PublicationClinicImpact,
    ReassessmentRun,
    Rule,
    RuleExample,
    RuleFiring,
    RuleSet,
    RuleSetPublication,
)
from tests.conftest import rule_editor
from tests.factories import (
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
    publish_reviewed,
    stored_patient,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def second_publisher(db: Any) -> User:
    return rule_editor("quinn", publisher=True)


def extreme_alp_threshold_raised(draft: RuleSet, *, user: User, to: float = 1200) -> None:
    """What an editor does in the admin: the parameter, and the rule's boundary examples."""
    parameter = Parameter.objects.get(rule_set=draft, name="extreme_alp")
    parameter.value = to
    parameter.save()
    publishing.ruleset_touch(rule_set=draft, user=user)


def extreme_alp_examples_moved(draft: RuleSet, *, user: User, to: float = 1200) -> None:
    for example in RuleExample.objects.filter(rule_set=draft, rule__code="extreme-alp"):
        for lab in example.case.get("labs", []):
            if lab["test"] != "alp":
                continue
            if lab["unit"] == "ukat/L":
                lab["value"] = round((to + 0.6) / 60, 2)
            elif lab["value"] >= 1000:
                lab["value"] = round(lab["value"] - 1000 + to, 1)
        example.save()
    publishing.ruleset_touch(rule_set=draft, user=user)


def current_version() -> str:
    return RuleSet.objects.get(is_current=True).label


def test_a_draft_is_a_full_copy_of_the_version_in_force(editor: User) -> None:
    published = RuleSet.objects.get(is_current=True)
    draft = publishing.ruleset_start_draft(user=editor)
    assert draft.is_draft and draft.based_on == published
    assert draft.last_edited_by == editor
    assert (
        Rule.objects.filter(rule_set=draft).count()
        == Rule.objects.filter(rule_set=published).count()
    )
    assert RuleExample.objects.filter(rule_set=draft).count() > 0
    assert versions.ruleset_diff(old=published, new=draft) == []
    assert publishing.ruleset_check(rule_set=draft).publishable


def test_failing_examples_block_publishing_and_say_why(editor: User, publisher: User) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)

    check = publishing.ruleset_check(rule_set=draft)
    failing = {(o.rule, o.example) for o in check.failing_examples}
    assert ("extreme-alp", "ALP 1000.1 U/L") in failing
    assert any("must fire, did not fire" in line for line in check.problems())
    with pytest.raises(publishing.TuningError, match="extreme-alp"):
        publish_reviewed(rule_set=draft, user=publisher, note="Raise to 1200 U/L")
    draft.refresh_from_db()
    assert draft.is_draft and current_version() == "2026-11-29.1"

    extreme_alp_examples_moved(draft, user=editor)
    assert publishing.ruleset_check(rule_set=draft).publishable


def test_a_condition_that_does_not_compile_blocks_publishing(editor: User, publisher: User) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    rule.condition = "alp_latest > params.extreme_alpp"
    rule.save()
    check = publishing.ruleset_check(rule_set=draft)
    assert not check.publishable
    assert any("extreme_alpp" in str(error) for error in check.errors)
    with pytest.raises(publishing.TuningError, match="cannot be published"):
        publish_reviewed(rule_set=draft, user=publisher, note="typo")


def test_a_parameter_outside_its_range_blocks_publishing(editor: User, publisher: User) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    Parameter.objects.filter(rule_set=draft, name="extreme_alp").update(value=99999)
    check = publishing.ruleset_check(rule_set=draft)
    assert any("outside" in str(error) for error in check.errors)
    with pytest.raises(publishing.TuningError):
        publish_reviewed(rule_set=draft, user=publisher, note="too high")


def test_a_rule_needs_an_example_on_each_side_of_its_boundary(
    editor: User, publisher: User
) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    for example in RuleExample.objects.filter(rule_set=draft, rule__code="extreme-alp"):
        if not example.fires:
            example.delete()
    check = publishing.ruleset_check(rule_set=draft)
    assert [str(e) for e in check.errors] == ["rule extreme-alp: no example where it does not fire"]
    with pytest.raises(publishing.TuningError, match="no example where it does not fire"):
        publish_reviewed(rule_set=draft, user=publisher, note="fewer examples")


def test_four_eyes_the_last_editor_cannot_publish_their_own_draft(
    publisher: User, second_publisher: User
) -> None:
    draft = publishing.ruleset_start_draft(user=publisher)
    extreme_alp_threshold_raised(draft, user=publisher)
    extreme_alp_examples_moved(draft, user=publisher)
    with pytest.raises(publishing.TuningError, match="Four-eyes"):
        publish_reviewed(rule_set=draft, user=publisher, note="mine")

    published = publish_reviewed(rule_set=draft, user=second_publisher, note="reviewed")
    assert published.published_by == second_publisher
    assert not published.is_draft


def test_a_later_edit_moves_the_four_eyes_to_the_new_editor(
    editor: User, publisher: User, second_publisher: User
) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=publisher)  # the publisher touched it last
    extreme_alp_examples_moved(draft, user=publisher)
    with pytest.raises(publishing.TuningError, match="Four-eyes"):
        publish_reviewed(rule_set=draft, user=publisher, note="mine now")
    publish_reviewed(rule_set=draft, user=second_publisher, note="reviewed")


def test_four_eyes_whoever_submits_a_draft_for_review_cannot_publish_it(
    editor: User, publisher: User, second_publisher: User
) -> None:
    """A publisher could submit an editor's draft with a rationale of their own, then approve
    and publish it: one person asked for the review and gave it."""
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    extreme_alp_examples_moved(draft, user=editor)
    publishing.ruleset_submit(rule_set=draft, user=publisher, rationale="the publisher's reason")
    with pytest.raises(publishing.TuningError, match="Four-eyes"):
        publishing.ruleset_publish(rule_set=draft, user=publisher, note="approved by myself")
    published = publishing.ruleset_publish(rule_set=draft, user=second_publisher, note="ok")
    assert published.published_by == second_publisher


def test_publishing_needs_the_publisher_permission_and_a_note(
    editor: User, publisher: User
) -> None:
    other_editor = rule_editor("lee")
    draft = publishing.ruleset_start_draft(user=editor)
    with pytest.raises(publishing.TuningError, match="permission"):
        publish_reviewed(rule_set=draft, user=other_editor, note="please")
    with pytest.raises(publishing.TuningError, match="note"):
        publish_reviewed(rule_set=draft, user=publisher, note="   ")
    draft.refresh_from_db()
    assert draft.is_draft


def test_publishing_labels_the_version_and_every_result_names_it(
    north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    patient = stored_patient(north_clinic, alice, _paget_with_latest_alp(1100))
    assert "extreme-alp" in patient.snapshot.recommendation_codes
    before = RuleSet.objects.get(is_current=True)

    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    extreme_alp_examples_moved(draft, user=editor)
    published = publish_reviewed(rule_set=draft, user=publisher, note="Raise to 1200 U/L")

    today = timezone.localdate().isoformat()
    expected_number = RuleSet.objects.filter(version__startswith=f"{today}.").count()
    assert published.version == f"{today}.{expected_number}"
    assert published.is_current and published.note == "Raise to 1200 U/L"
    before.refresh_from_db()
    assert not before.is_current and before.status == RuleSet.Status.PUBLISHED
    publication = RuleSetPublication.objects.get(rule_set=published)
    assert publication.kind == "publish"
    assert (publication.by, publication.replaced) == (publisher, before)

    snapshot = AssessmentSnapshot.objects.get(patient=patient)
    assert snapshot.rule_set_version == published.version
    assert "extreme-alp" not in snapshot.recommendation_codes
    assert set(FollowUp.objects.filter(patient=patient).values_list("rule_set_version", flat=True))
    for follow_up in FollowUp.objects.filter(patient=patient, completed_at__isnull=True):
        assert follow_up.rule_set_version == published.version
    assert rules.current_rule_set().version == published.version


def test_rollback_puts_the_earlier_version_back_in_force(
    north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    patient = stored_patient(north_clinic, alice, _paget_with_latest_alp(1100))
    original = RuleSet.objects.get(is_current=True)
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    extreme_alp_examples_moved(draft, user=editor)
    raised = publish_reviewed(rule_set=draft, user=publisher, note="Raise to 1200 U/L")

    with pytest.raises(publishing.TuningError, match="permission"):
        publishing.ruleset_rollback(rule_set=original, user=editor, note="undo")
    with pytest.raises(publishing.TuningError, match="already in force"):
        publishing.ruleset_rollback(rule_set=raised, user=publisher, note="undo")
    publishing.ruleset_rollback(rule_set=original, user=publisher, note="Too many missed alerts")

    original.refresh_from_db()
    raised.refresh_from_db()
    assert original.is_current and not raised.is_current
    assert original.version == "2026-11-29.1"  # the label is the version's, not the rollback's
    rollback = RuleSetPublication.objects.filter(rule_set=original).get()
    assert (rollback.kind, rollback.by, rollback.replaced) == ("rollback", publisher, raised)
    snapshot = AssessmentSnapshot.objects.get(patient=patient)
    assert snapshot.rule_set_version == original.version
    assert "extreme-alp" in snapshot.recommendation_codes


def test_a_rollback_by_another_worker_counts_from_the_next_assessment(
    editor: User, publisher: User, django_assert_num_queries: Any
) -> None:
    original = RuleSet.objects.get(is_current=True)
    assert rules.current_rule_set().version == original.version  # loaded while in force
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    extreme_alp_examples_moved(draft, user=editor)
    raised = publish_reviewed(rule_set=draft, user=publisher, note="Raise", reassess=False)
    assert rules.current_rule_set().version == raised.version
    # Another gunicorn worker's rollback, as this process sees it: only the rows change.
    RuleSet.objects.filter(pk=raised.pk).update(is_current=False)
    RuleSet.objects.filter(pk=original.pk).update(is_current=True)
    with django_assert_num_queries(1):  # loaded once per process: then one indexed lookup
        assert rules.current_rule_set().version == original.version
    RuleSet.objects.filter(is_current=True).update(is_current=False)
    with pytest.raises(rules.NoPublishedRuleSet):
        rules.current_rule_set()


def test_a_draft_cannot_be_rolled_back_to_and_a_published_set_not_published_again(
    editor: User, publisher: User
) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    with pytest.raises(publishing.TuningError, match="publish the draft"):
        publishing.ruleset_rollback(rule_set=draft, user=publisher, note="x")
    current = RuleSet.objects.get(is_current=True)
    with pytest.raises(publishing.TuningError, match="already published"):
        publish_reviewed(rule_set=current, user=publisher, note="x")
    with pytest.raises(publishing.TuningError, match="from a published version"):
        publishing.ruleset_start_draft(user=editor, base=draft)


def _paget_with_latest_alp(value: float) -> dict[str, Any]:
    document = paget_on_alendronate_document()
    document["labs"][-1]["value"] = value
    return document


@pytest.fixture
def small_population(
    north_clinic: Clinic, south_clinic: Clinic, alice: User, bob: User
) -> list[Patient]:
    patients = [
        stored_patient(north_clinic, alice, _paget_with_latest_alp(alp), mrn=f"N-{alp}")
        for alp in (260, 950, 1100, 1199, 1250, 3000)
    ]
    patients += [
        stored_patient(south_clinic, bob, _paget_with_latest_alp(alp), mrn=f"S-{alp}")
        for alp in (1050, 1500)
    ]
    myeloma = myeloma_on_zoledronic_acid_14_months_document()
    patients.append(stored_patient(north_clinic, alice, myeloma, mrn="M"))
    return patients


def _direct_comparison(
    patients: list[Patient], old: engine.RuleSet, new: engine.RuleSet
) -> tuple[Counter[str], Counter[str], Counter[str], Counter[str], int]:
    appear: Counter[str] = Counter()
    disappear: Counter[str] = Counter()
    follow_ups_appear: Counter[str] = Counter()
    follow_ups_disappear: Counter[str] = Counter()
    changed = 0
    for patient in patients:
        case = patient_to_case(patient, as_of=timezone.localdate())
        before, after = engine.assess(case, old), engine.assess(case, new)
        old_codes = {r.code for r in before.recommendations}
        new_codes = {r.code for r in after.recommendations}
        old_follow_ups = {f.code for f in before.follow_ups}
        new_follow_ups = {f.code for f in after.follow_ups}
        appear.update(new_codes - old_codes)
        disappear.update(old_codes - new_codes)
        follow_ups_appear.update(new_follow_ups - old_follow_ups)
        follow_ups_disappear.update(old_follow_ups - new_follow_ups)
        changed += (old_codes != new_codes) or (old_follow_ups != new_follow_ups)
    return appear, disappear, follow_ups_appear, follow_ups_disappear, changed


def test_preview_counts_match_a_direct_comparison(
    small_population: list[Patient], editor: User
) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    rule = Rule.objects.get(rule_set=draft, code="paget-monitor-alp")
    rule.enabled = False  # takes its alp-recheck follow-up with it
    rule.save()

    preview = impact.ruleset_preview(draft=draft, user=editor)

    old = rules.rule_set_for(RuleSet.objects.get(is_current=True))
    new = rules.load_rule_set(draft)
    appear, disappear, fu_appear, fu_disappear, changed = _direct_comparison(
        small_population, old, new
    )
    assert preview.patients == len(small_population)
    assert len(preview.changed) == changed
    assert {r.code: r.appear for r in preview.rules if r.appear} == dict(appear)
    assert {r.code: r.disappear for r in preview.rules if r.disappear} == dict(disappear)
    assert {f.code: f.appear for f in preview.follow_ups if f.appear} == dict(fu_appear)
    assert {f.code: f.disappear for f in preview.follow_ups if f.disappear} == dict(fu_disappear)
    # ALP 1100 and 1199 (north) and 1050 (south) lose the alert; 1250, 1500, 3000 keep it.
    by_code = {r.code: r for r in preview.rules}
    assert by_code["extreme-alp"].disappear == 3
    assert (by_code["extreme-alp"].before, by_code["extreme-alp"].after) == (6, 3)
    assert preview.errors == []


def test_preview_names_only_patients_of_the_editors_clinics(
    small_population: list[Patient], north_clinic: Clinic, editor: User
) -> None:
    from pathways.models import Membership

    Membership.objects.create(user=editor, clinic=north_clinic, role="rule_editor")
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    preview = impact.ruleset_preview(draft=draft, user=editor)

    visible = {impact.mrn for impact in preview.changed if impact.visible}
    assert visible == {"N-1100", "N-1199"}
    hidden = [impact for impact in preview.changed if not impact.visible]
    assert len(hidden) == preview.hidden_changed == 1
    assert hidden[0].name is None and hidden[0].clinic == "South Endocrinology"


def test_preview_reports_a_draft_that_fails_on_a_stored_patient(
    small_population: list[Patient], editor: User
) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    rule.condition = "alp_latest > params.extreme_alp"  # null ALP now fails at run time
    rule.save()
    no_alp = paget_on_alendronate_document(labs=[])
    stored_patient(small_population[0].clinic, User.objects.get(username="alice"), no_alp, mrn="X")
    preview = impact.ruleset_preview(draft=draft, user=editor)
    assert len(preview.errors) == 1
    assert "extreme-alp" in (preview.errors[0].error or "")
    # "Patients now" is every patient under the set in force, the failing one included.
    old = rules.rule_set_for(RuleSet.objects.get(is_current=True))
    before: Counter[str] = Counter()
    for patient in Patient.objects.all():
        result = engine.assess(patient_to_case(patient), old)
        before.update({r.code for r in result.recommendations})
    assert {row.code: row.before for row in preview.rules if row.before} == dict(before)


def _cards_and_dues(result: engine.Result) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {r.code: r.priority for r in result.recommendations},
        {f.code: f.due.isoformat() for f in result.follow_ups},
    )


def test_preview_lists_a_card_whose_priority_changes_and_a_follow_up_that_moves(
    small_population: list[Patient], editor: User
) -> None:
    """A draft that keeps every code but changes a priority and a follow-up's offset changes
    what patients see (their card's priority, their due date): the preview says so."""
    draft = publishing.ruleset_start_draft(user=editor)
    Rule.objects.filter(rule_set=draft, code="paget-monitor-alp").update(priority="urgent")
    FollowUpRule.objects.filter(rule_set=draft, code="paget-evaluation").update(offset_value=9)
    publishing.ruleset_touch(rule_set=draft, user=editor)
    preview = impact.ruleset_preview(draft=draft, user=editor)

    old = rules.rule_set_for(RuleSet.objects.get(is_current=True))
    new = rules.load_rule_set(draft)
    changed = set()
    for patient in small_population:
        case = patient_to_case(patient, as_of=timezone.localdate())
        if _cards_and_dues(engine.assess(case, old)) != _cards_and_dues(engine.assess(case, new)):
            changed.add(patient.pk)
    assert changed and {item.patient_id for item in preview.changed} == changed
    by_code = {row.code: row for row in preview.rules}
    assert by_code["paget-monitor-alp"].changed == by_code["paget-monitor-alp"].before == 8
    assert (by_code["paget-monitor-alp"].appear, by_code["paget-monitor-alp"].disappear) == (0, 0)
    moved = {row.code: row for row in preview.follow_ups}["paget-evaluation"]
    assert moved.changed == moved.before > 0
    example = next(item for item in preview.changed if item.patient_id == small_population[0].pk)
    assert example.reprioritised == ["paget-monitor-alp: routine → urgent"]
    assert len(example.follow_ups_moved) == 1
    assert example.follow_ups_moved[0].startswith("paget-evaluation: ")


def test_diff_names_changed_parameters_conditions_wording_and_examples(editor: User) -> None:
    published = RuleSet.objects.get(is_current=True)
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    extreme_alp_examples_moved(draft, user=editor)
    rule = Rule.objects.get(rule_set=draft, code="bone-scan")
    rule.title = "Bone scan first"
    rule.enabled = False
    rule.save()

    changes = versions.ruleset_diff(old=published, new=draft)
    keyed = {(c.section, c.key, c.field): c for c in changes}
    assert keyed[("parameters", "extreme_alp", "value")].old == "1000"
    assert keyed[("parameters", "extreme_alp", "value")].new == "1200"
    assert keyed[("rules", "bone-scan", "title")].new == "Bone scan first"
    assert keyed[("rules", "bone-scan", "enabled")].new == "False"
    assert ("rules", "extreme-alp", "example 'ALP 1000.1 U/L'") in keyed
    assert all(c.section in ("parameters", "rules") for c in changes)
    assert versions.ruleset_diff(old=draft, new=draft) == []


def test_changes_list_who_changed_what_and_when(editor: User) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    parameter = Parameter.objects.get(rule_set=draft, name="extreme_alp")
    parameter.value = 1200
    parameter._history_user = editor  # type: ignore[attr-defined]
    parameter.save()
    entries = versions.ruleset_changes(rule_set=draft)
    change = next(e for e in entries if e.what.startswith("parameter"))
    assert change.kind == "changed" and change.user == editor
    assert ("value", "1000", "1200") in change.fields
    assert any(e.kind == "created" and e.what.startswith("rule set") for e in entries)


def test_fire_counts_come_from_the_current_snapshots(small_population: list[Patient]) -> None:
    counts = impact.rule_fire_counts()
    assert counts["extreme-alp"] == 6
    assert counts["paget-monitor-alp"] == 8


def test_try_it_assesses_a_pasted_case_against_the_draft(editor: User) -> None:
    import json

    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    text = json.dumps(_paget_with_latest_alp(1100))
    assert not impact.rule_try_case(rule_set=draft, text=text).fired("extreme-alp")
    current = RuleSet.objects.get(is_current=True)
    outcome = impact.rule_try_case(rule_set=current, text=text)
    assert outcome.fired("extreme-alp") and '"rule_set": "2026-11-29.1"' in outcome.document
    bad = impact.rule_try_case(rule_set=draft, text='{"as_of": "x"}')
    assert bad.result is None and bad.errors


def test_preview_loads_patients_in_bulk_not_one_query_each(
    small_population: list[Patient], editor: User, alice: User
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    draft = publishing.ruleset_start_draft(user=editor)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            impact.ruleset_preview(draft=draft, user=editor)
        return len(captured.captured_queries)

    few = queries()
    clinic = small_population[0].clinic
    for number in range(10):
        stored_patient(clinic, alice, _paget_with_latest_alp(900 + number), mrn=f"More-{number}")
    assert queries() == few


def test_a_follow_up_code_as_long_as_the_rule_editor_may_make_it_is_stored_for_patients(
    north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    """The follow-up rule's code may be 60 characters; the patients' follow-ups held 40: on
    PostgreSQL every re-assessment and every save of a patient it fired for failed."""
    patient = stored_patient(north_clinic, alice, mrn="LONG-1")
    first = patient.follow_ups.first()
    assert first is not None
    long_code = "paget-alp-recheck-" + "x" * 42
    assert len(long_code) == FollowUpRule._meta.get_field("code").max_length
    draft = publishing.ruleset_start_draft(user=editor)
    for row in FollowUpRule.objects.filter(rule_set=draft, code=first.code):
        row.code = long_code
        row.save()
    publishing.ruleset_touch(rule_set=draft, user=editor)
    publish_reviewed(rule_set=draft, user=publisher, note="a longer code")
    run = ReassessmentRun.objects.latest("pk")
    assert [failure for chunk in run.chunks.all() for failure in chunk.failures] == []
    assert FollowUp.objects.filter(patient=patient, code=long_code).exists()
    assert stored_patient(north_clinic, alice, mrn="LONG-2").follow_ups.filter(code=long_code)


def test_a_retry_does_not_count_what_other_reassessments_changed_since_the_publication(
    north_clinic: Clinic, alice: User, editor: User, publisher: User, monkeypatch: Any
) -> None:
    """publication_impact_store counts every "reassessment" firing row of the version between
    the publication and the *retry's* end. A retry comes later (after the failures were looked
    into, often the next day): the daily re-assessment in between, under the same version,
    logs what the calendar changed (an ALP that went stale: "alp-repeat-stale"), and all of
    it is shown to clinicians as what the publication changed."""
    failing = stored_patient(north_clinic, alice, _paget_with_latest_alp(1100), mrn="N-FAIL")
    other = stored_patient(north_clinic, alice, _paget_with_latest_alp(300), mrn="N-OTHER")
    real_reassess = services.patient_reassess

    def fails_once_for_one(*, patient_id: int, run_id: int | None = None) -> bool:
        if patient_id == failing.pk:
            raise RuntimeError("transient")
        return real_reassess(patient_id=patient_id, run_id=run_id)

    monkeypatch.setattr(services, "patient_reassess", fails_once_for_one)
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    extreme_alp_examples_moved(draft, user=editor)
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Fewer false alarms")
    published = publishing.ruleset_publish(rule_set=draft, user=publisher, note="Approved")
    monkeypatch.setattr(services, "patient_reassess", real_reassess)
    publication = RuleSetPublication.objects.get(rule_set=published)
    run = ReassessmentRun.objects.get(publication=publication)
    assert run.finished_at is not None

    # The daily re-assessment, later, under the same version: what the calendar changed for
    # another patient (as services.patient_reassess logs it: cause "reassessment").
    RuleFiring.objects.create(
        patient=other, clinic_id=north_clinic.pk, code="alp-repeat-stale", change="started",
        at=timezone.now(), rule_set_version=str(published.version), cause="reassessment",
    )  # fmt: skip

    tasks.reassessment_retry(run=run, user=publisher)  # re-assesses the failed patient
    impact = PublicationClinicImpact.objects.get(publication=publication, clinic=north_clinic)
    assert impact.changes == {"extreme-alp": {"gained": 0, "lost": 1}}, impact.changes
    assert impact.patients_changed == 1


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        ("UlnBand", "label", "adults, relabelled"),  # shown to clinicians as the ULN's source
        ("UlnBand", "source", "a new source"),
        ("DoseBand", "source", "a new source"),
    ],
)
def test_the_diff_shows_a_changed_reference_interval_label_or_band_source(
    editor: User, model: str, field: str, value: str
) -> None:
    """A reference interval's label or source, or a dose band's source, could change and the
    diff showed nothing. Found by an audit."""
    from pathways import models

    draft = publishing.ruleset_start_draft(user=editor)
    band = getattr(models, model).objects.filter(rule_set=draft).first()
    setattr(band, field, value)
    band.save()
    diff = versions.ruleset_diff(old=RuleSet.objects.get(is_current=True), new=draft)
    assert [c.kind for c in diff] == ["removed", "added"] and value in diff[1].key


def test_a_bytes_literal_in_fired_is_not_accepted_as_a_reference_to_the_rule() -> None:
    """`b"bone-scan" in fired` was read as a reference to bone-scan, but a bytes value is never
    in the list of fired codes: the condition was silently never true. Found by an audit."""
    import cel

    program = cel.compile('b"bone-scan" in fired')
    assert program.execute(cel.Context({"fired": ["bone-scan"]})) is False
    assert engine.check_condition('b"bone-scan" in fired', [], ["bone-scan"]) is not None
    assert engine.check_condition('"bone-scan" in fired', [], ["bone-scan"]) is None
