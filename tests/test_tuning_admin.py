"""Rule tuning through the admin: who may reach it, what a save checks, what stays immutable."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from pathways import engine, impact, publishing, services, versions
from pathways.example_forms import case_initial
from pathways.models import (
    AssessmentSnapshot,
    Clinic,
    ImpactPreview,
    Membership,
    Parameter,
    ReassessmentRun,
    Rule,
    RuleExample,
    RuleSet,
    RuleSetPublication,
)
from tests.conftest import rule_editor
from tests.factories import (
    form_as_shown,
    paget_on_alendronate_document,
    post_as_shown,
    publish_reviewed,
    stored_patient,
)
from tests.taskqueue import run_ready_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def editor_client(editor: User) -> Client:
    client = Client()
    client.force_login(editor)
    return client


@pytest.fixture
def publisher_client(publisher: User) -> Client:
    client = Client()
    client.force_login(publisher)
    return client


@pytest.fixture
def draft(editor: User) -> RuleSet:
    return publishing.ruleset_start_draft(user=editor)


@pytest.fixture
def published() -> RuleSet:
    return RuleSet.objects.get(is_current=True)


def _draft_pages(draft: RuleSet) -> list[str]:
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    parameter = Parameter.objects.get(rule_set=draft, name="extreme_alp")
    return [
        f"/admin/pathways/ruleset/{draft.pk}/change/",
        f"/admin/pathways/ruleset/{draft.pk}/preview/",
        f"/admin/pathways/ruleset/{draft.pk}/publish/",
        f"/admin/pathways/ruleset/{draft.pk}/changes/",
        f"/admin/pathways/rule/?rule_set={draft.pk}",
        f"/admin/pathways/rule/{rule.pk}/change/",
        f"/admin/pathways/rule/{rule.pk}/try/",
        f"/admin/pathways/parameter/{parameter.pk}/change/",
        "/admin/pathways/ruleset/diff/",
    ]


def test_a_clinician_is_sent_to_the_admin_login_from_every_draft_page(
    alice_client: Client, draft: RuleSet
) -> None:
    for url in _draft_pages(draft):
        response = alice_client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url


def test_staff_without_rule_permissions_are_refused_every_draft_page(draft: RuleSet) -> None:
    staff = User.objects.create_user("sam", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    for url in _draft_pages(draft):
        assert client.get(url).status_code == 403, url
    response = client.post("/admin/pathways/ruleset/start-draft/")
    assert response.status_code == 403


def test_an_editor_reaches_every_draft_page(editor_client: Client, draft: RuleSet) -> None:
    for url in _draft_pages(draft):
        assert editor_client.get(url).status_code == 200, url


def test_an_editor_starts_a_draft_from_the_version_in_force(
    editor_client: Client, editor: User, published: RuleSet
) -> None:
    response = editor_client.post("/admin/pathways/ruleset/start-draft/")
    draft = RuleSet.objects.get(status=RuleSet.Status.DRAFT)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/pathways/ruleset/{draft.pk}/change/"
    assert (draft.based_on, draft.created_by) == (published, editor)
    page = editor_client.get(response["Location"]).content.decode()
    assert "examples pass" in page and "Impact preview" in page


def _rule_post(rule: Rule, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pathway": rule.pathway,
        "priority": rule.priority,
        "enabled": "on" if rule.enabled else "",
        "position": rule.position,
        "title": rule.title,
        "rationale": rule.rationale,
        "citations": json.dumps(rule.citations),
        "condition": rule.condition,
        "escalate_when": rule.escalate_when,
        "escalate_to": rule.escalate_to,
    }
    examples = list(rule.examples.order_by("pk"))
    data.update(
        {
            "examples-TOTAL_FORMS": len(examples),
            "examples-INITIAL_FORMS": len(examples),
            "examples-MIN_NUM_FORMS": 0,
            "examples-MAX_NUM_FORMS": 1000,
        }
    )
    for index, example in enumerate(examples):
        data[f"examples-{index}-id"] = example.pk
        data[f"examples-{index}-rule"] = rule.pk
        data[f"examples-{index}-name"] = example.name
        data[f"examples-{index}-fires"] = "on" if example.fires else ""
        data[f"examples-{index}-case"] = json.dumps(example.case)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_condition_naming_an_unknown_parameter_is_refused_with_the_compilers_message(
    editor_client: Client, draft: RuleSet
) -> None:
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    url = f"/admin/pathways/rule/{rule.pk}/change/"
    response = editor_client.post(
        url, _rule_post(rule, condition="alp_latest > params.extreme_alpp")
    )
    assert response.status_code == 200
    assert 'unknown parameter "params.extreme_alpp" (did you mean "extreme_alp"?)' in (
        html.unescape(response.content.decode())
    )
    response = editor_client.post(url, _rule_post(rule, condition="alp_latest >"))
    assert response.status_code == 200 and "errornote" in response.content.decode()
    rule.refresh_from_db()
    assert rule.condition == "alp_elevated && alp_latest > params.extreme_alp"


def test_saving_a_draft_rule_records_the_editor_and_keeps_history(
    client: Client, draft: RuleSet
) -> None:
    other_editor = rule_editor("lee")
    client.force_login(other_editor)
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    response = client.post(
        f"/admin/pathways/rule/{rule.pk}/change/", _rule_post(rule, title="Very high ALP")
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.last_edited_by == other_editor
    rule.refresh_from_db()
    assert rule.title == "Very high ALP"
    assert rule.history.latest().history_user == other_editor
    changes = client.get(f"/admin/pathways/ruleset/{draft.pk}/changes/").content.decode()
    assert "Very high ALP" in changes and "lee" in changes


def test_a_parameter_is_edited_as_a_number_within_its_bounds(
    editor_client: Client, draft: RuleSet, publisher: User
) -> None:
    parameter = Parameter.objects.get(rule_set=draft, name="extreme_alp")
    url = f"/admin/pathways/parameter/{parameter.pk}/change/"
    page = editor_client.get(url).content.decode()
    assert 'type="number"' in page and 'min="300"' in page and 'max="5000"' in page
    assert "Extreme ALP (U/L)" in page  # the human label and unit, not the raw name
    listing = editor_client.get(f"/admin/pathways/parameter/?rule_set={draft.pk}")
    row = listing.content.decode()
    assert "Extreme ALP<br><small" in row and "<code>extreme_alp</code>" in row
    assert "1000 U/L" in row and "300 to 5000 U/L" in row

    response = editor_client.post(url, {"value": "6000", "description": parameter.description})
    assert response.status_code == 200
    # The publish gate's own words (one range check, in the engine).
    assert "value 6000 is outside [300, 5000]" in response.content.decode()
    response = editor_client.post(url, {"value": "1200", "description": parameter.description})
    assert response.status_code == 302
    parameter.refresh_from_db()
    assert parameter.value == 1200 and parameter.minimum == 300


def test_published_rules_are_read_only_and_a_change_form_post_is_refused(
    editor_client: Client, published: RuleSet
) -> None:
    rule = Rule.objects.get(rule_set=published, code="extreme-alp")
    url = f"/admin/pathways/rule/{rule.pk}/change/"
    page = editor_client.get(url).content.decode()
    assert "is published and read-only" in page and 'name="condition"' not in page
    response = editor_client.post(url, _rule_post(rule, condition="true"))
    assert response.status_code == 403
    rule.refresh_from_db()
    assert rule.condition != "true"

    parameter = Parameter.objects.get(rule_set=published, name="extreme_alp")
    response = editor_client.post(
        f"/admin/pathways/parameter/{parameter.pk}/change/", {"value": "1200"}
    )
    assert response.status_code == 403
    parameter.refresh_from_db()
    assert parameter.value == 1000


def test_delete_selected_cannot_remove_parts_of_a_published_set(
    editor_client: Client, published: RuleSet
) -> None:
    rule_ids = list(Rule.objects.filter(rule_set=published).values_list("pk", flat=True)[:3])
    response = editor_client.post(
        "/admin/pathways/rule/",
        {"action": "delete_selected", "_selected_action": rule_ids, "post": "yes"},
    )
    assert response.status_code == 403
    assert Rule.objects.filter(pk__in=rule_ids).count() == 3
    examples = list(RuleExample.objects.filter(rule_set=published).values_list("pk", flat=True)[:2])
    response = editor_client.post(
        "/admin/pathways/ruleexample/",
        {"action": "delete_selected", "_selected_action": examples, "post": "yes"},
    )
    assert response.status_code == 403
    assert RuleExample.objects.filter(pk__in=examples).count() == 2


def test_delete_selected_cannot_remove_a_published_rule_set(
    editor_client: Client, published: RuleSet, draft: RuleSet
) -> None:
    response = editor_client.post(
        "/admin/pathways/ruleset/",
        {"action": "delete_selected", "_selected_action": [published.pk], "post": "yes"},
    )
    assert response.status_code == 403
    assert RuleSet.objects.filter(pk=published.pk).exists()
    response = editor_client.post(
        f"/admin/pathways/ruleset/{published.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    # A draft can be discarded.
    response = editor_client.post(
        "/admin/pathways/ruleset/",
        {"action": "delete_selected", "_selected_action": [draft.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not RuleSet.objects.filter(pk=draft.pk).exists()


def test_disabling_a_rule_is_a_draft_change_and_refused_on_published_sets(
    editor_client: Client, draft: RuleSet, published: RuleSet
) -> None:
    published_rule = Rule.objects.get(rule_set=published, code="bone-scan")
    response = editor_client.post(
        f"/admin/pathways/rule/?rule_set={published.pk}",
        {"action": "disable_rules", "_selected_action": [published_rule.pk]},
        follow=True,
    )
    assert "cannot be modified" in response.content.decode()
    published_rule.refresh_from_db()
    assert published_rule.enabled

    draft_rule = Rule.objects.get(rule_set=draft, code="bone-scan")
    editor_client.post(
        f"/admin/pathways/rule/?rule_set={draft.pk}",
        {"action": "disable_rules", "_selected_action": [draft_rule.pk]},
    )
    draft_rule.refresh_from_db()
    assert not draft_rule.enabled
    changes = versions.ruleset_diff(old=published, new=draft)
    assert [(c.key, c.field, c.new) for c in changes] == [("bone-scan", "enabled", "False")]


def test_the_rule_list_shows_codes_priority_enabled_and_current_fire_counts(
    editor_client: Client, draft: RuleSet, north_clinic: Clinic, alice: User
) -> None:
    document = paget_on_alendronate_document()
    document["labs"][-1]["value"] = 1400
    stored_patient(north_clinic, alice, document)
    page = editor_client.get("/admin/pathways/rule/").content.decode()  # the draft by default
    assert f"{draft.label} (draft" in page
    assert "Fires for (patients now)" in page
    assert "extreme-alp" in page and "urgent" in page
    row = page[page.index(">extreme-alp<") :]
    row = row[: row.index("</tr>")]
    assert '<td class="field-fires_for">1</td>' in row


def test_the_rule_page_shows_vocabulary_examples_and_a_try_it_box(
    editor_client: Client, draft: RuleSet
) -> None:
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    page = editor_client.get(f"/admin/pathways/rule/{rule.pk}/change/").content.decode()
    assert "alp_latest" in page and "alp_x_uln" in page  # facts
    assert (
        'Extreme ALP<br><small class="tuning-muted"><code>params.extreme_alp</code></small>'
        "</td><td>1000</td><td>U/L</td><td>300 to 5000</td>"
    ) in page
    assert "ALP 1000.1 U/L" in page and "pass" in page
    assert f'action="/admin/pathways/rule/{rule.pk}/try/"' in page

    document = paget_on_alendronate_document()
    document["labs"][-1]["value"] = 1500
    response = editor_client.post(
        f"/admin/pathways/rule/{rule.pk}/try/", {"case": json.dumps(document)}
    )
    result = response.content.decode()
    assert "<code>extreme-alp</code> fires" in result
    response = editor_client.post(f"/admin/pathways/rule/{rule.pk}/try/", {"case": "{}"})
    assert "could not be assessed" in response.content.decode()


def test_failing_examples_are_shown_with_why(editor_client: Client, draft: RuleSet) -> None:
    Parameter.objects.filter(rule_set=draft, name="extreme_alp").update(value=1200)
    page = editor_client.get(f"/admin/pathways/ruleset/{draft.pk}/change/").content.decode()
    assert "cannot be published yet" in page
    assert "ALP 1000.1 U/L" in page and "must fire, did not fire" in page
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    page = editor_client.get(f"/admin/pathways/rule/{rule.pk}/change/").content.decode()
    assert "fail</span>: must fire, did not fire" in page


def test_publishing_through_the_admin_is_four_eyes(
    editor_client: Client,
    publisher_client: Client,
    publisher: User,
    draft: RuleSet,
    published: RuleSet,
) -> None:
    url = f"/admin/pathways/ruleset/{draft.pk}/publish/"
    assert editor_client.post(url, {"note": "mine"}).status_code == 403

    publisher_client.post(
        f"/admin/pathways/ruleset/{draft.pk}/change/", {"note": "touched by the publisher"}
    )
    submitted = editor_client.post(
        f"/admin/pathways/ruleset/{draft.pk}/submit/", {"text": "Raise the threshold"}
    )
    assert submitted.status_code == 302
    page = publisher_client.get(url).content.decode()
    assert "Four-eyes" in page
    response = post_as_shown(publisher_client, url, {"note": "self-review"}, follow=True)
    assert "Four-eyes" in response.content.decode()
    draft.refresh_from_db()
    assert draft.is_draft and draft.in_review

    second = rule_editor("quinn", publisher=True)
    client = Client()
    client.force_login(second)
    assert post_as_shown(client, url, {"note": ""}).status_code == 200  # the note is required
    response = post_as_shown(client, url, {"note": "Reviewed"})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.is_current and draft.version and draft.published_by == second
    assert draft.note == "Raise the threshold"  # the editor's rationale is kept
    assert draft.publications.get().note == "Reviewed"  # beside the approval note
    published.refresh_from_db()
    assert not published.is_current


def test_a_publishers_save_that_changes_nothing_does_not_make_them_an_editor(
    editor_client: Client, publisher_client: Client, publisher: User, draft: RuleSet
) -> None:
    """The four-eyes trap: pressing Save on a draft without changing it."""
    parameter = Parameter.objects.get(rule_set=draft, name="extreme_alp")
    unchanged = {"value": f"{parameter.value:g}", "description": parameter.description}
    page = publisher_client.post(f"/admin/pathways/parameter/{parameter.pk}/change/", unchanged)
    assert page.status_code == 302
    publisher_client.post(f"/admin/pathways/ruleset/{draft.pk}/change/", {"note": draft.note})
    assert publisher.pk not in publishing.ruleset_editor_ids(draft)
    editor_client.post(f"/admin/pathways/ruleset/{draft.pk}/submit/", {"text": "Unchanged"})
    response = post_as_shown(
        publisher_client, f"/admin/pathways/ruleset/{draft.pk}/publish/", {"note": "Approved"}
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.is_current


def test_a_real_change_by_the_publisher_bars_them_from_publishing(
    editor_client: Client, publisher_client: Client, publisher: User, draft: RuleSet
) -> None:
    parameter = Parameter.objects.get(rule_set=draft, name="extreme_alp")
    changed = {"value": f"{parameter.value + 1:g}", "description": parameter.description}
    publisher_client.post(f"/admin/pathways/parameter/{parameter.pk}/change/", changed)
    assert publisher.pk in publishing.ruleset_editor_ids(draft)
    editor_client.post(f"/admin/pathways/ruleset/{draft.pk}/submit/", {"text": "Raise by one"})
    with pytest.raises(publishing.TuningError, match="Four-eyes"):
        publishing.ruleset_publish(rule_set=draft, user=publisher, note="mine")


def test_rollback_through_the_admin(
    publisher_client: Client, editor: User, publisher: User, published: RuleSet
) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    publish_reviewed(rule_set=draft, user=publisher, note="same rules, new label")
    url = f"/admin/pathways/ruleset/{published.pk}/rollback/"
    assert "Re-publish" in publisher_client.get(url).content.decode()
    response = post_as_shown(publisher_client, url, {"note": "back to the catalogue"})
    assert response.status_code == 302
    published.refresh_from_db()
    assert published.is_current
    assert RuleSetPublication.objects.filter(rule_set=published, kind="rollback").exists()
    page = publisher_client.get(f"/admin/pathways/ruleset/{published.pk}/change/")
    assert "back to the catalogue" in page.content.decode()


def test_the_preview_page_counts_and_hides_other_clinics(
    editor_client: Client,
    editor: User,
    draft: RuleSet,
    north_clinic: Clinic,
    south_clinic: Clinic,
    alice: User,
    bob: User,
) -> None:
    Membership.objects.create(user=editor, clinic=north_clinic, role="rule_editor")
    for clinic, user, mrn in ((north_clinic, alice, "N-1"), (south_clinic, bob, "S-1")):
        document = paget_on_alendronate_document()
        document["labs"][-1]["value"] = 1100
        stored_patient(clinic, user, document, mrn=mrn, name=f"Patient {mrn}")
    Parameter.objects.filter(rule_set=draft, name="extreme_alp").update(value=1200)

    start = f"/admin/pathways/ruleset/{draft.pk}/preview/"
    assert 'id="run-preview"' in editor_client.get(start).content.decode()
    response = editor_client.post(start)
    stored = ImpactPreview.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/pathways/ruleset/{draft.pk}/preview/{stored.pk}/"
    page = editor_client.get(response["Location"]).content.decode()
    assert "<strong>2</strong> would see a change" in page
    row = page[page.index('data-code="extreme-alp"') :]
    assert '<td class="tuning-removed">2</td>' in row[: row.index("</tr>")]
    assert "Patient N-1" in page and "N-1" in page
    assert "Patient S-1" not in page and "S-1" not in page
    assert "hidden (other clinic)" in page
    assert "asked" in editor_client.get(start).content.decode()  # the latest is linked

    # It names the editor's clinics' patients: no other user sees it, not even a publisher.
    other = Client()
    other.force_login(rule_editor("quinn", publisher=True, clinic=south_clinic))
    assert other.get(response["Location"]).status_code == 404


@pytest.mark.queued_tasks
def test_the_preview_runs_in_the_background_and_its_page_follows_it(
    editor_client: Client, editor: User, draft: RuleSet, north_clinic: Clinic, alice: User
) -> None:
    stored_patient(north_clinic, alice)
    response = editor_client.post(f"/admin/pathways/ruleset/{draft.pk}/preview/")
    assert response.status_code == 302  # at once: the request does not compute it
    pending = editor_client.get(response["Location"]).content.decode()
    assert "Waiting for a background worker (1 patients to assess)" in pending
    assert '<meta http-equiv="refresh" content="2">' in pending
    assert run_ready_tasks() == 1
    page = editor_client.get(response["Location"]).content.decode()
    assert 'id="preview-summary"' in page and "1 patient of all clinics assessed" in page
    assert 'http-equiv="refresh"' not in page
    publishing.ruleset_touch(rule_set=draft, user=editor)  # an edit after the preview
    assert 'id="preview-out-of-date"' in editor_client.get(response["Location"]).content.decode()


@pytest.mark.queued_tasks
def test_a_preview_against_a_version_since_replaced_says_so(
    editor_client: Client,
    editor: User,
    draft: RuleSet,
    publisher: User,
    north_clinic: Clinic,
    alice: User,
) -> None:
    """Another version put in force after the preview: the page no longer calls the one it was
    computed against "in force", and asks for it to be run again, as after an edit."""
    stored_patient(north_clinic, alice)
    response = editor_client.post(f"/admin/pathways/ruleset/{draft.pk}/preview/")
    run_ready_tasks()
    in_force = RuleSet.objects.get(is_current=True)
    page = editor_client.get(response["Location"]).content.decode()
    assert f"{in_force.label} (in force)" in page and 'id="preview-out-of-date"' not in page
    other = publishing.ruleset_start_draft(user=rule_editor("nadia"))
    publish_reviewed(rule_set=other, user=publisher, note="meanwhile")
    page = editor_client.get(response["Location"]).content.decode()
    assert f"{in_force.label} (in force then, since replaced)" in page
    assert f"{in_force.label} is no longer in force since this preview" in page
    start = editor_client.get(f"/admin/pathways/ruleset/{draft.pk}/preview/").content.decode()
    assert "is no longer in force since, run it again" in start


@pytest.mark.queued_tasks
def test_a_failed_preview_says_so_instead_of_waiting_forever(
    editor_client: Client, draft: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(impact, "ruleset_preview", broken)
    response = editor_client.post(f"/admin/pathways/ruleset/{draft.pk}/preview/")
    run_ready_tasks()
    page = editor_client.get(response["Location"]).content.decode()
    assert "The impact preview failed: RuntimeError: out of memory" in page
    assert 'http-equiv="refresh"' not in page


def test_publishing_in_the_admin_shows_the_queued_run_not_a_claim_it_is_done(
    publisher_client: Client, draft: RuleSet, north_clinic: Clinic, alice: User
) -> None:
    stored_patient(north_clinic, alice)
    publishing.ruleset_submit(rule_set=draft, user=draft.created_by, rationale="Same rules")
    response = post_as_shown(
        publisher_client,
        f"/admin/pathways/ruleset/{draft.pk}/publish/",
        {"note": "Reviewed"},
        follow=True,
    )
    page = response.content.decode()
    run = ReassessmentRun.objects.get()
    assert f"queued as run {run.pk}" in page
    assert "every patient has been" not in page
    table = page[page.index('id="reassessments"') :]
    assert f'data-run="{run.pk}"' in table and "1 of 1 (100 %)" in table
    assert 'id="queue-health"' in page
    runs = publisher_client.get("/admin/pathways/reassessmentrun/").content.decode()
    assert 'id="queue-health"' in runs and "finished" in runs


def test_a_version_page_shows_its_latest_runs_and_says_how_many_there_are(
    publisher_client: Client, editor: User, publisher: User
) -> None:
    published = publish_reviewed(
        rule_set=publishing.ruleset_start_draft(user=editor), user=publisher, note="x"
    )
    for _ in range(6):
        ReassessmentRun.objects.create(rule_set=published, reason=ReassessmentRun.Reason.MANUAL)
    page = publisher_client.get(f"/admin/pathways/ruleset/{published.pk}/change/").content.decode()
    table = page[
        page.index('id="reassessments"') : page.index("</table>", page.index('id="reassessments"'))
    ]
    assert table.count("data-run=") == 5
    assert "the 5 latest of 7 runs" in table
    listing = f"/admin/pathways/reassessmentrun/?rule_set__id__exact={published.pk}"
    assert listing.replace("&", "&amp;") in table
    runs = publisher_client.get(listing).content.decode()
    assert runs.count('class="field-pk"') == 7


def test_a_publisher_retries_a_run_with_failures_from_the_rule_set_page(
    publisher_client: Client,
    editor_client: Client,
    editor: User,
    publisher: User,
    north_clinic: Clinic,
    alice: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patient = stored_patient(north_clinic, alice)
    monkeypatch.setattr(services, "patient_reassess", _always_failing)
    other = publishing.ruleset_start_draft(user=editor)
    published = publish_reviewed(rule_set=other, user=publisher, note="x")
    run = ReassessmentRun.objects.get()
    page = publisher_client.get(f"/admin/pathways/ruleset/{published.pk}/change/").content.decode()
    assert "finished, 1 failed" in page and "Retry failed" in page
    failures = page[page.index('id="reassessment-failures"') :]
    assert f"<td>{patient.pk}</td>" in failures  # which patient, and why
    assert 'http-equiv="refresh"' not in page  # finished: nothing to follow
    monkeypatch.undo()
    retry_url = f"/admin/pathways/ruleset/reassessment/{run.pk}/retry/"
    assert editor_client.post(retry_url).status_code == 403  # publishers only
    response = publisher_client.post(retry_url, follow=True)
    assert "Retry queued" in response.content.decode()
    retry = ReassessmentRun.objects.get(retry_of=run)
    assert retry.finished_at is not None
    assert AssessmentSnapshot.objects.get(patient=patient).rule_set_version == published.version


def _always_failing(*, patient_id: int, run_id: int | None = None) -> bool:
    raise RuntimeError("database went away")


def test_the_diff_page_compares_any_two_versions(
    editor_client: Client, draft: RuleSet, published: RuleSet
) -> None:
    Parameter.objects.filter(rule_set=draft, name="extreme_alp").update(value=1200)
    page = editor_client.get(
        f"/admin/pathways/ruleset/diff/?old={published.pk}&new={draft.pk}"
    ).content.decode()
    assert "1 difference from" in page
    assert "extreme_alp" in page and "1000" in page and "1200" in page


def test_the_publish_page_warns_when_another_version_was_published_since_the_draft_began(
    publisher_client: Client, editor: User, publisher: User, draft: RuleSet
) -> None:
    url = f"/admin/pathways/ruleset/{draft.pk}/publish/"
    assert 'id="stale-base"' not in publisher_client.get(url).content.decode()
    other = publishing.ruleset_start_draft(user=editor)
    newer = publish_reviewed(rule_set=other, user=publisher, note="meanwhile")
    page = publisher_client.get(url).content.decode()
    assert 'id="stale-base"' in page and f"{newer.label} is in force now" in page


def _posted_after_a_publication_meanwhile(
    client: Client, url: str, editor: User, publisher: User
) -> tuple[str, RuleSet]:
    """The publish or rollback page is opened, another version is published, then the page's
    form is sent: the refused page's text, and the version published meanwhile."""
    page = client.get(url).content.decode()
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    assert hidden.get("replaces")
    newer = publish_reviewed(
        rule_set=publishing.ruleset_start_draft(user=editor), user=publisher, note="meanwhile"
    )
    refused = client.post(url, {**hidden, "note": "Approved"})
    assert refused.status_code == 200
    newer.refresh_from_db()
    assert newer.is_current
    text = html.unescape(refused.content.decode())
    assert f"{newer.label} was put in force while this page was open" in text
    return text, newer


