"""The impact preview of a rule-set draft (pathways/impact.py, rules_admin.py, versions.py):
marked out of date when patients' data change, priorities as patients have them, a draft that
fixes a fault of the set in force, which clinics each figure covers, a reordering in the diff.
Each test is a defect an audit found."""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from pathways import engine, impact, publishing, rules, services, versions
from pathways.cases import patient_to_case
from pathways.models import Clinic, Patient, Rule, RuleSet
from pathways.rules_admin import patients_changed_since
from tests.conftest import rule_editor
from tests.factories import paget_on_alendronate_document, publish_reviewed, stored_patient
from tests.test_tuning_workflow import extreme_alp_examples_moved, extreme_alp_threshold_raised

pytestmark = pytest.mark.django_db


def _paget(alp: float) -> dict[str, Any]:
    document = paget_on_alendronate_document()
    document["labs"][-1]["value"] = alp
    return document


@pytest.fixture
def population(north_clinic: Clinic, south_clinic: Clinic, alice: User, bob: User) -> list[Patient]:
    patients = [
        stored_patient(north_clinic, alice, _paget(alp), mrn=f"N-{alp}", name=f"North {alp}")
        for alp in (260, 950, 1100, 1199, 1250, 3000)
    ]
    patients += [
        stored_patient(south_clinic, bob, _paget(alp), mrn=f"S-{alp}", name=f"South {alp}")
        for alp in (1050, 1500)
    ]
    return patients


@pytest.fixture
def north_editor(north_clinic: Clinic) -> User:
    """A rule editor who is a member of the north clinic only."""
    return rule_editor("ned", clinic=north_clinic)


@pytest.fixture
def north_client(north_editor: User) -> Client:
    client = Client()
    client.force_login(north_editor)
    return client


def _raise_extreme_alp(draft: RuleSet, user: User, to: float = 1200) -> None:
    """The threshold raised, with the rule's boundary examples moved (a publishable draft)."""
    extreme_alp_threshold_raised(draft, user=user, to=to)
    extreme_alp_examples_moved(draft, user=user, to=to)


def _preview_page(client: Client, draft: RuleSet) -> tuple[str, str]:
    """Start the preview in the admin (the task runs at once in tests); its URL and page."""
    response = client.post(f"/admin/pathways/ruleset/{draft.pk}/preview/")
    assert response.status_code == 302
    url = response["Location"]
    page = client.get(url).content.decode()
    assert 'id="preview-summary"' in page
    return url, page


def _element(page: str, marker: str, end: str) -> str:
    start = page.index(marker)
    return page[start : page.index(end, start)]


# ---------------------------------------------------------------------------------------------


def test_a_preview_computed_before_a_patient_changed_is_marked_out_of_date(
    population: list[Patient], north_editor: User, north_client: Client
) -> None:
    """A new result moves a patient across the draft's threshold after the preview: the stored
    preview no longer says what publishing would do, yet its page shows it as current."""
    draft = publishing.ruleset_start_draft(user=north_editor)
    _raise_extreme_alp(draft, north_editor)
    url, page = _preview_page(north_client, draft)
    assert "North 1100" in page and 'id="preview-out-of-date"' not in page

    patient = Patient.objects.get(mrn="N-1100")
    latest = engine.parse_case(_paget(1100)).labs[-1]
    newer = engine.Lab(
        **{
            **latest.__dict__,
            "collected_on": latest.collected_on.replace(day=20),
            "value": 200,
            "canonical_value": 200,
        }
    )
    services.patient_record_result(
        patient=patient, user=north_editor, lab=newer, expected_version=patient.version
    )
    fresh = impact.ruleset_preview(draft=draft, user=north_editor)
    assert "N-1100" not in {item.mrn for item in fresh.changed}  # the change matters

    page = north_client.get(url).content.decode()
    assert "North 1100" in page  # still listed as losing extreme-alp
    assert 'id="preview-out-of-date"' in page, "patient data changed since: not marked stale"


