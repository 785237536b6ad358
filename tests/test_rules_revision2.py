"""Revision 2 as a rule-set version (issue 11): installed by migration 0016 (published over an
untouched revision 1, a draft with an admin notice over a site's own tuning), suppressions,
evidence notes, review dates and citation kinds stored and tunable, `manage.py assess` on it."""

from __future__ import annotations

import importlib
import io
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from pathways import engine, publishing, rules
from pathways.models import Citation, Parameter, Rule, RuleSet
from pathways.rules_admin import RuleForm

pytestmark = pytest.mark.django_db
INSTALL = importlib.import_module("pathways.migrations.0016_install_revision_2")


@pytest.fixture
def editor_client(editor: User) -> Client:
    client = Client()
    client.force_login(editor)
    return client


def _revision_2() -> RuleSet:
    return RuleSet.objects.get(version=rules.REVISION_2_VERSION)


def _forget_revision_2() -> None:
    """The database as it was before 0016: revision 1 in force (what 0002 left)."""
    row = _revision_2()
    RuleSet.objects.filter(pk=row.pk).update(is_current=False, status="draft")
    RuleSet.objects.filter(pk=row.pk).delete()
    RuleSet.objects.filter(version=rules.REVISION_1_VERSION).update(is_current=True)
    rules.clear_cache()


# --- a fresh migrate ------------------------------------------------------------------------


def test_a_fresh_migrate_puts_revision_2_in_force_and_keeps_revision_1() -> None:
    current = RuleSet.objects.get(is_current=True)
    assert current.version == rules.REVISION_2_VERSION == "2026-11-29.1"
    assert current.status == RuleSet.Status.PUBLISHED
    revision_1 = RuleSet.objects.get(version=rules.REVISION_1_VERSION)
    assert revision_1.status == RuleSet.Status.PUBLISHED and not revision_1.is_current
    assert current.based_on == revision_1
    # Revision 1 was installed from its frozen file and still evaluates its retired codes.
    loaded_1 = rules.rule_set_for(revision_1)
    assert loaded_1.rule("mm-dental-exam") is not None
    assert loaded_1.rules == engine.load_catalogue(engine.CATALOGUE_R1_PATH).rules


def test_the_stored_revision_2_is_the_shipped_catalogue_with_its_new_fields() -> None:
    stored = rules.current_rule_set()
    shipped = engine.load_catalogue(version=rules.REVISION_2_VERSION)
    assert stored.rules == shipped.rules
    assert stored.citations == shipped.citations
    assert stored.follow_ups == shipped.follow_ups
    za_dose = Rule.objects.get(rule_set=_revision_2(), code="za-dose")
    assert za_dose.suppressions[1] == {
        "condition": '"za-not-recommended-renal" in fired',
        "reason": "CrCl below 30 now: not recommended",
    }
    assert za_dose.reviewed_on == date(2026, 11, 29)
    assert Rule.objects.get(rule_set=_revision_2(), code="mm-bone-agent").evidence_note
    assert Citation.objects.get(rule_set=_revision_2(), key="ZOMETA-PI").kind == "label"
    assert engine.validate_rule_set(stored) == []
    assert all(outcome.passed for outcome in engine.run_examples(stored))


def test_manage_py_assess_uses_revision_2(tmp_path: Path) -> None:
    case = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "1950-03-02", "sex": "female", "weight_kg": 64},
        "labs": [
            {
                "test": "alp",
                "value": 412,
                "unit": "U/L",
                "collected_at": "2026-10-01T08:15",
                "reference_high": 129,
            },
            {"test": "ggt", "value": 22, "unit": "U/L", "collected_at": "2026-10-01T08:15"},
        ],
        "clinical": {"diagnoses": ["paget"]},
    }
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case), encoding="utf-8")
    out = io.StringIO()
    call_command("assess", str(path), stdout=out)
    document = json.loads(out.getvalue())
    assert document["rule_set"] == "2026-11-29.1"
    assert document["context"] == ["renal_function_unknown"]
    codes = [r["code"] for r in document["recommendations"]]
    assert "measure-renal-first" in codes and "paget-bisphosphonate" in codes
    assert document["findings"]["alp_source"] == "likely_bone"
    assert set(document["sources"]) == {
        c for r in document["recommendations"] for c in r["citations"]
    }
    assert document["sources"]["ES-2014"]["kind"] == "guideline"


# --- migration 0016, both ways --------------------------------------------------------------


