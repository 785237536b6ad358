"""The worklist, card actions, mark done with outcome and undo, and the exports (issue 12)."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from datetime import timedelta
from typing import Any

import icalendar
import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from pathways import engine
from pathways.card_actions import active_actions, card_digest
from pathways.cases import patient_to_case
from pathways.dashboard import PAGE_SIZE
from pathways.exports import CSV_COLUMNS
from pathways.models import AccessLog, AssessmentSnapshot, CardAction, FollowUp
from pathways.rules import current_rule_set
from pathways.services import follow_up_mark_done, worklist_copies_store
from tests.factories import (
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
    stored_patient,
)

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def rows(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('data-mrn="')[1:]]


def urgent_document() -> dict[str, Any]:
    """ALP 1120 U/L and an impending fracture: two urgent cards, no follow-up."""
    document = paget_on_alendronate_document()
    document["labs"] = [
        {"test": "alp", "value": 1120, "unit": "U/L", "collected_at": "2026-11-01T08:00"}
    ]
    document["clinical"] = {"diagnoses": [], "fracture": "impending", "therapies": []}
    return document


def no_dental_exam_document() -> dict[str, Any]:
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["clinical"]["dental_exam_done"] = False
    return document


@pytest.fixture
def urgent_patient(alice: Any, north_clinic: Any) -> Any:
    return stored_patient(north_clinic, alice, urgent_document(), mrn="URG-1", name="Ada Byrne")


@pytest.fixture
def dental_patient(alice: Any, north_clinic: Any) -> Any:
    return stored_patient(
        north_clinic, alice, no_dental_exam_document(), mrn="MM-D", name="Samuel Okafor"
    )


def cards(patient: Any) -> dict[str, str]:
    result = engine.assess(patient_to_case(patient), current_rule_set())
    return {rec.code: rec.priority for rec in result.recommendations}


def act(client: Client, patient: Any, **data: str) -> Any:
    """A card action as the patient page's form sends it: with the case and the rule-set
    version the page showed (read from the page unless the test gives them)."""
    if data.get("action") != "undo" and not {"case", "rule_set"} <= data.keys():
        data = {**shown_with_cards(client, patient, data.get("code")), **data}
    return client.post(f"/patients/{patient.pk}/cards/", data, headers=HTMX)


def card_markup(html: str, code: str) -> str:
    """The markup of the card ``code`` on a patient page."""
    return html.split(f'data-code="{code}"', 1)[1].split("</li>", 1)[0]


def shown_with_cards(client: Client, patient: Any, code: str | None = None) -> dict[str, str]:
    """What the patient page's card forms carry: the case digest and rule-set version shown,
    and, when the card ``code`` is shown with no action on it, that it was."""
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    forms = re.findall(
        r'name="code" value="([^"]+)"><input type="hidden" name="action" value="\w+">'
        r'<input type="hidden" name="case" value="([0-9a-f]{64})"><input type="hidden" '
        r'name="rule_set" value="([^"]+)"><input type="hidden" name="shown" value="(no action)"',
        page,
    )
    if not forms:  # no card to act on: the action is refused for that
        return {}
    fields = {"case": forms[0][1], "rule_set": forms[0][2]}
    if code is None or any(form[0] == code for form in forms):
        fields["shown"] = "no action"
    return fields


def undo(client: Client, patient: Any, code: str) -> Any:
    """Undo on the card as the patient page shows it: the form names the action it undoes."""
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    shown = re.search(
        rf'name="code" value="{re.escape(code)}"><input type="hidden" name="action" '
        r'value="undo"><input type="hidden" name="undo" value="(\d+)"',
        page,
    )
    assert shown is not None, f"no Undo on the card {code}"
    return act(client, patient, code=code, action="undo", undo=shown[1])


# ---------------------------------------------------------------------------------------------
# Worklist


def test_urgent_cards_without_a_follow_up_put_the_patient_on_the_worklist(
    alice_client: Client, urgent_patient: Any
) -> None:
    assert not FollowUp.objects.filter(patient=urgent_patient).exists()
    assert list(cards(urgent_patient).values()).count("urgent") == 2
    html = alice_client.get("/").content.decode()
    assert rows(html) == ["URG-1"]
    assert 'data-status="action"' in html and "Needs action" in html
    urgent = alice_client.get("/?priority=urgent").content.decode()
    assert rows(urgent) == ["URG-1"]
    assert rows(alice_client.get("/?priority=high").content.decode()) == []
    assert rows(alice_client.get("/?status=action&q=byrne").content.decode()) == ["URG-1"]
    assert rows(alice_client.get("/?status=overdue").content.decode()) == []


def test_a_patient_with_a_high_card_stays_after_her_follow_ups_are_done(
    alice_client: Client, alice: Any, dental_patient: Any
) -> None:
    assert cards(dental_patient)["antiresorptive-dental-exam"] == "high"
    for follow_up in FollowUp.objects.filter(patient=dental_patient, completed_at=None):
        follow_up_mark_done(follow_up=follow_up, user=alice, outcome="not_needed")
    assert not FollowUp.objects.filter(patient=dental_patient, completed_at=None).exists()
    html = alice_client.get("/").content.decode()
    assert rows(html) == ["MM-D"]
    assert 'data-status="action"' in html


@pytest.mark.parametrize("outcome", ["declined", "not_needed"])
def test_a_follow_up_due_on_the_assessment_date_marked_done_stays_done_the_next_days(
    alice_client: Client,
    alice: Any,
    dental_patient: Any,
    monkeypatch: pytest.MonkeyPatch,
    outcome: str,
) -> None:
    """dental-exam is due on the assessment date (spec §5), so a day later it is due a day
    later: declined yesterday, it came back as a new one to do every day. An event marked
    done is done for a follow-up due within 14 days of it (spec §5); after that, it is due
    again."""
    from pathways.models import ApiToken
    from pathways.services import patient_reassess

    key = ApiToken.issue(user=alice, name="ehr", scopes=["read"])[1]
    today = timezone.localdate()
    dental = FollowUp.objects.get(patient=dental_patient, code="dental-exam", completed_at=None)
    follow_up_mark_done(follow_up=dental, user=alice, outcome=outcome)
    for days, still_done in ((1, True), (14, True), (15, False)):
        later = today + timedelta(days=days)
        monkeypatch.setattr(timezone, "localdate", lambda *args, later=later, **kwargs: later)
        patient_reassess(patient_id=dental_patient.pk)  # the daily run
        reopened = FollowUp.objects.filter(
            patient=dental_patient, code="dental-exam", completed_at=None
        )
        assert reopened.exists() is not still_done, days
        page = alice_client.get(f"/patients/{dental_patient.pk}/").content.decode()
        statuses = re.findall(r'data-follow-up="dental-exam" data-status="(\w+)"', page)
        assert (statuses == ["done"]) is still_done, (days, statuses)
        api = alice_client.get(
            f"/api/v1/patients/{dental_patient.pk}/assessment",
            HTTP_AUTHORIZATION=f"Token {key}",
        ).json()
        [item] = [f for f in api["follow_ups"] if f["code"] == "dental-exam"]
        assert (item["status"] == "done") is still_done, days


def test_acknowledging_every_urgent_card_takes_her_off_the_worklist_and_undo_brings_her_back(
    alice_client: Client, urgent_patient: Any
) -> None:
    for code, priority in cards(urgent_patient).items():
        if priority == "urgent":
            assert (
                act(alice_client, urgent_patient, code=code, action="acknowledge").status_code
                == 200
            )
    assert AssessmentSnapshot.objects.get(patient=urgent_patient).action_rank > 1
    assert rows(alice_client.get("/").content.decode()) == []
    undo(alice_client, urgent_patient, "extreme-alp")
    assert rows(alice_client.get("/?priority=urgent").content.decode()) == ["URG-1"]


def top_shown(html: str) -> str:
    """The code of the card a worklist page shows as its one row's top recommendation."""
    cell = html.split('data-label="Top recommendation"', 1)[1].split("</td>", 1)[0]
    return cell.split('data-code="', 1)[1].split('"', 1)[0]