def test_a_publish_page_opened_before_another_publication_publishes_nothing(
    publisher_client: Client, editor: User, publisher: User, draft: RuleSet
) -> None:
    """The page said which version it replaces; one published since is not replaced unseen."""
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Raise the threshold")
    url = f"/admin/pathways/ruleset/{draft.pk}/publish/"
    text, _ = _posted_after_a_publication_meanwhile(publisher_client, url, editor, publisher)
    assert 'id="stale-base"' in text  # the page now says what publishing would drop
    draft.refresh_from_db()
    assert draft.is_draft

    published = post_as_shown(publisher_client, url, {"note": "Approved, knowing"})
    assert published.status_code == 302
    draft.refresh_from_db()
    assert draft.is_current


def test_a_publish_page_opened_before_the_draft_was_returned_and_resubmitted_publishes_nothing(
    publisher_client: Client, editor_client: Client, editor: User, draft: RuleSet
) -> None:
    """The approval is for the content the page showed. Opened, then the draft was returned by
    another publisher, changed (an urgent rule made info: the gate stays green) and submitted
    again: the first page's post published the new content under its approval note."""
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Same rules, relabelled")
    url = f"/admin/pathways/ruleset/{draft.pk}/publish/"
    page = publisher_client.get(url).content.decode()
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    other = Client()
    other.force_login(rule_editor("quinn", publisher=True))
    other.post(f"/admin/pathways/ruleset/{draft.pk}/return/", {"text": "tweak it"})
    Rule.objects.filter(rule_set=draft, code="extreme-alp").update(priority="info")
    publishing.ruleset_touch(rule_set=draft, user=editor)
    editor_client.post(f"/admin/pathways/ruleset/{draft.pk}/submit/", {"text": "Made info"})

    refused = publisher_client.post(url, {**hidden, "note": "Approved: same rules"})
    assert refused.status_code == 200
    assert "was returned and submitted again while this page was open" in html.unescape(
        refused.content.decode()
    )
    draft.refresh_from_db()
    assert draft.is_draft and draft.in_review
    published = post_as_shown(publisher_client, url, {"note": "Approved, as it is now"})
    assert published.status_code == 302
    draft.refresh_from_db()
    assert draft.is_current