def test_over_an_untouched_revision_1_revision_2_is_published() -> None:
    _forget_revision_2()
    INSTALL.install(apps, None)
    row = _revision_2()
    assert row.is_current and row.status == RuleSet.Status.PUBLISHED
    assert row.note == rules.REVISION_2_PUBLISHED_NOTE
    assert rules.revision_2_draft() is None
    INSTALL.install(apps, None)  # a second run changes nothing
    assert RuleSet.objects.filter(note=rules.REVISION_2_PUBLISHED_NOTE).count() == 1


def test_over_a_tuned_site_revision_2_waits_as_a_draft_with_a_notice(
    editor: User, publisher: User, editor_client: Client
) -> None:
    _forget_revision_2()
    # The site tuned revision 1 and published it (four-eyes), before this release.
    draft = publishing.ruleset_start_draft(user=editor)
    parameter = Parameter.objects.get(rule_set=draft, name="extreme_alp")
    parameter.value = 1200
    parameter.save()
    for example in draft.examples.filter(rule__code="extreme-alp"):
        for lab in example.case.get("labs", []):
            if lab["test"] == "alp" and lab["unit"] == "U/L" and lab["value"] >= 1000:
                lab["value"] = round(lab["value"] + 200, 1)
            elif lab["test"] == "alp" and lab["unit"] == "ukat/L":
                lab["value"] = round(1200.6 / 60, 2)
        example.save()
    publishing.ruleset_touch(rule_set=draft, user=editor)
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="Site threshold")
    tuned = publishing.ruleset_publish(rule_set=draft, user=publisher, note="ok", reassess=False)
    tuned_version = tuned.version

    INSTALL.install(apps, None)

    current = RuleSet.objects.get(is_current=True)
    assert current.version == tuned_version  # the site's tuning is not overwritten
    waiting = rules.revision_2_draft()
    assert waiting is not None and waiting.status == RuleSet.Status.DRAFT
    assert waiting.version is None and waiting.based_on == current
    assert Rule.objects.filter(rule_set=waiting, code="za-dose").exists()
    assert RuleSet.objects.filter(
        version=rules.REVISION_1_VERSION
    ).exists()  # earlier versions stay

    page = editor_client.get("/admin/pathways/ruleset/").content.decode()
    assert "Revision 2 of the clinical contract was installed as draft" in page
    assert f"/admin/pathways/ruleset/{waiting.pk}/change/" in page
    rules_page = editor_client.get("/admin/pathways/rule/").content.decode()
    assert "Revision 2 of the clinical contract was installed as draft" in rules_page

    # Its four-eyes review publishes it like any draft; then the notice goes.
    publishing.ruleset_submit(rule_set=waiting, user=editor)
    published = publishing.ruleset_publish(
        rule_set=waiting, user=publisher, note="Revision 2 reviewed", reassess=False
    )
    assert published.is_current and rules.revision_2_draft() is None
    assert (
        "was installed as draft"
        not in editor_client.get("/admin/pathways/ruleset/").content.decode()
    )


# --- the admin: suppressions, review dates, citation kinds ------------------------------------


def _rule_form_data(rule: Rule, **changes: Any) -> dict[str, Any]:
    data = {
        "rule_set": rule.rule_set_id,
        "code": rule.code,
        "pathway": rule.pathway,
        "priority": rule.priority,
        "enabled": "on",
        "position": rule.position,
        "title": rule.title,
        "rationale": rule.rationale,
        "citations": json.dumps(rule.citations),
        "condition": rule.condition,
        "escalate_when": rule.escalate_when,
        "escalate_to": rule.escalate_to,
        "suppressions": json.dumps(rule.suppressions),
        "evidence_note": rule.evidence_note,
        "reviewed_on": rule.reviewed_on.isoformat() if rule.reviewed_on else "",
    }
    data.update(changes)
    return data


def test_suppressions_are_tuned_in_a_draft_and_checked_as_cel(editor: User) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    rule = Rule.objects.get(rule_set=draft, code="bone-scan")
    bad = [{"condition": "pregnnt", "reason": "x"}, {"condition": "child", "reason": " "}]
    form = RuleForm(_rule_form_data(rule, suppressions=json.dumps(bad)), instance=rule)
    assert not form.is_valid()
    errors = " ".join(str(error) for error in form.errors["suppressions"])
    assert 'suppression 1: unknown fact "pregnnt" (did you mean "pregnant"?)' in errors
    assert "suppression 2: the reason is shown to clinicians and is required" in errors

    fewer = [s for s in rule.suppressions if s["condition"] != "pregnant"]
    form = RuleForm(_rule_form_data(rule, suppressions=json.dumps(fewer)), instance=rule)
    assert form.is_valid(), form.errors
    form.save()
    tuned = rules.rule_set_for(RuleSet.objects.get(pk=draft.pk))
    pregnant_with_pain = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "1995-01-01", "sex": "female", "pregnant": True},
        "labs": [
            {"test": "alp", "value": 300, "unit": "U/L", "collected_at": "2026-11-20"},
            {"test": "ggt", "value": 20, "unit": "U/L", "collected_at": "2026-11-20"},
        ],
        "clinical": {"bone_pain": True},
    }
    result = engine.assess(engine.parse_case(pregnant_with_pain), tuned)
    assert "bone-scan" in {r.code for r in result.recommendations}  # no longer stood down
    in_force = engine.assess(engine.parse_case(pregnant_with_pain), rules.current_rule_set())
    assert "bone-scan" in {s.code for s in in_force.suppressed}  # the published set is unchanged


