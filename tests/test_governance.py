"""Rule governance (issue 14): who edited a draft, review before publishing, the firing log,
and clinicians told what a publication changed for their own patients."""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client

from pathways import engine, impact, publishing, services
from pathways.models import (
    Clinic,
    Parameter,
    PublicationClinicImpact,
    PublishedRuleSetError,
    RuleFiring,
    RuleSet,
    RuleSetPublication,
    RuleSetReview,
)
from pathways.rules import install_catalogue
from tests.conftest import rule_editor
from tests.factories import paget_on_alendronate_document, stored_patient
from tests.taskqueue import run_ready_tasks
from tests.test_tuning_workflow import extreme_alp_examples_moved, extreme_alp_threshold_raised

pytestmark = pytest.mark.django_db


def paget_with_latest_alp(value: float) -> dict[str, Any]:
    document = paget_on_alendronate_document()
    document["labs"][-1]["value"] = value
    return document


def firings(patient: Any) -> list[tuple[str, str, str]]:
    return list(RuleFiring.objects.filter(patient=patient).values_list("code", "change", "cause"))


# ---------------------------------------------------------------------------------------------
# Review: draft -> in review -> returned -> in review -> published.


def test_a_draft_goes_through_review_and_keeps_rationale_and_approval(
    editor: User, publisher: User
) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    extreme_alp_examples_moved(draft, user=editor)
    with pytest.raises(publishing.TuningError, match="not in review"):
        publishing.ruleset_publish(rule_set=draft, user=publisher, note="too early")
    with pytest.raises(publishing.TuningError, match="Rationale"):
        publishing.ruleset_submit(rule_set=draft, user=editor, rationale="  ")

    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Fewer false alarms")
    draft.refresh_from_db()
    assert draft.in_review and not draft.is_editable
    parameter = Parameter.objects.get(rule_set=draft, name="extreme_alp")
    parameter.value = 1300
    with pytest.raises(PublishedRuleSetError, match="in review"):
        parameter.save()
    with pytest.raises(publishing.TuningError, match="in review"):
        publishing.ruleset_touch(rule_set=draft, user=editor)
    with pytest.raises(publishing.TuningError, match="publisher permission"):
        publishing.ruleset_return(rule_set=draft, user=editor, comment="mine")

    publishing.ruleset_return(rule_set=draft, user=publisher, comment="Cite the guideline")
    draft.refresh_from_db()
    assert draft.is_editable
    assert publishing.ruleset_latest_return(draft).note == "Cite the guideline"
    parameter.refresh_from_db()
    parameter.description = parameter.description + " (guideline cited)"
    parameter.save()
    publishing.ruleset_touch(rule_set=draft, user=editor)
    publishing.ruleset_submit(rule_set=draft, user=editor)  # the rationale stays
    published = publishing.ruleset_publish(rule_set=draft, user=publisher, note="Approved")

    assert published.note == "Fewer false alarms"
    assert RuleSetPublication.objects.get(rule_set=published).note == "Approved"
    steps = list(RuleSetReview.objects.filter(rule_set=published).values_list("action", "by"))
    assert steps == [
        ("submitted", editor.pk),
        ("returned", publisher.pk),
        ("submitted", editor.pk),
        ("approved", publisher.pk),
    ]


def test_the_history_shows_the_rationale_and_the_approval_note(
    client: Client, editor: User, publisher: User
) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Fewer false alarms")
    publishing.ruleset_publish(rule_set=draft, user=publisher, note="Checked the audit")
    client.force_login(publisher)
    page = client.get(f"/admin/pathways/ruleset/{draft.pk}/changes/").content.decode()
    history = page[page.index('id="review-history"') :]
    assert "Fewer false alarms" in history and "Checked the audit" in history


def test_every_editor_is_barred_from_publishing_not_only_the_last(
    editor: User, publisher: User
) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    publishing.ruleset_touch(rule_set=draft, user=publisher)  # the publisher changed it once
    publishing.ruleset_touch(rule_set=draft, user=editor)  # then the editor, last
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Relabel")
    with pytest.raises(publishing.TuningError, match="Four-eyes"):
        publishing.ruleset_publish(rule_set=draft, user=publisher, note="mine")


def test_the_review_steps_show_in_the_admin(client: Client, editor: User, publisher: User) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    client.force_login(editor)
    client.post(f"/admin/pathways/ruleset/{draft.pk}/submit/", {"text": "Raise the threshold"})
    client.force_login(publisher)
    client.post(f"/admin/pathways/ruleset/{draft.pk}/return/", {"text": "Show the histogram"})
    page = client.get(f"/admin/pathways/ruleset/{draft.pk}/change/").content.decode()
    assert 'id="review-comments"' in page and "Show the histogram" in page
    assert "Raise the threshold" in page and 'id="review-history"' in page