def test_a_rollback_page_opened_before_another_publication_rolls_back_nothing(
    publisher_client: Client, editor: User, publisher: User, published: RuleSet
) -> None:
    publish_reviewed(rule_set=publishing.ruleset_start_draft(user=editor), user=publisher, note="a")
    url = f"/admin/pathways/ruleset/{published.pk}/rollback/"
    _posted_after_a_publication_meanwhile(publisher_client, url, editor, publisher)
    published.refresh_from_db()
    assert not published.is_current


def _new_rule_post(draft: RuleSet, code: str = "alp-above-2000") -> dict[str, Any]:
    """The add-rule page's post of a new rule (no examples)."""
    return {
        "rule_set": draft.pk,
        "code": code,
        "pathway": "both",
        "priority": "high",
        "enabled": "on",
        "position": 99,
        "title": "ALP above 2000 U/L",
        "rationale": "ALP {alp_latest}",
        "citations": '["S0-7"]',
        "condition": "alp_latest != null && alp_latest > 2000.0",
        "escalate_when": "",
        "escalate_to": "",
        "examples-TOTAL_FORMS": 0,
        "examples-INITIAL_FORMS": 0,
        "examples-MIN_NUM_FORMS": 0,
        "examples-MAX_NUM_FORMS": 1000,
    }


