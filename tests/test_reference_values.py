"""Reference values are rule-set data (reference-intervals.md): the shipped bands reach the
database with their revision-2 columns, and an editor tunes them in the admin like any part."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.forms.models import model_to_dict
from django.test import Client

from pathways import engine, publishing
from pathways.models import RuleSet, UlnBand
from pathways.rules import load_rule_set
from tests.factories import run_assess_command

pytestmark = pytest.mark.django_db


def test_the_rule_set_in_force_carries_every_shipped_band() -> None:
    in_force = load_rule_set(RuleSet.objects.get(is_current=True))
    shipped = engine.load_catalogue().uln_bands
    assert in_force.uln_bands == shipped
    pregnancy = [band for band in in_force.uln_bands if band.pregnancy]
    assert [(b.gestational_week_from, b.gestational_week_to, b.uln) for b in pregnancy] == [
        (1, 14, 88),
        (14, 28, 126),
        (28, None, 229),
    ]
    adult_women = [
        (band.menopause, band.uln)
        for band in in_force.uln_bands
        if band.test == "bone_alp" and band.sex == "female" and band.age_from == 18
    ]
    assert adult_women == [("pre", 14), ("post", 22)]
    calcium = [(b.age_from, b.lln, b.uln) for b in in_force.uln_bands if b.test == "calcium"]
    assert calcium == [(18, 8.6, 10.0), (60, 8.8, 10.2)]


def _post(band: UlnBand, **changes: Any) -> dict[str, Any]:
    data = {
        key: ("" if value is None else value)
        for key, value in model_to_dict(band).items()
        if key not in ("id", "rule_set")
    }
    data.update(changes)
    return data


def test_an_editor_tunes_a_band_in_a_draft_and_the_engine_reads_it(editor: User) -> None:
    draft = publishing.ruleset_start_draft(user=editor)
    client = Client()
    client.force_login(editor)
    band = UlnBand.objects.get(
        rule_set=draft, test="bone_alp", sex="female", age_from=18, menopause="post"
    )
    url = f"/admin/pathways/ulnband/{band.pk}/change/"
    page = client.get(url).content.decode()
    for column in ("lln", "label", "menopause", "gestational_week_from", "trimester"):
        assert f'name="{column}"' in page
    response = client.post(url, _post(band, uln="25", label="female ≥ 18 y, post (site)"))
    assert response.status_code == 302, response.content.decode()[:2000]
    tuned = load_rule_set(RuleSet.objects.get(pk=draft.pk))
    case = engine.parse_case(
        {
            "as_of": "2026-11-22",
            "patient": {"birth_date": "1950-01-01", "sex": "female"},
            "labs": [
                {"test": "bone_alp", "value": 24, "unit": "ug/L", "collected_at": "2026-11-01"}
            ],
        }
    )
    values = engine.compute_facts(case, tuned).values
    assert (values["bone_alp"], values["bone_alp_uln"]) == ("normal", 25)
    assert values["bone_alp_uln_source"] == "built-in: female ≥ 18 y, post (site)"
    in_force = engine.compute_facts(case, load_rule_set(RuleSet.objects.get(is_current=True)))
    assert in_force.values["bone_alp"] == "elevated"  # the published set is untouched


def test_the_publish_gate_refuses_a_band_whose_lln_is_above_its_uln(editor: User) -> None:
    """The admin refuses such a band on its field (test_tuning_admin_fields); one stored by
    other means (a data import, a migration) is still refused by the gate."""
    draft = publishing.ruleset_start_draft(user=editor)
    band = UlnBand.objects.get(rule_set=draft, test="calcium", age_from=60)
    band.lln = 10.5
    band.save()
    errors = engine.validate_rule_set(load_rule_set(RuleSet.objects.get(pk=draft.pk)))
    assert [str(error) for error in errors if "lln" in str(error)] == [
        f"uln band {list(UlnBand.objects.filter(rule_set=draft).order_by('pk')).index(band) + 1}: "
        "lln must be from 0 to below uln"
    ]


def test_the_command_shows_the_working_of_revision_2s_facts(tmp_path: Path) -> None:
    """Through `manage.py assess` with the rule set in force: the trimester ULN and its source,
    the corrected calcium, the CrCl method and the context."""
    document = {
        "as_of": "2026-11-22",
        "patient": {
            "birth_date": "1994-02-01",
            "sex": "female",
            "pregnant": True,
            "gestational_weeks": 30,
            "weight_kg": 70,
        },
        "labs": [
            {"test": "alp", "value": 190, "unit": "U/L", "collected_at": "2026-11-20T08:15"},
            {"test": "alp", "value": 190, "unit": "U/L", "collected_at": "2026-11-20T08:15:00"},
            {"test": "calcium", "value": 2.5, "unit": "mmol/L", "collected_at": "2026-11-20"},
            {"test": "albumin", "value": 30, "unit": "g/L", "collected_at": "2026-11-18"},
            {"test": "creatinine", "value": 62, "unit": "umol/L", "collected_at": "2026-11-20"},
        ],
    }
    code, out, err = run_assess_command(document, tmp_path)
    assert code == 0, err
    result = json.loads(out)
    findings = result["findings"]
    assert (findings["alp_uln"], findings["alp_uln_source"]) == (
        229.0,
        "built-in: pregnancy, third trimester",
    )
    assert findings["alp_elevated"] is False
    assert findings["calcium_corrected"] == pytest.approx(10.02 + 0.8, abs=0.01)
    assert findings["crcl_method"] == "cockcroft-gault"
    assert "pregnant" in result["context"] and "hypercalcaemia" in result["context"]


def test_the_command_refuses_conflicting_duplicates_naming_both(tmp_path: Path) -> None:
    document = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "1960-01-01", "sex": "male"},
        "labs": [
            {"test": "pth", "value": 5.0, "unit": "pmol/L", "collected_at": "2026-11-20"},
            {"test": "pth", "value": 60, "unit": "pg/mL", "collected_at": "2026-11-20"},
        ],
    }
    code, out, err = run_assess_command(document, tmp_path)
    assert (code, out) == (2, "")
    assert "labs[1]: conflicts with labs[0]" in err