def test_a_rollback_names_who_re_published_it(
    client: Client, editor: User, publisher: User
) -> None:
    catalogue = RuleSet.objects.get(is_current=True)
    draft = publishing.ruleset_start_draft(user=editor)
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="New label")
    publishing.ruleset_publish(rule_set=draft, user=publisher, note="ok")
    publishing.ruleset_rollback(rule_set=catalogue, user=publisher, note="Back, too noisy")
    client.force_login(publisher)
    page = client.get("/admin/pathways/ruleset/").content.decode()
    assert f"{publisher}," in page and "Re-published (rollback)" in page
    history = client.get(f"/admin/pathways/ruleset/{catalogue.pk}/change/").content.decode()
    assert "Back, too noisy" in history


# ---------------------------------------------------------------------------------------------
# The firing log.


def test_the_firing_log_records_rules_starting_and_stopping(
    north_clinic: Clinic, alice: User
) -> None:
    patient = stored_patient(north_clinic, alice, paget_with_latest_alp(1100))
    started = firings(patient)
    assert ("extreme-alp", "started", "edit") in started
    assert all(change == "started" for _, change, _ in started)
    version = RuleSet.objects.get(is_current=True).version
    assert set(RuleFiring.objects.values_list("rule_set_version", flat=True)) == {version}

    services.patient_reassess(patient_id=patient.pk)  # nothing changed: nothing logged
    assert firings(patient) == started

    case = engine.parse_case(paget_with_latest_alp(300))
    patient.refresh_from_db()
    services.patient_save_case(
        user=alice,
        case=case,
        mrn=patient.mrn,
        name=patient.name,
        patient=patient,
        expected_version=patient.version,
    )
    stopped = firings(patient)[len(started) :]
    assert ("extreme-alp", "stopped", "edit") in stopped


# ---------------------------------------------------------------------------------------------
# Clinicians told.


@pytest.fixture
def raised_to_1200(
    north_clinic: Clinic,
    south_clinic: Clinic,
    alice: User,
    bob: User,
    editor: User,
    publisher: User,
) -> RuleSetPublication:
    stored_patient(north_clinic, alice, paget_with_latest_alp(1100), mrn="N-1100")
    stored_patient(north_clinic, alice, paget_with_latest_alp(1150), mrn="N-1150")
    stored_patient(south_clinic, bob, paget_with_latest_alp(1100), mrn="S-1100")
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    extreme_alp_examples_moved(draft, user=editor)
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Fewer false alarms")
    published = publishing.ruleset_publish(rule_set=draft, user=publisher, note="Approved")
    return RuleSetPublication.objects.get(rule_set=published)


def test_the_reassessment_counts_what_changed_per_clinic(
    raised_to_1200: RuleSetPublication, north_clinic: Clinic, south_clinic: Clinic
) -> None:
    north = PublicationClinicImpact.objects.get(publication=raised_to_1200, clinic=north_clinic)
    south = PublicationClinicImpact.objects.get(publication=raised_to_1200, clinic=south_clinic)
    assert north.changes["extreme-alp"] == {"gained": 0, "lost": 2}
    assert south.changes["extreme-alp"] == {"gained": 0, "lost": 1}
    assert (north.patients_changed, south.patients_changed) == (2, 1)


def test_a_clinician_sees_the_notice_with_their_own_counts_and_dismisses_it(
    raised_to_1200: RuleSetPublication, client: Client, alice: User
) -> None:
    client.force_login(alice)
    page = client.get("/").content.decode()
    notice = page[page.index('id="publication-notice"') :]
    assert str(raised_to_1200.rule_set.version) in notice
    assert "Fewer false alarms" in notice
    assert "2 patient(s) lost it" in notice  # north's two, not south's one
    changes_url = f"/rules/changes/{raised_to_1200.pk}/"
    assert changes_url in notice

    changes = client.get(changes_url).content.decode()
    threshold = changes[changes.index('data-code="extreme-alp"') :]
    assert "1000 U/L" in threshold and "1200 U/L" in threshold

    client.post(f"/rules/changes/{raised_to_1200.pk}/dismiss/")
    assert 'id="publication-notice"' not in client.get("/").content.decode()


def test_the_notice_after_a_rollback_says_why_it_was_rolled_back(
    raised_to_1200: RuleSetPublication, client: Client, alice: User, publisher: User
) -> None:
    """After a rollback the notice gave the rolled-back-to version's old rationale as its "why"
    (here revision 2's), not the reason it was put back. Found by an audit."""
    earlier = raised_to_1200.replaced
    assert earlier is not None
    publishing.ruleset_rollback(rule_set=earlier, user=publisher, note="Missed two crises")
    client.force_login(alice)
    page = html.unescape(client.get("/").content.decode())
    notice = page[page.index('id="publication-notice"') :].split("</section>", 1)[0]
    assert "Why: an earlier version put back in force (rollback): Missed two crises" in notice
    assert earlier.note not in notice