def test_an_editor_adds_a_rule_with_its_examples_to_the_draft(
    editor_client: Client, editor: User, draft: RuleSet
) -> None:
    firing = paget_on_alendronate_document()
    firing["labs"][-1]["value"] = 2500
    quiet = paget_on_alendronate_document()
    response = editor_client.post("/admin/pathways/rule/add/", _new_rule_post(draft))
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = Rule.objects.get(rule_set=draft, code="alp-above-2000")
    for name, fires, document in (
        ("Markedly raised ALP", True, firing),
        ("ALP in the reference range", False, quiet),
    ):
        added = editor_client.post(
            "/admin/pathways/ruleexample/add/", example_post(rule, name, fires, document)
        )
        assert added.status_code == 302, added.content.decode()[:3000]
    assert set(rule.examples.values_list("rule_set_id", flat=True)) == {draft.pk}
    check = publishing.ruleset_check(rule_set=draft)
    assert check.publishable, check.problems()
    outcomes = [o for o in check.examples if o.rule == "alp-above-2000"]
    assert [o.passed for o in outcomes] == [True, True]

    example = RuleExample.objects.get(name="Markedly raised ALP")
    assert example.case["labs"][-1]["value"] == 2500  # the structured fields became the case
    url = f"/admin/pathways/ruleexample/{example.pk}/change/"
    page = editor_client.get(url).content.decode()
    assert 'name="labs"' in page and 'name="sex"' in page and 'name="case"' not in page