def test_a_top_card_acted_on_gives_way_to_the_next_and_no_longer_ranks_the_patient(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    document = paget_on_alendronate_document()  # an urgent card, a high one, follow-ups later
    document["labs"] = urgent_document()["labs"]
    document["clinical"]["fracture"] = "impending"
    patient = stored_patient(north_clinic, alice, document, mrn="PAGET-URG")
    assert sorted(cards(patient).values())[-2:] == ["routine", "urgent"]
    assert rows(alice_client.get("/?priority=urgent").content.decode()) == ["PAGET-URG"]
    for code, priority in cards(patient).items():
        if priority == "urgent":
            act(alice_client, patient, code=code, action="acknowledge")
    html = alice_client.get("/").content.decode()
    assert rows(html) == ["PAGET-URG"]  # its high card still needs action
    high = next(code for code, priority in cards(patient).items() if priority == "high")
    assert top_shown(html) == high and "(acted on)" not in html
    assert 'data-status="action"' in html
    assert rows(alice_client.get("/?priority=urgent").content.decode()) == []
    assert rows(alice_client.get("/?priority=high").content.decode()) == ["PAGET-URG"]
    # Every card acted on, her follow-ups later: upcoming, the top card marked as acted on.
    for code in cards(patient):
        act(alice_client, patient, code=code, action="acknowledge")
    assert rows(alice_client.get("/").content.decode()) == []
    html = alice_client.get("/?status=upcoming").content.decode()
    assert rows(html) == ["PAGET-URG"]
    assert top_shown(html) == next(iter(cards(patient))) and "(acted on)" in html
    # The export says so too (it showed the card as advice still to act on).
    [row] = csv_rows(alice_client.get("/worklist.csv?status=upcoming"))
    assert (row["mrn"], row["top_acted_on"]) == ("PAGET-URG", "yes")


def test_the_worklist_names_the_card_left_to_do_not_one_overridden(
    alice_client: Client, urgent_patient: Any
) -> None:
    """Two cards of one priority, the first overridden: the row still showed it, unmarked (the
    mark compared priorities, and the other card kept the patient's priority)."""
    first, second = list(cards(urgent_patient))[:2]
    assert cards(urgent_patient)[first] == cards(urgent_patient)[second] == "urgent"
    response = act(
        alice_client, urgent_patient, code=first, action="override", reason="not-applicable"
    )
    assert response.status_code == 200
    html = alice_client.get("/").content.decode()
    assert rows(html) == ["URG-1"]
    assert top_shown(html) == second and "(acted on)" not in html
    table = csv_rows(alice_client.get("/worklist.csv"))
    title = engine.assess(patient_to_case(urgent_patient), current_rule_set()).recommendations[1]
    assert (table[0]["top_recommendation"], table[0]["top_acted_on"]) == (title.title, "")
    undo(alice_client, urgent_patient, first)
    assert top_shown(alice_client.get("/").content.decode()) == first


def test_the_worklist_never_shows_another_clinics_patients(
    client: Client, bob: Any, urgent_patient: Any
) -> None:
    client.force_login(bob)
    assert rows(client.get("/").content.decode()) == []
    assert "URG-1" not in csv_text(client.get("/worklist.csv"))


def _first_due_in(patient: Any, days: int) -> None:
    """Give the patient an open follow-up due in ``days`` (before its others), and keep the
    worklist's copies as the app does after every write to follow-ups."""
    due = timezone.localdate() + timedelta(days=days)
    follow_up = FollowUp.objects.filter(patient=patient, completed_at=None).first()
    if follow_up is None:
        follow_up = FollowUp(patient=patient, code="alp-recheck")
        follow_up.title, follow_up.rule_set_version = "Recheck ALP", current_rule_set().version
    follow_up.due = due
    follow_up.save()
    worklist_copies_store(patient=patient)


def test_one_row_per_patient_in_the_order_of_urgency_then_due_date(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """Urgent cards come first even with a follow-up months away (such a patient used to sink
    to the end, as "Upcoming"); then the first due date; nothing scheduled comes first."""
    soon = stored_patient(north_clinic, alice, mrn="PAGET-SOON")
    overdue = stored_patient(north_clinic, alice, mrn="PAGET-OVERDUE")
    later = stored_patient(north_clinic, alice, urgent_document(), mrn="URG-LATER")
    stored_patient(north_clinic, alice, urgent_document(), mrn="URG-NOW")
    for patient, days in ((soon, 3), (overdue, -5), (later, 60)):
        _first_due_in(patient, days)
    assert FollowUp.objects.filter(patient=soon, completed_at=None).count() > 1
    html = alice_client.get("/").content.decode()
    assert rows(html) == ["URG-NOW", "URG-LATER", "PAGET-OVERDUE", "PAGET-SOON"]
    statuses = [part.split('"', 1)[0] for part in html.split('data-status="')[1:]]
    assert statuses == ["action", "action", "overdue", "due_soon"]
    # What is due reads as words; its code (for the CSV and the tests) is not on the screen.
    first = FollowUp.objects.filter(patient=soon, completed_at=None).order_by("due").first()
    assert first is not None and f'<td data-label="What is due">{first.title}<br>' in html
    assert f">{first.code}<" not in html
    assert '<small class="text-muted more-follow-ups">+' in html
    assert rows(alice_client.get("/?status=upcoming").content.decode()) == ["URG-LATER"]
    assert rows(alice_client.get("/?sort=due").content.decode()) == [
        "URG-NOW",
        "PAGET-OVERDUE",
        "PAGET-SOON",
        "URG-LATER",
    ]


# ---------------------------------------------------------------------------------------------
# Card actions


def test_override_needs_a_coded_reason_and_other_needs_text(
    alice_client: Client, alice: Any, urgent_patient: Any
) -> None:
    html = act(alice_client, urgent_patient, code="extreme-alp", action="override").content
    assert "Choose a reason" in html.decode()
    html = act(
        alice_client, urgent_patient, code="extreme-alp", action="override", reason="other"
    ).content.decode()
    assert "needs a text" in html
    assert not CardAction.objects.exists()
    # Several cards carry the same buttons: the message names the card it is about.
    title = next(
        rec.title
        for rec in engine.assess(
            patient_to_case(urgent_patient), current_rule_set()
        ).recommendations
        if rec.code == "extreme-alp"
    )
    assert f'id="card-error">Card not changed: {escape(title)}: ' in html
    html = act(
        alice_client,
        urgent_patient,
        code="extreme-alp",
        action="override",
        reason="other",
        reason_text="Known Paget flare, seen by bone clinic",
    ).content.decode()
    action = CardAction.objects.get()
    assert (action.kind, action.reason, action.by) == ("override", "other", alice)
    assert action.source == "worklist"
    assert "Overridden: Other: Known Paget flare, seen by bone clinic" in html
    overridden = html.split('aria-label="Overridden"', 1)[1]
    assert 'data-code="extreme-alp"' in overridden


def test_override_reasons_are_the_interop_code_system(
    alice_client: Client, urgent_patient: Any
) -> None:
    html = alice_client.get(f"/patients/{urgent_patient.pk}/").content.decode()
    for code in (
        "not-applicable",
        "patient-declined",
        "done-elsewhere",
        "contraindicated",
        "disagree-evidence",
        "other",
    ):
        assert f'value="{code}"' in html


def test_snooze_needs_a_future_date_and_the_card_returns_on_it(
    alice_client: Client, urgent_patient: Any
) -> None:
    today = timezone.localdate()
    html = act(
        alice_client, urgent_patient, code="extreme-alp", action="snooze", snooze_until=str(today)
    ).content.decode()
    assert "must be after today" in html
    assert 'hx-swap-oob="innerHTML">Card' not in html  # refused: nothing done to announce
    until = today + timedelta(days=14)
    html = act(
        alice_client, urgent_patient, code="extreme-alp", action="snooze", snooze_until=str(until)
    ).content.decode()
    assert f"Snoozed until {until:%Y-%m-%d}" in html
    # The live region (kept on the page) says what happened and the advice in one line.
    assert f'hx-swap-oob="innerHTML">Card snoozed until {until:%Y-%m-%d}. ' in html
    rule_set = current_rule_set()
    result = engine.assess(patient_to_case(urgent_patient), rule_set)
    assert active_actions(urgent_patient, result, rule_set, today=until - timedelta(days=1)).get(
        "extreme-alp"
    )
    assert active_actions(urgent_patient, result, rule_set, today=until).get("extreme-alp") is None


def test_a_snoozed_card_is_back_on_the_worklist_on_its_date_without_a_daily_run(
    alice_client: Client, urgent_patient: Any, monkeypatch: Any
) -> None:
    today = timezone.localdate()
    first, second = today + timedelta(days=14), today + timedelta(days=30)
    urgent = sorted(
        code for code, priority in cards(urgent_patient).items() if priority == "urgent"
    )
    assert urgent == ["extreme-alp", "fracture-surgery-radiation"]
    for code, until in zip(urgent, (first, second), strict=True):
        act(alice_client, urgent_patient, code=code, action="snooze", snooze_until=str(until))
    assert rows(alice_client.get("/").content.decode()) == []
    assert AssessmentSnapshot.objects.get(patient=urgent_patient).snooze_ends == first

    def on(day: Any) -> None:
        monkeypatch.setattr(timezone, "localdate", lambda *args, **kwargs: day)

    on(first - timedelta(days=1))
    assert rows(alice_client.get("/").content.decode()) == []
    on(first)  # no re-assessment has run since the snoozes: the worklist sees the date itself
    html = alice_client.get("/?status=action").content.decode()
    assert rows(html) == ["URG-1"]
    snapshot = AssessmentSnapshot.objects.get(patient=urgent_patient)
    assert (snapshot.action_rank, snapshot.snooze_ends) == (engine.PRIORITY_RANK["urgent"], second)
    assert 'data-status="action"' in html


def test_an_action_holds_until_the_case_or_the_card_changes_not_with_the_calendar(
    alice_client: Client, urgent_patient: Any
) -> None:
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    rule_set = current_rule_set()
    result = engine.assess(patient_to_case(urgent_patient), rule_set)
    a_year_later = timezone.localdate() + timedelta(days=365)
    assert active_actions(urgent_patient, result, rule_set, today=a_year_later).get("extreme-alp")
    # A new rule-set version that rewords the card brings it back; one that does not, keeps it.
    reworded = dataclasses.replace(
        rule_set,
        version="next",
        rules=tuple(
            dataclasses.replace(rule, title=rule.title + " now")
            if rule.code == "extreme-alp"
            else rule
            for rule in rule_set.rules
        ),
    )
    recommendation = next(r for r in result.recommendations if r.code == "extreme-alp")
    assert card_digest(reworded, recommendation) != card_digest(rule_set, recommendation)
    unchanged = dataclasses.replace(rule_set, version="next")
    assert card_digest(unchanged, recommendation) == card_digest(rule_set, recommendation)
    # A new result changes the case: the card is back.
    urgent_patient.refresh_from_db()
    alice_client.post(
        f"/patients/{urgent_patient.pk}/results/",
        {
            "test": "alp",
            "value": "1180",
            "unit": "U/L",
            "collected_on": "2026-11-20",
            "version": urgent_patient.version,
        },
    )
    result = engine.assess(patient_to_case(urgent_patient), rule_set)
    assert active_actions(urgent_patient, result, rule_set).get("extreme-alp") is None
    html = alice_client.get(f"/patients/{urgent_patient.pk}/").content.decode()
    assert 'data-action="acknowledge"' not in html


def test_undo_keeps_the_action_as_history(
    alice_client: Client, alice: Any, urgent_patient: Any
) -> None:
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    html = undo(alice_client, urgent_patient, "extreme-alp").content.decode()
    action = CardAction.objects.get()
    assert action.undone_at is not None and action.undone_by == alice
    assert action.history.count() == 2
    assert 'data-action="acknowledge"' not in html


def test_card_actions_work_as_a_plain_post_and_need_csrf(
    client: Client, alice: Any, urgent_patient: Any
) -> None:
    client.force_login(alice)
    url = f"/patients/{urgent_patient.pk}/cards/"
    bare = client.post(url, {"code": "extreme-alp", "action": "acknowledge"}, follow=True)
    assert "The page did not say what it showed" in bare.content.decode()
    assert not CardAction.objects.exists()  # it could cover a case or card nobody saw
    shown = shown_with_cards(client, urgent_patient)
    response = client.post(url, {"code": "extreme-alp", "action": "acknowledge", **shown})
    assert response.status_code == 302 and CardAction.objects.count() == 1
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post(url, {"code": "extreme-alp", "action": "undo"}).status_code == 403
    assert CardAction.objects.get().undone_at is None


def test_another_clinic_cannot_act_on_a_card(client: Client, bob: Any, urgent_patient: Any) -> None:
    client.force_login(bob)
    response = client.post(
        f"/patients/{urgent_patient.pk}/cards/", {"code": "extreme-alp", "action": "acknowledge"}
    )
    assert response.status_code == 404
    assert not CardAction.objects.exists()


# ---------------------------------------------------------------------------------------------
# Mark done


def test_mark_done_records_outcome_date_and_note_and_undo_reopens(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice, mrn="PAGET-1")
    follow_up = FollowUp.objects.filter(patient=patient, completed_at=None).first()
    assert follow_up is not None
    base = f"/patients/{patient.pk}/follow-ups/{follow_up.pk}"
    done_on = timezone.localdate() - timedelta(days=2)
    tomorrow = timezone.localdate() + timedelta(days=1)
    html = alice_client.post(
        f"{base}/done/", {"outcome": "done", "done_on": str(tomorrow)}, headers=HTMX
    ).content.decode()
    assert "date done: The date done cannot be after today." in html
    follow_up.refresh_from_db()
    assert follow_up.completed_at is None
    html = alice_client.post(
        f"{base}/done/",
        {"outcome": "done_elsewhere", "done_on": str(done_on), "note": "GP drew it"},
        headers=HTMX,
    ).content.decode()
    follow_up.refresh_from_db()
    assert (follow_up.outcome, follow_up.done_on, follow_up.note) == (
        "done_elsewhere",
        done_on,
        "GP drew it",
    )
    assert "Done elsewhere" in html and "GP drew it" in html
    assert f"{base}/undo/" in html
    alice_client.post(f"{base}/undo/", headers=HTMX)
    follow_up.refresh_from_db()
    assert follow_up.completed_at is None and follow_up.outcome == ""
    assert follow_up.history.count() >= 3


def test_marking_the_dental_examination_done_updates_the_case(
    alice_client: Client, dental_patient: Any
) -> None:
    follow_up = FollowUp.objects.get(patient=dental_patient, code="dental-exam")
    version = dental_patient.version
    html = alice_client.post(
        f"/patients/{dental_patient.pk}/follow-ups/{follow_up.pk}/done/",
        {"outcome": "done", "done_on": str(timezone.localdate())},
        headers=HTMX,
    ).content.decode()
    dental_patient.refresh_from_db()
    assert dental_patient.dental_exam_done is True
    assert dental_patient.version == version + 1
    assert "antiresorptive-dental-exam" not in cards(dental_patient)
    assert 'data-code="antiresorptive-dental-exam"' not in html
    alice_client.post(
        f"/patients/{dental_patient.pk}/follow-ups/{follow_up.pk}/undo/", headers=HTMX
    )
    dental_patient.refresh_from_db()
    assert dental_patient.dental_exam_done is False
    assert "antiresorptive-dental-exam" in cards(dental_patient)


def test_marking_done_twice_keeps_the_first_outcome_for_the_case_as_well(
    alice_client: Client, dental_patient: Any
) -> None:
    """Two tabs, or a resent form: "declined" then "done". The follow-up kept "declined" but
    the case recorded the examination as done, and Undo then left it recorded."""
    follow_up = FollowUp.objects.get(patient=dental_patient, code="dental-exam")
    base = f"/patients/{dental_patient.pk}/follow-ups/{follow_up.pk}"
    today = str(timezone.localdate())
    for outcome in ("declined", "done"):
        alice_client.post(f"{base}/done/", {"outcome": outcome, "done_on": today}, headers=HTMX)
    follow_up.refresh_from_db()
    dental_patient.refresh_from_db()
    assert (follow_up.outcome, dental_patient.dental_exam_done) == ("declined", False)
    assert "antiresorptive-dental-exam" in cards(dental_patient)
    alice_client.post(f"{base}/undo/", headers=HTMX)
    dental_patient.refresh_from_db()
    assert dental_patient.dental_exam_done is False


def test_an_action_sent_twice_is_one_action_and_one_undo_takes_it_back(
    alice_client: Client, urgent_patient: Any
) -> None:
    """A double click: two acknowledgements, and Undo took back only the second."""
    for _ in range(2):
        act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    assert CardAction.objects.count() == 1
    html = undo(alice_client, urgent_patient, "extreme-alp").content.decode()
    assert 'data-action="acknowledge"' not in html
    # Different actions still stack: Undo steps back one.
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    act(
        alice_client, urgent_patient, code="extreme-alp", action="override", reason="not-applicable"
    )
    html = undo(alice_client, urgent_patient, "extreme-alp").content.decode()
    assert 'data-action="acknowledge"' in html


def test_undo_takes_back_the_clinicians_action_not_the_ehrs_feedback(
    alice_client: Client, urgent_patient: Any
) -> None:
    """CDS Hooks feedback on the same card, arriving after the acknowledgement, was what Undo
    marked undone: the acknowledgement stayed and the feedback left the analytics."""
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    acknowledged = CardAction.objects.get()
    feedback = CardAction.objects.create(
        patient=urgent_patient,
        clinic_id=urgent_patient.clinic_id,
        code="extreme-alp",
        kind=CardAction.Kind.ACCEPT,
        source=CardAction.Source.CDS,
        rule_set_version=current_rule_set().version,
        at=timezone.now() + timedelta(seconds=1),
    )
    html = undo(alice_client, urgent_patient, "extreme-alp").content.decode()
    assert 'data-action="acknowledge"' not in html
    acknowledged.refresh_from_db()
    feedback.refresh_from_db()
    assert acknowledged.undone_at is not None and feedback.undone_at is None


def _undo_form(client: Client, patient: Any, code: str) -> dict[str, str]:
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    shown = re.search(rf'name="code" value="{code}">.*?name="undo" value="(\d+)"', page)
    assert shown is not None
    return {"code": code, "action": "undo", "undo": shown[1]}


def test_undo_sent_twice_takes_back_one_action(alice_client: Client, urgent_patient: Any) -> None:
    """A double click on Undo (the same form twice) took back the action before the one shown
    too: the acknowledgement under the override was undone with it."""
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    act(
        alice_client, urgent_patient, code="extreme-alp", action="override", reason="not-applicable"
    )
    form = _undo_form(alice_client, urgent_patient, "extreme-alp")
    act(alice_client, urgent_patient, **form)
    html = act(alice_client, urgent_patient, **form).content.decode()
    assert "That action was already undone." in html
    assert 'data-action="acknowledge"' in html
    in_force = CardAction.objects.filter(undone_at=None)
    assert list(in_force.values_list("kind", flat=True)) == ["acknowledge"]


def test_marking_done_what_a_colleague_marked_done_meanwhile_says_so(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """The second clinician's outcome and note were dropped while the page told them "Marked
    done". Found by an audit."""
    from django.contrib.auth.models import User

    from pathways.models import Membership

    patient = stored_patient(north_clinic, alice, mrn="PAGET-2")
    follow_up = FollowUp.objects.filter(patient=patient, completed_at=None).first()
    assert follow_up is not None
    carol = User.objects.create_user("carol")
    Membership.objects.create(user=carol, clinic=north_clinic, role=Membership.Role.CLINICIAN)
    follow_up_mark_done(follow_up=follow_up, user=carol, note="Drawn on the ward")
    url = f"/patients/{patient.pk}/follow-ups/{follow_up.pk}/done/"
    html = alice_client.post(url, {"outcome": "done", "note": "Mine"}, headers=HTMX)
    text = html.content.decode()
    assert f"Already marked done ({follow_up.title}) by carol" in text
    assert "your outcome and note were not recorded" in text
    follow_up.refresh_from_db()
    assert (follow_up.completed_by, follow_up.note) == (carol, "Drawn on the ward")


def test_an_action_from_a_page_loaded_before_a_colleague_acted_on_the_card_is_refused(
    alice_client: Client, urgent_patient: Any, north_clinic: Any
) -> None:
    """Acknowledge and override at once: the later one replaced the colleague's in silence, an
    action on a card its author never saw acted on. Found by an audit."""
    from django.contrib.auth.models import User

    from pathways.models import Membership

    shown = shown_with_cards(alice_client, urgent_patient, "extreme-alp")
    assert shown["shown"] == "no action"
    carol = User.objects.create_user("carol")
    Membership.objects.create(user=carol, clinic=north_clinic, role=Membership.Role.CLINICIAN)
    colleague = Client()
    colleague.force_login(carol)
    act(colleague, urgent_patient, code="extreme-alp", action="override", reason="contraindicated")
    html = act(
        alice_client, urgent_patient, code="extreme-alp", action="acknowledge", **shown
    ).content.decode()
    assert "carol acted on this card since this page was loaded (overridden)" in html
    assert list(CardAction.objects.values_list("by__username", "kind")) == [("carol", "override")]


def test_undo_from_a_page_loaded_before_a_colleague_acted_changes_nothing(
    alice_client: Client, urgent_patient: Any, north_clinic: Any
) -> None:
    """Alice's page shows her acknowledgement with its Undo; a colleague then overrides the
    card. Her Undo took back the colleague's override, which she never saw, in her name, and
    left her acknowledgement in force. It is now refused, and says why."""
    from django.contrib.auth.models import User

    from pathways.models import Membership

    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    form = _undo_form(alice_client, urgent_patient, "extreme-alp")
    carol = User.objects.create_user("carol")
    Membership.objects.create(user=carol, clinic=north_clinic, role=Membership.Role.CLINICIAN)
    colleague = Client()
    colleague.force_login(carol)
    act(colleague, urgent_patient, code="extreme-alp", action="override", reason="contraindicated")
    html = act(alice_client, urgent_patient, **form).content.decode()
    assert "changed since this page was loaded" in html
    assert not CardAction.objects.exclude(undone_at=None).exists()
    no_id = act(alice_client, urgent_patient, code="extreme-alp", action="undo").content.decode()
    assert "Say which action to undo." in no_id
    assert not CardAction.objects.exclude(undone_at=None).exists()


def test_a_card_that_calmed_down_stays_acknowledged_one_that_escalated_is_back(
    alice_client: Client, urgent_patient: Any
) -> None:
    """The digest held the priority of the day: a card escalated or calmed by the calendar
    alone came back either way (issue 12: the calendar alone does not bring it back). Now only
    a card more urgent than when it was acted on is back."""
    rule_set = current_rule_set()
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    result = engine.assess(patient_to_case(urgent_patient), rule_set)

    def with_priority(priority: str) -> engine.Result:
        recommendations = tuple(
            dataclasses.replace(rec, priority=priority) if rec.code == "extreme-alp" else rec
            for rec in result.recommendations
        )
        return dataclasses.replace(result, recommendations=recommendations)

    assert active_actions(urgent_patient, with_priority("high"), rule_set).get("extreme-alp")
    CardAction.objects.update(priority="high")  # acted on while it was high
    escalated = active_actions(urgent_patient, with_priority("urgent"), rule_set)
    assert escalated.get("extreme-alp") is None


# ---------------------------------------------------------------------------------------------
# Exports


def csv_text(response: Any) -> str:
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    return b"".join(response.streaming_content).decode("utf-8-sig")  # after the byte-order mark


def csv_rows(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(csv_text(response))))


def test_worklist_csv_follows_the_filters_and_is_access_logged(
    alice_client: Client, alice: Any, north_clinic: Any, urgent_patient: Any
) -> None:
    stored_patient(north_clinic, alice, mrn="=HYPERLINK(1)", name="Formula")
    table = csv_rows(alice_client.get("/worklist.csv?priority=urgent"))
    assert [row["mrn"] for row in table] == ["URG-1"]
    assert table[0]["status"] == "Needs action" and table[0]["top_priority"] == "urgent"
    assert AccessLog.objects.filter(patient=urgent_patient, action="worklist CSV export").exists()
    everything = csv_rows(alice_client.get("/worklist.csv?status=upcoming"))
    assert "'=HYPERLINK(1)" in {row["mrn"] for row in everything}


def test_the_csv_link_follows_filters_changed_in_place(
    alice_client: Client, urgent_patient: Any
) -> None:
    """A filter changed in place replaces the results only: the download link, outside them,
    kept the page's first query, so the file held rows other than those on screen."""
    assert 'id="worklist-csv" href="/worklist.csv"' in alice_client.get("/").content.decode()
    html = alice_client.get("/?priority=urgent&status=", headers=HTMX).content.decode()
    link = re.search(r'<a [^>]*id="worklist-csv"[^>]*>', html)
    assert link is not None and 'hx-swap-oob="true"' in link.group()
    assert 'href="/worklist.csv?priority=urgent&amp;status="' in link.group()


def test_worklist_csv_holds_every_page_of_the_worklist(
    alice_client: Client, alice: Any, north_clinic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export is not the first page, nor cut at a cap: every matching patient, in the
    worklist's order, written a chunk at a time (chunks of 10 here: 27 patients are 3)."""
    monkeypatch.setattr("pathways.views.CSV_CHUNK", 10)
    for number in range(PAGE_SIZE + 2):
        stored_patient(north_clinic, alice, mrn=f"P-{number:02}", name=f"Patient {number}")
    pages = []
    for page in (1, 2):
        html = alice_client.get(f"/?status=upcoming&page={page}").content.decode()
        pages += rows(html)
    assert len(pages) == PAGE_SIZE + 2
    table = csv_rows(alice_client.get("/worklist.csv?status=upcoming&page=2"))
    assert [row["mrn"] for row in table] == pages
    logged = AccessLog.objects.filter(action="worklist CSV export")
    assert logged.count() == PAGE_SIZE + 2


def test_worklist_csv_of_an_empty_worklist_is_its_header(alice_client: Client) -> None:
    text = csv_text(alice_client.get("/worklist.csv?priority=urgent"))
    assert text.splitlines() == [",".join(CSV_COLUMNS)]


def test_follow_ups_calendar_names_the_mrn_not_the_patient(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice, mrn="PAGET-9", name="Margaret Ellis")
    response = alice_client.get(f"/patients/{patient.pk}/follow-ups.ics")
    assert response["Content-Type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(response.content)
    events = calendar.walk("VEVENT")
    open_follow_ups = FollowUp.objects.filter(patient=patient, completed_at=None)
    assert len(events) == open_follow_ups.count() > 0
    assert {event.decoded("dtstart") for event in events} == {f.due for f in open_follow_ups}
    for event in events:
        assert "MRN PAGET-9" in str(event["summary"])
    assert b"Ellis" not in response.content and b"Margaret" not in response.content
    assert AccessLog.objects.filter(patient=patient, action__contains="iCalendar").exists()


def test_a_patient_with_no_open_follow_up_gets_a_message_not_an_empty_calendar(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """The file held no event, which RFC 5545 does not allow (calendar apps refuse it)."""
    patient = stored_patient(north_clinic, alice, mrn="PAGET-9", name="Margaret Ellis")
    for follow_up in FollowUp.objects.filter(patient=patient):
        follow_up_mark_done(follow_up=follow_up, user=alice)
    response = alice_client.get(f"/patients/{patient.pk}/follow-ups.ics", follow=True)
    assert response.redirect_chain == [(f"/patients/{patient.pk}/", 302)]
    assert "No open follow-ups to put in a calendar." in response.content.decode()


def test_the_printed_summary_names_who_printed_it(
    alice_client: Client, urgent_patient: Any
) -> None:
    html = alice_client.get(f"/patients/{urgent_patient.pk}/").content.decode()
    assert "Printed by alice on " in html


# ---------------------------------------------------------------------------------------------
# Rule analytics (issue 14, item 5) over the card-action store and the firing log


def test_rule_analytics_counts_actions_per_rule_and_flags_overridden_rules(
    alice_client: Client, alice: Any, bob: Any, north_clinic: Any, south_clinic: Any
) -> None:
    from pathways.models import RuleFiring

    patients = [
        stored_patient(north_clinic, alice, urgent_document(), mrn=f"U-{n}", name="Urgent")
        for n in range(3)
    ]
    south = stored_patient(south_clinic, bob, urgent_document(), mrn="S-1", name="South")
    assert RuleFiring.objects.filter(code="extreme-alp", change="started").count() == 4
    for patient in patients[:2]:
        act(alice_client, patient, code="extreme-alp", action="override", reason="done-elsewhere")
    act(alice_client, patients[2], code="extreme-alp", action="acknowledge")
    act(
        alice_client,
        patients[2],
        code="fracture-surgery-radiation",
        action="override",
        reason="contraindicated",
    )
    undo(alice_client, patients[2], "fracture-surgery-radiation")
    CardAction.objects.create(  # CDS Hooks feedback lands in the same store
        patient=patients[2],
        clinic=north_clinic,
        code="fracture-surgery-radiation",
        kind="accept",
        source="cds",
        rule_set_version="x",
        case_digest="",
        card_digest="",
    )
    CardAction.objects.create(  # another clinic's override never counts here
        patient=south,
        clinic=south_clinic,
        code="fracture-surgery-radiation",
        kind="override",
        reason="other",
        reason_text="x",
        rule_set_version="x",
        case_digest="",
        card_digest="",
    )
    alice.is_staff = True
    alice.save()
    response = alice_client.get("/admin/rule-analytics/?min_patients=3")
    assert response.status_code == 200
    rows = {row.code: row for row in response.context["rows"]}
    extreme = rows["extreme-alp"]
    assert (extreme.firing_now, extreme.fired, extreme.overridden) == (3, 3, 2)
    assert (extreme.acknowledged, extreme.reasons["done-elsewhere"]) == (1, 2)
    assert extreme.flagged and extreme.override_percent == "67 %"
    fracture = rows["fracture-surgery-radiation"]
    assert (fracture.overridden, fracture.accepted, fracture.flagged) == (0, 1, False)
    assert response.context["rows"][0].code == "extreme-alp"  # sorted by share overridden
    html = response.content.decode()
    assert "Already done elsewhere: 2" in html and 'data-flagged="true"' in html
    # The default needs 20 patients before a rule is flagged.
    assert not alice_client.get("/admin/rule-analytics/").context["flagged"]
    bad = alice_client.get("/admin/rule-analytics/?start=2026-02-01&end=2026-01-01")
    assert bad.status_code == 400 and "From: The start of the period is after its end." in (
        bad.content.decode()
    )


def test_rule_analytics_refuses_a_period_outside_the_calendar_it_counts(
    client: Client, publisher: Any
) -> None:
    """A period ending 9999-12-31 was a server error (its day after is past the calendar)."""
    client.force_login(publisher)
    response = client.get("/admin/rule-analytics/?end=9999-12-31")
    assert response.status_code == 400  # as for a start after the end
    assert response.context["form"].errors == {
        "end": ["Choose a date from 1900-01-01 to 2200-12-31."]
    }


def test_rule_analytics_is_for_staff_only(alice_client: Client) -> None:
    assert alice_client.get("/admin/rule-analytics/").status_code == 302


def test_the_clinic_filter_narrows_to_one_of_the_users_clinics(
    alice_client: Client, alice: Any, bob: Any, north_clinic: Any, south_clinic: Any
) -> None:
    from pathways.models import Clinic, Membership

    west = Clinic.objects.create(name="West Bone Clinic", slug="west")
    Membership.objects.create(user=alice, clinic=west)
    stored_patient(north_clinic, alice, urgent_document(), mrn="N-1", name="North")
    stored_patient(west, alice, urgent_document(), mrn="W-1", name="West")
    stored_patient(south_clinic, bob, urgent_document(), mrn="S-1", name="South")
    assert sorted(rows(alice_client.get("/").content.decode())) == ["N-1", "W-1"]
    html = alice_client.get(f"/?clinic={west.pk}").content.decode()
    assert rows(html) == ["W-1"] and 'id="id_clinic"' in html
    # Another clinic's key is not a choice: ignored, never a way in.
    assert sorted(rows(alice_client.get(f"/?clinic={south_clinic.pk}").content.decode())) == [
        "N-1",
        "W-1",
    ]
    exported = csv_text(alice_client.get(f"/worklist.csv?clinic={west.pk}"))
    assert "W-1" in exported and "N-1" not in exported


def test_a_follow_up_has_the_same_status_on_the_worklist_and_the_patient_page(
    client: Client,
) -> None:
    """The demo's dental examination due today is "due soon" on both screens (it was "upcoming"
    on the patient page while the worklist said "due soon, today")."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("seed_demo", stdout=io.StringIO())
    client.force_login(User.objects.get(username="clinician"))
    follow_up = FollowUp.objects.get(patient__mrn="RV-2002", code="dental-exam", completed_at=None)
    assert 0 <= (follow_up.due - timezone.localdate()).days <= 7
    worklist = client.get("/").content.decode()
    row = worklist.split('data-mrn="RV-2002"', 1)[0].rsplit("<tr ", 1)[1]
    assert 'data-status="due_soon"' in row
    page = client.get(f"/patients/{follow_up.patient_id}/").content.decode()
    item = page.split('data-follow-up="dental-exam" data-status="', 1)[1].split("</li>", 1)[0]
    assert item.startswith("due_soon") and ">due soon</span>" in item


def _record_alp(patient: Any, user: Any, value: float, on: str) -> None:
    from datetime import date

    from pathways.models import Patient
    from pathways.services import patient_record_result

    stored = Patient.objects.get(pk=patient.pk)
    lab = engine.Lab.create("alp", value, "U/L", date.fromisoformat(on), None, None, None)
    patient_record_result(patient=stored, user=user, lab=lab, expected_version=stored.version)


def test_a_card_action_from_a_page_that_did_not_show_the_case_as_it_is_now_is_refused(
    alice_client: Client, alice: Any, urgent_patient: Any
) -> None:
    """The forms carried no trace of the case they were shown with: an acknowledgement sent
    from a page loaded before a new result (or racing one) was stored against the new case,
    so the card did not come back for the result nobody had seen. Found by a defect hunt."""
    page = alice_client.get(f"/patients/{urgent_patient.pk}/").content.decode()
    shown = re.search(r'name="case" value="([0-9a-f]{64})"', page)
    assert shown is not None
    _record_alp(urgent_patient, alice, 1180, "2026-11-20")  # the lab feed, meanwhile
    html = act(
        alice_client, urgent_patient, code="extreme-alp", action="acknowledge", case=shown.group(1)
    ).content.decode()
    assert "The case changed since this page was loaded" in html
    assert not CardAction.objects.exists()
    fresh = re.search(r'name="case" value="([0-9a-f]{64})"', html)
    assert fresh is not None and fresh.group(1) != shown.group(1)
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge", case=fresh.group(1))
    assert CardAction.objects.get().kind == "acknowledge"


def _action_in_force(patient: Any, code: str = "extreme-alp") -> CardAction | None:
    from pathways.models import Patient

    stored = Patient.objects.get(pk=patient.pk)
    rule_set = current_rule_set()
    result = engine.assess(patient_to_case(stored), rule_set)
    return active_actions(stored, result, rule_set).get(code)


def test_an_action_the_case_ended_stays_ended_when_the_change_is_taken_back(
    alice_client: Client, alice: Any, urgent_patient: Any
) -> None:
    """A result recorded and then removed again: the case was back as it had been, and the
    acknowledgement taken before the result silently held again. Found by a defect hunt."""
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    _record_alp(urgent_patient, alice, 1180, "2026-11-20")
    assert _action_in_force(urgent_patient) is None
    added = urgent_patient.lab_results.get(collected_on="2026-11-20")
    urgent_patient.refresh_from_db()
    removed = alice_client.post(
        f"/patients/{urgent_patient.pk}/results/{added.pk}/remove/",
        {"version": str(urgent_patient.version)},
    )
    assert removed.status_code == 302 and not urgent_patient.lab_results.filter(pk=added.pk)
    assert _action_in_force(urgent_patient) is None
    action = CardAction.objects.get()
    assert action.ended_at is not None and action.undone_at is None
    assert action.history.count() == 2  # taken, then ended: each kept with its time
    page = alice_client.get(f"/patients/{urgent_patient.pk}/").content.decode()
    assert 'data-action="acknowledge"' not in page


def _reworded_extreme_alp(editor: Any, publisher: Any) -> Any:
    from pathways import publishing
    from pathways.models import Rule
    from tests.factories import publish_reviewed

    draft = publishing.ruleset_start_draft(user=editor)
    Rule.objects.filter(rule_set=draft, code="extreme-alp").update(title="ALP over 1000: act now")
    return publish_reviewed(rule_set=draft, user=publisher, note="reworded", reassess=False)


def test_an_action_a_new_card_ended_stays_ended_after_a_rollback(
    alice_client: Client, urgent_patient: Any, editor: Any, publisher: Any
) -> None:
    """v2 reworded the card (it came back); putting v1 back in force revived the
    acknowledgement of v1's card. Found by a defect hunt."""
    from pathways import publishing
    from pathways.models import RuleSet

    first = RuleSet.objects.get(is_current=True)
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    _reworded_extreme_alp(editor, publisher)
    worklist_copies_store(patient=urgent_patient, result=_assessed(urgent_patient))
    assert _action_in_force(urgent_patient) is None
    publishing.ruleset_rollback(rule_set=first, user=publisher, note="back", reassess=False)
    worklist_copies_store(patient=urgent_patient, result=_assessed(urgent_patient))
    assert _action_in_force(urgent_patient) is None
    assert CardAction.objects.get().ended_at is not None


def _assessed(patient: Any) -> engine.Result:
    return engine.assess(patient_to_case(patient), current_rule_set())


def test_a_card_action_from_a_page_that_showed_another_wording_of_the_card_is_refused(
    alice_client: Client, urgent_patient: Any, editor: Any, publisher: Any
) -> None:
    """The page showed v1's card; v2, published meanwhile, words it otherwise. The
    acknowledgement was stored against v2's card, which the clinician never saw. Found by a
    defect hunt."""
    shown = shown_with_cards(alice_client, urgent_patient)
    _reworded_extreme_alp(editor, publisher)
    html = act(
        alice_client, urgent_patient, code="extreme-alp", action="acknowledge", **shown
    ).content.decode()
    assert "The rules changed since this page was loaded" in html
    assert not CardAction.objects.exists()
    assert "ALP over 1000: act now" in html  # the card as it is now, to act on again
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    assert CardAction.objects.get().kind == "acknowledge"


def test_a_card_action_from_a_page_of_an_earlier_version_that_words_the_card_alike_is_kept(
    alice_client: Client, urgent_patient: Any, editor: Any, publisher: Any
) -> None:
    from pathways import publishing
    from tests.factories import publish_reviewed

    shown = shown_with_cards(alice_client, urgent_patient)
    draft = publishing.ruleset_start_draft(user=editor)
    publish_reviewed(rule_set=draft, user=publisher, note="same cards", reassess=False)
    assert current_rule_set().version != shown["rule_set"]
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge", **shown)
    assert CardAction.objects.get().kind == "acknowledge"


def test_undo_of_an_action_that_no_longer_holds_is_refused(
    alice_client: Client, alice: Any, urgent_patient: Any
) -> None:
    """The page showed the acknowledgement with its Undo; a new result then ended it. The Undo
    from that page marked undone an action no longer in force. Found by a defect hunt."""
    act(alice_client, urgent_patient, code="extreme-alp", action="acknowledge")
    page = alice_client.get(f"/patients/{urgent_patient.pk}/").content.decode()
    shown = re.search(r'name="undo" value="(\d+)"', page)
    assert shown is not None
    _record_alp(urgent_patient, alice, 1180, "2026-11-20")
    html = act(
        alice_client, urgent_patient, code="extreme-alp", action="undo", undo=shown[1]
    ).content.decode()
    assert "That action no longer holds" in html
    assert CardAction.objects.get().undone_at is None


def test_marking_done_a_follow_up_a_new_result_just_rescheduled_is_said_not_a_server_error(
    client: Client, alice: Any, north_clinic: Any, monkeypatch: Any
) -> None:
    """The follow-up, read before the patient's lock, was replaced by the result's re-schedule
    before the lock was taken: FollowUp.DoesNotExist, a 500. Found by a defect hunt."""
    from pathways import views

    patient = stored_patient(north_clinic, alice)
    recheck = FollowUp.objects.get(patient=patient, code="alp-recheck")
    mark_done = views.follow_up_mark_done

    def the_lab_feed_writes_first(**kwargs: Any) -> FollowUp:
        _record_alp(patient, alice, 200, "2026-11-20")
        return mark_done(**kwargs)

    monkeypatch.setattr(views, "follow_up_mark_done", the_lab_feed_writes_first)
    client.force_login(alice)
    response = client.post(
        f"/patients/{patient.pk}/follow-ups/{recheck.pk}/done/", {"outcome": "done"}, follow=True
    )
    assert response.status_code == 200
    assert (
        f"Not changed: {recheck.title}: re-scheduled meanwhile (a new result or change): see "
        "the schedule as it is now." in response.content.decode()
    )
    assert not FollowUp.objects.filter(pk=recheck.pk).exists()


def test_a_new_threshold_the_card_depends_on_brings_an_acknowledged_card_back(
    alice: Any, alice_client: Client, north_clinic: Any, editor: Any, publisher: Any
) -> None:
    """The digest held only the parameters its condition names: pth-dependent-hypercalcaemia
    reads its threshold through a fact and prints it ("≥ 20"), so a version that moved it to
    50 kept the acknowledgement of a card that now says something else."""
    from pathways import publishing
    from pathways.models import Parameter, RuleExample
    from tests.factories import publish_reviewed

    code = "pth-dependent-hypercalcaemia"
    document = {
        "as_of": timezone.localdate().isoformat(),
        "patient": {"birth_date": "1976-06-01", "sex": "female", "weight_kg": 65},
        "labs": [
            {"test": "alp", "value": 80, "unit": "U/L", "collected_at": "2026-11-10"},
            {"test": "calcium", "value": 10.5, "unit": "mg/dL", "collected_at": "2026-11-10"},
            {"test": "pth", "value": 60, "unit": "pg/mL", "collected_at": "2026-11-10"},
        ],
    }
    patient = stored_patient(north_clinic, alice, document, mrn="PTH")
    result = engine.assess(patient_to_case(patient), current_rule_set())
    for rec in result.recommendations:
        if rec.priority in ("urgent", "high"):
            act(alice_client, patient, code=rec.code, action="acknowledge")
    assert AssessmentSnapshot.objects.get(patient=patient).action_rank == 9
    draft = publishing.ruleset_start_draft(user=editor)
    Parameter.objects.filter(rule_set=draft, name="pth_not_suppressed_pg_ml").update(value=50)
    example = RuleExample.objects.get(rule_set=draft, name="PTH exactly 20 pg/mL")
    for lab in example.case["labs"]:
        if lab["test"] == "pth":
            lab["value"] = 50
    example.save()
    publish_reviewed(rule_set=draft, user=publisher, note="PTH threshold 50 pg/mL")
    card = next(
        rec
        for rec in engine.assess(patient_to_case(patient), current_rule_set()).recommendations
        if rec.code == code
    )
    assert "(≥ 50" in card.rationale
    snapshot = AssessmentSnapshot.objects.get(patient=patient)
    assert (snapshot.top_code, snapshot.action_rank) == (code, engine.PRIORITY_RANK["high"])


def test_a_card_depends_on_the_parameters_of_facts_read_through_other_facts() -> None:
    """thi-consider reads !bone_liver_tests_abnormal, computed from vitamin_d_deficient, whose
    threshold is a parameter: a new threshold changes when the card fires."""
    from pathways.card_actions import card_params

    rule = current_rule_set().rule("thi-consider")
    assert rule is not None
    assert "vitamin_d_deficient_ng_ml" in card_params(rule)


@pytest.mark.django_db
def test_override_text_given_with_a_coded_reason_is_shown_on_the_overridden_card(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """The override form offers "Reason text (required for "Other")", optional with the other
    reasons. Given with "Contraindicated", it is stored but the overridden card shows only
    "Overridden: Contraindicated for this patient": what the clinician wrote is on no screen."""
    patient = stored_patient(north_clinic, alice, urgent_document(), mrn="URG-1")
    html = act(
        alice_client,
        patient,
        code="extreme-alp",
        action="override",
        reason="contraindicated",
        reason_text="Known sample haemolysis",
    ).content.decode()
    assert CardAction.objects.get().reason_text == "Known sample haemolysis"  # stored
    card = card_markup(html, "extreme-alp")
    assert "Overridden: Contraindicated for this patient: Known sample haemolysis" in card