def test_clinicians_cannot_open_the_admin_diff(client: Client, alice: User) -> None:
    client.force_login(alice)
    assert client.get("/admin/pathways/ruleset/diff/").status_code == 302


# ---------------------------------------------------------------------------------------------
# The impact preview informs the choice.


def test_the_preview_shows_where_the_editors_patients_lie_against_a_changed_threshold(
    client: Client, north_clinic: Clinic, south_clinic: Clinic, alice: User, bob: User
) -> None:
    for alp in (260, 950, 1100, 1150, 1250, 3000):
        stored_patient(north_clinic, alice, paget_with_latest_alp(alp), mrn=f"N-{alp}")
    stored_patient(south_clinic, bob, paget_with_latest_alp(1190), mrn="S-1190")
    editor = rule_editor("nadia", clinic=north_clinic)
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)

    preview = impact.ruleset_preview(draft=draft, user=editor)
    [parameter] = preview.parameters
    assert (parameter.name, parameter.fact, parameter.old, parameter.new) == (
        "extreme_alp",
        "alp_latest",
        1000,
        1200,
    )
    assert parameter.label == "Extreme ALP" and parameter.unit == "U/L"
    assert parameter.patients == 6  # north's only: south's patient is not the editor's
    assert (parameter.above_old, parameter.above_new) == (4, 2)
    assert parameter.nearest[:3] == [("N-1150", 1150), ("N-1250", 1250), ("N-1100", 1100)]
    assert sum(parameter.bins) == 6
    totals = impact.priority_totals(preview.rules, preview.priorities)
    assert any(t["disappear"] == 3 for t in totals)  # 1100, 1150 and south's 1190 lose it

    client.force_login(editor)
    started = client.post(f"/admin/pathways/ruleset/{draft.pk}/preview/", follow=True)
    page = started.content.decode()
    section = page[page.index('data-parameter="extreme_alp"') :]
    assert "<svg" in section and 'class="threshold-new"' in section
    svg = section[section.index("<svg") : section.index("</svg>")]
    assert "style=" not in svg  # CSP: no inline style
    assert "N-1250" in section and "S-1190" not in page
    assert 'id="preview-priorities"' in page


