"""Rule tuning in the admin: a draft's save is refused, on the field at fault, with the words the
publish gate would use later."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from pathways import publishing
from pathways.models import DoseBand, FollowUpRule, Parameter, Rule, RuleSet, UlnBand
from tests.factories import form_as_shown

pytestmark = pytest.mark.django_db


@pytest.fixture
def editor_client(client: Client, editor: User) -> Client:
    """The admin as a rule editor (who drafts changes) sees it."""
    client.force_login(editor)
    return client


@pytest.fixture
def draft(editor: User) -> RuleSet:
    return publishing.ruleset_start_draft(user=editor)


def _shown_with(client: Client, url: str, **changes: str) -> dict[str, Any]:
    """An admin change form as shown, with some fields changed as an editor would type them."""
    return {**form_as_shown(client, url), **changes}


def _errors(response: Any) -> dict[str, list[str]]:
    """The admin form's errors by field, as shown ("__all__" for the form's own)."""
    assert response.status_code == 200, "saved (the admin redirects after a save)"
    errors = response.context["adminform"].form.errors
    return {field: [html.unescape(str(e)) for e in messages] for field, messages in errors.items()}


def test_an_alp_reference_interval_with_lln_above_uln_is_refused_on_the_lln_field(
    editor_client: Client, draft: RuleSet
) -> None:
    """The band form only checked that the set was a draft: a lower limit above the upper one
    was saved, and refused first by the publish gate. Found by an audit."""
    band = UlnBand.objects.filter(rule_set=draft, test="alp").order_by("pk").first()
    assert band is not None
    url = f"/admin/pathways/ulnband/{band.pk}/change/"
    response = editor_client.post(url, _shown_with(editor_client, url, lln=str(band.uln + 50)))
    assert _errors(response) == {"lln": ["lln must be from 0 to below uln"]}
    band.refresh_from_db()
    assert band.lln is None or band.lln < band.uln
    assert editor_client.post(url, form_as_shown(editor_client, url)).status_code == 302


def test_a_zoledronic_acid_dose_band_with_crcl_from_above_crcl_to_is_refused_on_the_field(
    editor_client: Client, draft: RuleSet
) -> None:
    """A dose band whose CrCl runs backwards was saved, and refused first by the publish gate.
    Found by an audit."""
    band = DoseBand.objects.filter(
        rule_set=draft, crcl_from__isnull=False, crcl_to__isnull=False
    ).first()
    assert band is not None and band.crcl_to is not None
    before = band.crcl_from
    url = f"/admin/pathways/doseband/{band.pk}/change/"
    changed = _shown_with(editor_client, url, crcl_from=str(band.crcl_to + 10))
    assert _errors(editor_client.post(url, changed)) == {
        "crcl_from": ["crcl_from is above crcl_to"]
    }
    band.refresh_from_db()
    assert band.crcl_from == before
    assert editor_client.post(url, form_as_shown(editor_client, url)).status_code == 302


def test_a_new_parameter_name_that_is_not_snake_case_is_refused_on_the_name_field(
    editor_client: Client, draft: RuleSet
) -> None:
    """The gate's "name must be lower_snake_case" was shown on the value field, which held
    nothing wrong. Found by an audit."""
    data = {
        "rule_set": str(draft.pk),
        "name": "NewThreshold",
        "value": "5",
        "unit": "",
        "minimum": "0",
        "maximum": "10",
        "rule_code": "",
        "description": "",
    }
    response = editor_client.post("/admin/pathways/parameter/add/", data)
    assert _errors(response) == {"name": ["name must be lower_snake_case"]}
    assert not Parameter.objects.filter(rule_set=draft, name="NewThreshold").exists()
    data["name"] = "new_threshold"
    assert editor_client.post("/admin/pathways/parameter/add/", data).status_code == 302


@pytest.mark.parametrize(
    ("rationale", "said"),
    [
        ("ALP {alp_lates} is above {params.extreme_alp}", 'unknown fact "{alp_lates}"'),
        (
            "ALP {alp_latest} is above {params.extreme_alpp}",
            'unknown parameter "{params.extreme_alpp}"',
        ),
        ("ALP {alp_latest} [[(GGT {ggt_latest})", "unbalanced [[ ]]"),
    ],
)
def test_a_rule_rationale_the_publish_gate_refuses_is_refused_on_the_rationale_field(
    editor_client: Client, draft: RuleSet, rationale: str, said: str
) -> None:
    """A rationale naming an unknown fact (a typo) or with an unclosed [[ was saved; the
    publish gate alone refused it later ("rationale: unknown fact"). Found by an audit."""
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    before = rule.rationale
    url = f"/admin/pathways/rule/{rule.pk}/change/"
    response = editor_client.post(url, _shown_with(editor_client, url, rationale=rationale))
    assert _errors(response) == {"rationale": [said]}
    rule.refresh_from_db()
    assert rule.rationale == before


def _follow_up_copy(client: Client, draft: RuleSet, **changes: str) -> dict[str, Any]:
    """A new follow-up as the add page receives it: a copy of one that creating rules start."""
    follow_up = FollowUpRule.objects.filter(rule_set=draft).exclude(rules=[]).first()
    assert follow_up is not None
    url = f"/admin/pathways/followuprule/{follow_up.pk}/change/"
    return {**form_as_shown(client, url), "rule_set": str(draft.pk), **changes}


def test_a_follow_up_code_that_is_not_kebab_case_is_refused_on_the_code_field(
    editor_client: Client, draft: RuleSet
) -> None:
    """A follow-up code the publish gate refuses ("code must be kebab-case") was saved.
    Found by an audit."""
    add = "/admin/pathways/followuprule/add/"
    response = editor_client.post(add, _follow_up_copy(editor_client, draft, code="Repeat_ALP"))
    assert _errors(response) == {"code": ["code must be kebab-case"]}
    assert not FollowUpRule.objects.filter(rule_set=draft, code="Repeat_ALP").exists()
    copy = _follow_up_copy(editor_client, draft, code="repeat-alp-copy")
    assert editor_client.post(add, copy).status_code == 302


def test_a_follow_up_with_neither_creating_rules_nor_a_when_is_refused_on_the_rules_field(
    editor_client: Client, draft: RuleSet
) -> None:
    """A follow-up that nothing could ever create was saved; the publish gate alone refused it
    later. Found by an audit."""
    add = "/admin/pathways/followuprule/add/"
    orphan = _follow_up_copy(
        editor_client, draft, code="repeat-alp-orphan", rules=json.dumps([]), when=""
    )
    response = editor_client.post(add, orphan)
    assert _errors(response) == {"rules": ["needs creating rules or a `when` condition"]}
    assert not FollowUpRule.objects.filter(rule_set=draft, code="repeat-alp-orphan").exists()
    assert editor_client.post(add, {**orphan, "when": "alp_elevated"}).status_code == 302