def test_the_out_of_date_check_reads_an_index_not_every_patient(
    population: list[Patient],
) -> None:
    """Every view of a stored preview asks whether any patient changed since it ran: an index
    lookup on updated_at, not a read of the whole patients table."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # a handful of rows: force the choice
    moment = max(patient.updated_at for patient in population)
    plan = patients_changed_since(moment).values_list("pk", flat=True).explain()
    assert "patient_updated_at_idx" in plan, plan
    assert not patients_changed_since(moment).exists()


def test_gained_and_lost_by_priority_counts_the_priority_patients_actually_have(
    population: list[Patient], north_editor: User, north_client: Client
) -> None:
    """extreme-alp is "urgent", escalated to "high" for Paget's disease: the Paget patients
    who lose it lose a high card. The by-priority table files them under the rule's base
    priority (urgent), so the table misstates which priority of card patients lose."""
    published = RuleSet.objects.get(is_current=True)
    draft = publishing.ruleset_start_draft(user=north_editor)
    _raise_extreme_alp(draft, north_editor)
    old, new = rules.rule_set_for(published), rules.load_rule_set(draft)
    lost: Counter[str] = Counter()
    gained: Counter[str] = Counter()
    for patient in Patient.objects.all():
        case = patient_to_case(patient)
        before = {r.code: r.priority for r in engine.assess(case, old).recommendations}
        after = {r.code: r.priority for r in engine.assess(case, new).recommendations}
        lost.update(before[code] for code in before.keys() - after.keys())
        gained.update(after[code] for code in after.keys() - before.keys())
    assert lost == Counter({"high": 3}) and not gained  # what patients would see

    _, page = _preview_page(north_client, draft)
    table = _element(page, 'id="preview-priorities"', "</table>")
    shown_lost = {
        priority: int(removed)
        for priority, removed in re.findall(
            r'data-priority="([^"]*)">.*?class="tuning-removed">(\d+)<', table
        )
        if int(removed)
    }
    assert shown_lost == dict(lost)


def test_a_draft_that_fixes_a_fault_of_the_set_in_force_counts_the_patients_it_fixes(
    population: list[Patient], editor: User, publisher: User
) -> None:
    """The set in force fails at run time for one patient (ALP 3000; its examples missed it).
    The draft that corrects it assesses that patient fine, but the preview drops the patient
    from every draft figure ("With the draft") and lists it as one the draft cannot assess."""
    faulty = publishing.ruleset_start_draft(user=editor)
    Rule.objects.filter(rule_set=faulty, code="extreme-alp").update(
        condition="alp_elevated && alp_latest > params.extreme_alp"
        " && (alp_latest < 2900.0 || int(alp_latest) / 0 > 0)"
    )
    publishing.ruleset_touch(rule_set=faulty, user=editor)
    publish_reviewed(rule_set=faulty, user=publisher, note="in force, with a fault")
    fixer = rule_editor("fixer", clinic=Clinic.objects.get(slug="north"))
    fix = publishing.ruleset_start_draft(user=fixer)
    Rule.objects.filter(rule_set=fix, code="extreme-alp").update(
        condition="alp_elevated && alp_latest > params.extreme_alp"
    )
    publishing.ruleset_touch(rule_set=fix, user=fixer)
    fixed = Patient.objects.get(mrn="N-3000")

    preview = impact.ruleset_preview(draft=fix, user=fixer)

    draft_rules = rules.load_rule_set(fix)
    after: Counter[str] = Counter()
    for patient in Patient.objects.all():
        result = engine.assess(patient_to_case(patient), draft_rules)  # never fails
        after.update({r.code for r in result.recommendations})
    assert {row.code: row.after for row in preview.rules if row.after} == dict(after), (
        f"patient {fixed.pk} left out: {[(e.patient_id, e.error) for e in preview.errors]}"
    )


def test_every_figure_on_the_preview_page_says_which_clinics_it_covers(
    population: list[Patient], north_editor: User, north_client: Client
) -> None:
    """An editor of the north clinic only: the summary's counts and the by-priority table
    include the south clinic's patients without saying so, beside a parameter panel that
    counts "your clinics" only (the rule table alone says "all clinics")."""
    draft = publishing.ruleset_start_draft(user=north_editor)
    _raise_extreme_alp(draft, north_editor)
    _, page = _preview_page(north_client, draft)
    summary = _element(page, 'id="preview-summary"', "</p>")
    assert "<strong>3</strong> would see a change" in summary  # 2 north + 1 south
    priorities = _element(page, 'id="preview-priorities"', "</caption>")
    for section in (summary, priorities):
        assert "all clinics" in section or "your clinics" in section, section


def test_the_diff_shows_a_draft_that_reorders_rules(editor: User) -> None:
    """Cards of one priority are ordered by the rules' order (engine: position), which
    decides the patient's top card. A draft that only moves a rule is reported identical to
    the version in force, though publishing it changes the cards' order."""
    published = RuleSet.objects.get(is_current=True)
    draft = publishing.ruleset_start_draft(user=editor)
    case = engine.parse_case(paget_on_alendronate_document())
    cards = engine.assess(case, rules.rule_set_for(published)).recommendations
    first, second = next((a, b) for a, b in pairwise(cards) if a.priority == b.priority)
    # The two rules swap places (their positions are distinct in the catalogue).
    a = Rule.objects.get(rule_set=draft, code=first.code)
    b = Rule.objects.get(rule_set=draft, code=second.code)
    assert a.position < b.position
    Rule.objects.filter(pk=a.pk).update(position=b.position)
    Rule.objects.filter(pk=b.pk).update(position=a.position)
    publishing.ruleset_touch(rule_set=draft, user=editor)
    reordered = engine.assess(case, rules.load_rule_set(draft)).recommendations
    order = [r.code for r in reordered]
    assert order.index(second.code) < order.index(first.code)  # the change matters

    assert versions.ruleset_diff(old=published, new=draft) != []