@pytest.mark.queued_tasks
def test_a_published_versions_page_follows_its_running_reassessment_then_clinicians_get_counts(
    client: Client, north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    stored_patient(north_clinic, alice, paget_with_latest_alp(1100))
    draft = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(draft, user=editor)
    extreme_alp_examples_moved(draft, user=editor)
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Fewer false alarms")
    published = publishing.ruleset_publish(rule_set=draft, user=publisher, note="Approved")
    client.force_login(publisher)
    page = client.get(f"/admin/pathways/ruleset/{published.pk}/change/").content.decode()
    assert 'http-equiv="refresh"' in page and "waiting for a worker" in page

    client.force_login(alice)
    waiting = client.get("/").content.decode()
    assert "being re-assessed" in waiting  # no counts claimed before the work has run
    run_ready_tasks()
    counted = client.get("/").content.decode()
    assert "1 patient(s) lost it" in counted


# ---------------------------------------------------------------------------------------------
# Two publications at once (PostgreSQL: SQLite serialises writers before either reads).


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a row-lock race: PostgreSQL's READ COMMITTED"
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("from_the_page", [True, False], ids=["admin page", "service"])
def test_two_publications_at_once_never_put_two_versions_in_force(from_the_page: bool) -> None:
    """From the admin page, the second is refused (its page showed the version the first
    replaced); a caller that showed nothing publishes after the first."""
    if not RuleSet.objects.filter(is_current=True).exists():  # flushed by transaction=True
        install_catalogue(version="2026-11-29.1")
    shown = RuleSet.objects.get(is_current=True).pk if from_the_page else publishing.UNCHECKED
    editor, publisher = rule_editor("rui"), rule_editor("pat", publisher=True)
    first = publishing.ruleset_start_draft(user=editor)
    second = publishing.ruleset_start_draft(user=editor)
    for draft in (first, second):
        publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Routine review")
    failures: list[str] = []

    def publish_second() -> None:
        try:
            publishing.ruleset_publish(
                rule_set=second, user=publisher, note="second", reassess=False, shown_in_force=shown
            )
        except Exception as error:  # the test reports it
            failures.append(f"{type(error).__name__}: {error}")
        finally:
            connection.close()

    waiting = threading.Thread(target=publish_second)
    with transaction.atomic():
        publishing.ruleset_publish(rule_set=first, user=publisher, note="first", reassess=False)
        waiting.start()
        time.sleep(1)  # the second publication waits for the version in force this one locked
    waiting.join(timeout=30)

    first.refresh_from_db()
    second.refresh_from_db()
    assert RuleSet.objects.filter(is_current=True).count() == 1
    if from_the_page:
        assert failures == [
            f"TuningError: {first.label} was put in force while this page was open, so "
            f"{second.label} would replace it unseen. Nothing was published: read the page "
            f"again, now against {first.label}, and publish if you still mean to."
        ]
        assert first.is_current and second.is_draft
    else:
        assert failures == []
        assert second.is_current and first.version != second.version
        assert RuleSetPublication.objects.get(rule_set=second).replaced == first


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a row-lock race: PostgreSQL's READ COMMITTED"
)
@pytest.mark.django_db(transaction=True)
def test_a_part_saved_while_its_draft_is_submitted_is_refused_not_slipped_in() -> None:
    """An edit that read "draft" before the submission committed changed the draft under
    review (and made its author an editor): the part's save read the status without a lock.
    Found by an audit."""
    if not RuleSet.objects.filter(is_current=True).exists():  # flushed by transaction=True
        install_catalogue(version="2026-11-29.1")
    editor, other = rule_editor("rui"), rule_editor("lee")
    draft = publishing.ruleset_start_draft(user=editor)
    parameter = Parameter.objects.get(rule_set=draft, name="extreme_alp")
    before = parameter.value
    client = Client()
    client.force_login(other)
    url = f"/admin/pathways/parameter/{parameter.pk}/change/"
    answers: list[str] = []

    def edit() -> None:
        try:
            data = {"value": "1500", "description": parameter.description}
            answer = client.post(url, data, follow=True)
            answers.append(html.unescape(answer.content.decode()))
        finally:
            connection.close()

    thread = threading.Thread(target=edit)
    with transaction.atomic():
        publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Routine review")
        thread.start()
        time.sleep(1)  # the edit waits for the rule set the submission locked
    thread.join(timeout=30)

    parameter.refresh_from_db()
    draft.refresh_from_db()
    assert draft.in_review and parameter.value == before
    assert other.pk not in publishing.ruleset_editor_ids(draft)
    assert len(answers) == 1 and "Not saved: Rule set" in answers[0] and "in review" in answers[0]


def _what_changed_after_publishing(draft: RuleSet, publisher: User) -> list[Any]:
    from pathways import changes
    from tests.factories import publish_reviewed

    published = publish_reviewed(rule_set=draft, user=publisher, note="tuned")
    return changes.rule_changes(publication=published.publications.get())


def test_the_what_changed_page_lists_a_rule_whose_condition_changed(
    editor: User, publisher: User
) -> None:
    """Only wording and thresholds were compared: a rule that now stays silent above 100000 U/L
    was not listed. Found by an audit."""
    from pathways.models import Rule

    draft = publishing.ruleset_start_draft(user=editor)
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    rule.condition = rule.condition + " && alp_latest < 100000.0"
    rule.save()
    listed = _what_changed_after_publishing(draft, publisher)
    assert [c.code for c in listed] == ["extreme-alp"]
    assert [what for what, _, _ in listed[0].wording] == ["condition"]


def test_the_what_changed_page_lists_a_rule_given_a_new_suppression(
    editor: User, publisher: User
) -> None:
    """A rule given a new suppression (stood down in a new context) was not listed. Found by
    an audit."""
    from pathways.models import Rule

    draft = publishing.ruleset_start_draft(user=editor)
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    rule.suppressions = [
        *rule.suppressions,
        {"condition": "alp_latest > 100000.0", "reason": "stood down above 100000 U/L"},
    ]
    rule.save()
    listed = _what_changed_after_publishing(draft, publisher)
    assert [c.code for c in listed] == ["extreme-alp"]
    assert "stood down above 100000 U/L" in listed[0].wording[0][2]


def test_a_new_parameter_whose_name_begins_another_rules_parameter_is_not_its_threshold(
    editor: User, publisher: User
) -> None:
    """`params.extreme_al` was found inside `params.extreme_alp`: a new, unused parameter was
    shown as a changed threshold of the extreme-alp rule. Found by an audit."""
    draft = publishing.ruleset_start_draft(user=editor)
    Parameter.objects.create(
        rule_set=draft, name="extreme_al", value=5, minimum=0, maximum=10, description=""
    )
    listed = _what_changed_after_publishing(draft, publisher)
    assert listed == [], [(c.code, c.thresholds) for c in listed]