def test_the_admin_lists_rules_whose_review_is_older_than_two_years(
    editor: User, editor_client: Client
) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    old = date.today() - timedelta(days=2 * 365 + 1)
    Rule.objects.filter(rule_set=draft, code="check-ctx").update(reviewed_on=old)
    Rule.objects.filter(rule_set=draft, code="ct-structural").update(reviewed_on=None)
    page = editor_client.get(f"/admin/pathways/rule/?rule_set={draft.pk}&review=overdue")
    html = page.content.decode()
    assert page.status_code == 200
    listed = {code for code in ("check-ctx", "ct-structural", "za-dose") if f">{code}<" in html}
    assert listed == {"check-ctx", "ct-structural"}
    assert "review due" in html
    recent = editor_client.get(f"/admin/pathways/rule/?rule_set={draft.pk}&review=recent")
    assert ">za-dose<" in recent.content.decode() and ">check-ctx<" not in recent.content.decode()


@pytest.mark.parametrize(
    ("today", "reviewed", "overdue"),
    [
        (date(2025, 6, 1), date(2023, 6, 1), False),  # 29 February 2024 between
        (date(2025, 6, 1), date(2023, 5, 31), True),
        (date(2028, 2, 29), date(2026, 2, 28), False),  # two years back from a 29 February
        (date(2023, 6, 1), date(2021, 6, 1), False),
    ],
)
def test_a_review_exactly_two_calendar_years_old_is_not_due(
    monkeypatch: pytest.MonkeyPatch, today: date, reviewed: date, overdue: bool
) -> None:
    """730 days flagged a rule reviewed exactly two years ago when a 29 February fell
    between."""
    from pathways import rules_admin

    monkeypatch.setattr(rules_admin.timezone, "localdate", lambda *args, **kwargs: today)
    assert rules_admin.review_overdue(Rule(reviewed_on=reviewed)) is overdue


def test_citation_kinds_show_in_the_admin(editor_client: Client) -> None:
    html = editor_client.get(f"/admin/pathways/citation/?rule_set={_revision_2().pk}&kind=label")
    text = html.content.decode()
    assert html.status_code == 200
    assert "ZOMETA-PI" in text and "ES-2014" not in text


def test_the_version_diff_names_suppression_and_evidence_changes(editor: User) -> None:
    from pathways import versions

    draft = publishing.ruleset_start_draft(user=editor)
    rule = Rule.objects.get(rule_set=draft, code="check-ctx")
    rule.suppressions = []
    rule.evidence_note = "A note."
    rule.save()
    citation = Citation.objects.get(rule_set=draft, key="LOCAL")
    citation.grade = "ungraded"
    citation.save()
    changes = {
        (c.section, c.key, c.field): (c.old, c.new)
        for c in versions.ruleset_diff(old=_revision_2(), new=draft)
    }
    assert changes[("rules", "check-ctx", "suppressions")] == (
        'child ("CTX needs age-specific limits in a growing child")',
        "",
    )
    assert changes[("rules", "check-ctx", "evidence_note")] == ("", "A note.")
    assert changes[("citations", "LOCAL", "grade")] == ("", "ungraded")


def test_the_rule_page_shows_suppressions_evidence_and_review_date(editor_client: Client) -> None:
    rule = Rule.objects.get(rule_set=_revision_2(), code="isolated-alp-unclear")
    html = editor_client.get(f"/admin/pathways/rule/{rule.pk}/change/").content.decode()
    assert "placental ALP" in html and "growth; see paediatric-alp" in html
    assert "poor prognosis" in html  # the evidence note
    assert "2026-11-29" in html


def test_an_emptied_suppressions_box_saves_no_suppressions(editor: User) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    rule = Rule.objects.get(rule_set=draft, code="check-ctx")
    form = RuleForm(_rule_form_data(rule, suppressions=""), instance=rule)
    assert form.is_valid(), form.errors
    form.save()
    rule.refresh_from_db()
    assert rule.suppressions == []