def test_an_example_that_is_not_a_valid_case_is_refused(
    editor_client: Client, draft: RuleSet
) -> None:
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    data = example_post(rule, "broken", True, paget_on_alendronate_document())
    data["labs"] = "alp, lots, U/L, 2026-11-02"
    response = editor_client.post("/admin/pathways/ruleexample/add/", data)
    assert response.status_code == 200
    page = response.content.decode()
    assert "labs[0].value" in page  # the error names the field, beside the lab results
    assert not RuleExample.objects.filter(name="broken").exists()


def test_saving_an_example_unchanged_makes_nobody_an_editor(
    publisher_client: Client, publisher: User, draft: RuleSet
) -> None:
    example = RuleExample.objects.filter(rule_set=draft).first()
    assert example is not None
    data = example_post(example.rule, example.name, example.fires, example.case)
    data["rule_set"] = draft.pk
    data["labs"] = data["labs"].replace("\n", "\r\n")  # as a browser sends a textarea
    response = publisher_client.post(f"/admin/pathways/ruleexample/{example.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert publisher.pk not in publishing.ruleset_editor_ids(draft)


def example_post(rule: Rule, name: str, fires: bool, document: dict[str, Any]) -> dict[str, Any]:
    """What the structured example form posts for a case document."""
    initial = case_initial(document)
    data: dict[str, Any] = {"rule": rule.pk, "name": name}
    if fires:
        data["fires"] = "on"
    for key, value in initial.items():
        if isinstance(value, bool):
            if value:
                data[key] = "on"
        elif value is not None:
            data[key] = value
    return data


@pytest.mark.parametrize(("offset", "said"), [(-3, "must not be negative"), (10_000, "exceed")])
def test_a_follow_up_offset_out_of_range_is_refused_when_saved(
    editor_client: Client, draft: RuleSet, offset: int, said: str
) -> None:
    """A negative offset was saved and refused first at publishing, far from the field that
    held it. Found by an audit."""
    from pathways.models import FollowUpRule
    from pathways.rules_admin import FollowUpRuleForm

    follow_up = FollowUpRule.objects.filter(rule_set=draft, offset_value__isnull=False).first()
    assert follow_up is not None
    shown = FollowUpRuleForm(instance=follow_up)
    data = {name: shown[name].value() for name in shown.fields}
    data = {name: "" if value is None else value for name, value in data.items()}
    url = f"/admin/pathways/followuprule/{follow_up.pk}/change/"
    refused = editor_client.post(url, {**data, "offset_value": str(offset)})
    assert refused.status_code == 200
    assert said in html.unescape(refused.content.decode())
    follow_up.refresh_from_db()
    assert follow_up.offset_value != offset
    saved = editor_client.post(url, data)
    errors = re.findall(r"errorlist[^>]*>(.*?)</ul>", saved.content.decode())
    assert saved.status_code == 302, errors


def _set_in(document: Any, name: str) -> list[Any]:
    """Every value of ``name`` anywhere in a case document that says something."""
    if isinstance(document, dict):
        found = [v for k, v in document.items() if k == name and v not in (None, False)]
        return found + [x for v in document.values() for x in _set_in(v, name)]
    if isinstance(document, list):
        return [x for item in document for x in _set_in(item, name)]
    return []


@pytest.mark.parametrize(
    "name",
    [
        "gestational_weeks",
        "fracture_date",
        "creatinine_baseline",
        "reference_low",
        "whole_body_imaging_done",
    ],
)
def test_an_example_saved_as_shown_keeps_every_field_of_its_case(
    publisher_client: Client, publisher: User, draft: RuleSet, name: str
) -> None:
    """The example form listed the case's fields by hand and had none for revision 2's: saving
    an example unchanged dropped them from its case (the examples then failed the publish
    gate) and made the publisher one of its editors. Found by an audit."""
    example = next(
        e
        for e in RuleExample.objects.filter(rule_set=draft).order_by("pk")
        if _set_in(e.case, name)
    )
    before = example.case
    url = f"/admin/pathways/ruleexample/{example.pk}/change/"
    data = {**form_as_shown(publisher_client, url), "_save": "Save"}
    assert publisher_client.post(url, data).status_code == 302
    example.refresh_from_db()
    assert _set_in(example.case, name) == _set_in(before, name)
    assert publisher.pk not in publishing.ruleset_editor_ids(draft)
    assert publishing.ruleset_check(rule_set=draft).publishable


def test_every_catalogue_example_reads_back_from_its_form_unchanged(draft: RuleSet) -> None:
    """The form's fields are the declared case fields: every example of the catalogue goes
    through the form's initial values and back to the same case."""
    from pathways.example_forms import RuleExampleCaseForm, case_document

    for example in RuleExample.objects.filter(rule_set=draft):
        form = RuleExampleCaseForm(instance=example)
        cleaned = {
            name: form.fields[name].clean(form.fields[name].prepare_value(form.initial.get(name)))
            if name not in ("labs", "therapies")
            else form.initial.get(name, "")
            for name in RuleExampleCaseForm.CASE_FIELDS
        }
        back = engine.case_to_document(engine.parse_case(case_document(cleaned)))
        assert back == engine.case_to_document(engine.parse_case(example.case)), example.name


def test_an_example_saved_as_shown_keeps_its_numbers_exactly(
    publisher_client: Client, draft: RuleSet
) -> None:
    """The example form wrote a result's numbers with six significant digits: an ALP of
    1234.5678 U/L read back as 1234.57, so saving the example unchanged changed its case."""
    example = RuleExample.objects.filter(rule_set=draft).order_by("pk").first()
    assert example is not None
    example.case["labs"][0].update(value=1234.5678, reference_high=129.125)
    example.save()
    before = engine.case_to_document(engine.parse_case(example.case))
    url = f"/admin/pathways/ruleexample/{example.pk}/change/"
    data = {**form_as_shown(publisher_client, url), "_save": "Save"}
    assert "alp, 1234.5678, U/L" in str(data["labs"]) and "129.125" in str(data["labs"])
    assert publisher_client.post(url, data).status_code == 302
    example.refresh_from_db()
    assert engine.case_to_document(engine.parse_case(example.case)) == before


def _shown_with(client: Client, url: str, **changes: str) -> dict[str, Any]:
    """An admin change form as shown, with some fields changed as an editor would type them."""
    return {**form_as_shown(client, url), **changes}


def _page(response: Any) -> str:
    return html.unescape(response.content.decode())


@pytest.mark.parametrize(
    ("citations", "said"),
    [
        ("5", "a list of citation keys"),
        ('"S0-7"', "a list of citation keys"),  # text, read letter by letter as the list
        ('["no-such-source"]', 'unknown citation "no-such-source"'),
    ],
)
def test_rule_citations_that_are_not_a_list_of_known_keys_are_refused_on_the_field(
    editor_client: Client, draft: RuleSet, citations: str, said: str
) -> None:
    """A rule's citations were saved as typed: a number broke the draft's page and every rule
    page with a 500, text was read letter by letter, and an unknown key was refused first at
    publishing. Found by an audit."""
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    before = list(rule.citations)
    url = f"/admin/pathways/rule/{rule.pk}/change/"
    response = editor_client.post(url, _shown_with(editor_client, url, citations=citations))
    assert response.status_code == 200 and said in _page(response)
    rule.refresh_from_db()
    assert rule.citations == before
    assert editor_client.get(f"/admin/pathways/ruleset/{draft.pk}/change/").status_code == 200


@pytest.mark.parametrize("field", ["rules", "satisfied_by"])
def test_follow_up_rules_or_satisfied_by_that_are_not_a_list_are_refused_on_the_field(
    editor_client: Client, draft: RuleSet, field: str
) -> None:
    """A follow-up's `rules` given as a number answered 500; `satisfied_by` given so was saved
    and broke the draft's page. Found by an audit."""
    from pathways.models import FollowUpRule

    follow_up = FollowUpRule.objects.filter(rule_set=draft).first()
    assert follow_up is not None
    before = getattr(follow_up, field)
    url = f"/admin/pathways/followuprule/{follow_up.pk}/change/"
    response = editor_client.post(url, _shown_with(editor_client, url, **{field: "5"}))
    assert response.status_code == 200 and "a list of" in _page(response)
    follow_up.refresh_from_db()
    assert getattr(follow_up, field) == before
    assert editor_client.get(f"/admin/pathways/ruleset/{draft.pk}/change/").status_code == 200


def test_a_follow_up_with_both_an_offset_value_and_an_offset_parameter_is_refused(
    editor_client: Client, draft: RuleSet
) -> None:
    """Both were saved and the value silently ignored (the engine uses the parameter). Found
    by an audit."""
    from pathways.models import FollowUpRule

    follow_up = FollowUpRule.objects.filter(rule_set=draft).exclude(offset_parameter="").first()
    assert follow_up is not None
    url = f"/admin/pathways/followuprule/{follow_up.pk}/change/"
    response = editor_client.post(url, _shown_with(editor_client, url, offset_value="3"))
    assert response.status_code == 200 and "not both" in _page(response)
    follow_up.refresh_from_db()
    assert follow_up.offset_value is None


def test_a_follow_up_anchor_that_is_not_a_date_fact_is_refused_when_saved(
    editor_client: Client, draft: RuleSet
) -> None:
    """An anchor the publish gate refuses (a number, not a date) was saved. Found by an
    audit."""
    from pathways.models import FollowUpRule

    follow_up = FollowUpRule.objects.filter(rule_set=draft).first()
    assert follow_up is not None
    url = f"/admin/pathways/followuprule/{follow_up.pk}/change/"
    response = editor_client.post(url, _shown_with(editor_client, url, anchor="alp_latest"))
    assert response.status_code == 200
    assert '"alp_latest" is not a date fact' in _page(response)
    follow_up.refresh_from_db()
    assert follow_up.anchor != "alp_latest"


def test_a_new_rule_whose_code_is_not_kebab_case_is_refused_on_the_code_field(
    editor_client: Client, draft: RuleSet
) -> None:
    """A code the publish gate refuses was saved; the form now gives the gate's own words.
    Found by an audit."""
    data = {**_new_rule_post(draft, code="Extreme_ALP_2"), "suppressions": "[]"}
    response = editor_client.post("/admin/pathways/rule/add/", data)
    assert response.status_code == 200 and "code must be kebab-case" in _page(response)
    assert not Rule.objects.filter(rule_set=draft, code="Extreme_ALP_2").exists()


def test_a_new_parameter_owned_by_a_rule_that_does_not_exist_is_refused(
    editor_client: Client, draft: RuleSet
) -> None:
    """A parameter owned by no rule was saved and refused first at publishing. Found by an
    audit."""
    response = editor_client.post(
        "/admin/pathways/parameter/add/",
        {
            "rule_set": draft.pk,
            "name": "new_threshold",
            "value": "5",
            "unit": "",
            "minimum": "0",
            "maximum": "10",
            "rule_code": "no-such-rule",
            "description": "",
        },
    )
    assert response.status_code == 200 and 'No rule "no-such-rule"' in _page(response)
    assert not Parameter.objects.filter(rule_set=draft, name="new_threshold").exists()


def test_renaming_a_citation_key_that_rules_cite_is_refused_naming_the_rules(
    editor_client: Client, draft: RuleSet
) -> None:
    """Renaming a cited key left the rules citing a key that no longer exists. Found by an
    audit."""
    from pathways.models import Citation

    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    key = rule.citations[0]
    citation = Citation.objects.get(rule_set=draft, key=key)
    url = f"/admin/pathways/citation/{citation.pk}/change/"
    response = editor_client.post(url, _shown_with(editor_client, url, key=key + "-renamed"))
    assert response.status_code == 200
    assert "extreme-alp" in _page(response).split(f'"{key}" is cited by rule(s)', 1)[1]
    citation.refresh_from_db()
    assert citation.key == key


@pytest.mark.parametrize(
    ("field", "line"),
    [
        ("labs", "alp, 412, U/L, 2026-06-01T08:15, 129, 30, 2026-06-02"),
        ("therapies", "alendronate, 2026-06-10, 2026-08-01, zoledronic_acid"),
    ],
)
def test_an_example_line_with_more_parts_than_the_form_reads_is_refused_naming_the_line(
    editor_client: Client, draft: RuleSet, field: str, line: str
) -> None:
    """A lab line's seventh part (a therapy line's fourth) was dropped without a word. Found
    by an audit."""
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    data = example_post(rule, "one part too many", True, paget_on_alendronate_document())
    response = editor_client.post("/admin/pathways/ruleexample/add/", {**data, field: line})
    assert response.status_code == 200 and f'"{line}"' in _page(response)
    assert not RuleExample.objects.filter(name="one part too many").exists()
    without_it = line.rsplit(",", 1)[0]
    saved = editor_client.post("/admin/pathways/ruleexample/add/", {**data, field: without_it})
    assert saved.status_code == 302


@pytest.mark.queued_tasks
def test_a_draft_its_impact_preview_cannot_assess_for_some_patients_needs_a_tick_to_publish(
    editor_client: Client,
    publisher_client: Client,
    editor: User,
    draft: RuleSet,
    north_clinic: Clinic,
    alice: User,
) -> None:
    """A condition that compiles and passes every example can still fail on a stored case (a
    fact null for it: "No such overload"); that patient then gets no advice at all. The publish
    page said "All conditions compile…" and published it; it now shows what the draft's impact
    preview found, and publishing needs a tick that it goes out all the same."""
    document = paget_on_alendronate_document()
    document["labs"][-1]["value"] = 6000  # and no creatinine: crcl_current is null
    stored_patient(north_clinic, alice, document, mrn="MRN-HIGH")
    Rule.objects.filter(rule_set=draft, code="extreme-alp").update(
        condition="alp_elevated && alp_latest > params.extreme_alp "
        "&& (alp_latest < 5000.0 || crcl_current > 0.0)"
    )
    publishing.ruleset_touch(rule_set=draft, user=editor)
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Exclude renal failure")
    url = f"/admin/pathways/ruleset/{draft.pk}/publish/"
    unchecked = html.unescape(publisher_client.get(url).content.decode())
    assert "No impact preview has been run on this draft as it stands" in unchecked

    editor_client.post(f"/admin/pathways/ruleset/{draft.pk}/preview/")
    run_ready_tasks()
    page = html.unescape(publisher_client.get(url).content.decode())
    assert "found 1 stored patient this draft cannot assess" in page
    assert "rule extreme-alp" in page and "(1 patient)" in page
    assert "MRN-HIGH" not in page  # counts only: the publisher may be of another clinic
    refused = post_as_shown(publisher_client, url, {"note": "Approved"})
    assert refused.status_code == 200
    assert "Nothing was published" in html.unescape(refused.content.decode())
    draft.refresh_from_db()
    assert draft.is_draft
    published = post_as_shown(publisher_client, url, {"note": "Approved", "despite_faults": "on"})
    assert published.status_code == 302
    draft.refresh_from_db()
    assert draft.is_current
