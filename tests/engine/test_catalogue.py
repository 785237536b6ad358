"""The shipped catalogue: valid, every example passing, and faithful to the spec tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pathways.engine import CATALOGUE_PATH, ExampleOutcome, run_examples, validate_rule_set
from tests.engine.clinical_cases import catalogue

# Revision 1 until revision 2's catalogue lands (issue 11); then pathways.md.
SPEC = Path(__file__).parents[3] / "shared/spec/pathways-r1.md"


def _spec_text() -> str:
    if not SPEC.exists():
        pytest.skip(f"spec not found at {SPEC}")
    return SPEC.read_text(encoding="utf-8")


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


def _spec_rule_rows() -> dict[str, tuple[str, str, str]]:
    """code -> (table, priority, says) for every `| \\`code\\` |` row of §4."""
    text = _spec_text()
    rows = {}
    for table, body in (
        ("bone", _section(text, "### Bone workup", "### Multiple myeloma")),
        ("myeloma", _section(text, "### Multiple myeloma", "## 5.")),
    ):
        for line in body.splitlines():
            match = re.match(r"\| `([a-z0-9-]+)`([^|]*)\|[^|]*\|([^|]*)\|", line)
            if match:
                priority = re.search(r"\((urgent|high|info)\)", match.group(2))
                rows[match.group(1)] = (
                    table,
                    priority.group(1) if priority else "routine",
                    match.group(3).strip(),
                )
    return rows


def _outcome_id(outcome: ExampleOutcome) -> str:
    return f"{outcome.rule}: {outcome.example}"


def test_the_catalogue_file_ships_inside_the_package() -> None:
    assert CATALOGUE_PATH.name == "catalogue.toml"
    assert CATALOGUE_PATH.parent.name == "catalogue"
    assert CATALOGUE_PATH.exists()


def test_the_catalogue_validates_cleanly() -> None:
    assert validate_rule_set(catalogue()) == []


@pytest.mark.parametrize("outcome", run_examples(catalogue()), ids=_outcome_id)
def test_every_catalogue_example_passes(outcome: ExampleOutcome) -> None:
    assert outcome.error is None
    assert outcome.actual == outcome.expected, (
        f"{outcome.rule} should {'' if outcome.expected else 'not '}fire on {outcome.example!r}"
    )
    assert outcome.passed


def test_every_rule_has_a_firing_and_a_non_firing_example() -> None:
    for rule in catalogue().rules:
        assert any(example.fires for example in rule.examples), rule.code
        assert any(not example.fires for example in rule.examples), rule.code


def test_examples_are_full_case_documents_with_a_fixed_as_of() -> None:
    for rule in catalogue().rules:
        for example in rule.examples:
            assert set(example.case) == {"as_of", "patient", "labs", "clinical"}
            assert example.case["as_of"]
            assert "myeloma" in example.case["clinical"]


def test_every_spec_rule_code_is_in_the_catalogue_and_nothing_else() -> None:
    spec_codes = set(_spec_rule_rows())
    assert len(spec_codes) == 50
    assert {rule.code for rule in catalogue().rules} == spec_codes


def test_rule_pathways_follow_the_spec_tables_and_the_both_pathways_list() -> None:
    text = _spec_text()
    sentence = text[text.index("which apply in both pathways:") : text.index("(A bone scan")]
    both = set(re.findall(r"`([a-z0-9-]+)`", sentence))
    assert len(both) == 9
    for code, (table, _, _) in _spec_rule_rows().items():
        rule = catalogue().rule(code)
        assert rule is not None
        assert rule.pathway == ("both" if code in both else table), code


def test_rule_priorities_follow_the_spec() -> None:
    for code, (_, priority, _) in _spec_rule_rows().items():
        rule = catalogue().rule(code)
        assert rule is not None and rule.priority == priority, code


def test_rule_titles_are_the_spec_says_text() -> None:
    for code, (_, _, says) in _spec_rule_rows().items():
        rule = catalogue().rule(code)
        assert rule is not None
        says = says.replace("`[ext]`", "").strip()
        # A few rows add a note after "; " (priority, the stated dose): the title stops there.
        assert says == rule.title or says.startswith(rule.title + ";"), code


def test_every_follow_up_code_of_the_spec_is_in_the_catalogue() -> None:
    body = _section(_spec_text(), "## 5.", "## 6.")
    spec_codes = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            spec_codes |= set(re.findall(r"`([a-z0-9-]+)`", line.split("|")[1]))
    assert spec_codes == {follow_up.code for follow_up in catalogue().follow_ups}


def test_every_bold_default_of_the_spec_is_a_parameter() -> None:
    values = {parameter.name: parameter.value for parameter in catalogue().parameters}
    assert values == {
        "extreme_alp": 1000,
        "renal_impairment_crcl": 60,
        "renal_deterioration_pct": 10,
        "sampling_spread_hours": 4,
        "paget_retreat_months": 6,
        "paget_retreat_rise_pct": 25,
        "persistent_elevation_months": 6,
        "za_min_crcl": 30,
        "mm_alp_rise_day42_pct": 25,
        "alp_recheck_months": 3,
        "alp_recheck_normalised_months": 6,
        "rcv_cvi_pct": 5.3,
        "rcv_cva_pct": 3.0,
        "rcv_z": 1.96,
        "bone_alp_mass_uln": 20,
        "persistence_days": 28,
        "urgent_hypercalcaemia_mg_dl": 12.0,
        "vitamin_d_deficient_ng_ml": 20,
        "pth_not_suppressed_pg_ml": 20,
        "menopause_age_years": 51,
        "creatinine_rise_baseline_mg_dl": 1.4,
        "creatinine_rise_low_mg_dl": 0.5,
        "creatinine_rise_high_mg_dl": 1.0,
        "ckd_mbd_crcl": 45,
        "ctx_late_hour": 10,
        "ctx_time_spread_hours": 4,
    }
    for parameter in catalogue().parameters:
        assert parameter.unit or parameter.name == "rcv_z"
        assert parameter.description
        assert parameter.minimum <= parameter.value <= parameter.maximum


def test_every_rule_citation_resolves_to_a_citation_entry() -> None:
    rule_set = catalogue()
    texts = {citation.key: citation.text for citation in rule_set.citations}
    for rule in rule_set.rules:
        assert rule.citations, rule.code
        for key in rule.citations:
            assert texts.get(key), f"{rule.code}: {key}"
    assert texts["S0-7"].startswith("Seed 000")
    assert "reference 7" in texts["S0-7"]
    assert texts["ext-singer-2014"].startswith("[ext] Singer")


def _seed_keys(source: str) -> set[str]:
    """ "S0 1,3" -> {S0-1, S0-3}; "S3 caveat 3" -> {S3-caveat-3}; "S0 1,6; S3" adds S3."""
    keys = set()
    for part in source.split(";"):
        match = re.fullmatch(r"(S0|S3)(?: caveat (\d+)| ([\d,]+))?", part.strip())
        if match is None:
            continue  # an [ext] source, cited by its own key
        seed, caveat, numbers = match.groups()
        if caveat:
            keys.add(f"{seed}-caveat-{caveat}")
        elif numbers:
            keys |= {f"{seed}-{number}" for number in numbers.split(",")}
        else:
            keys.add(seed)
    return keys


def test_seed_citations_match_the_spec_source_column() -> None:
    text = _spec_text()
    for line in _section(text, "## 4.", "## 5.").splitlines():
        match = re.match(r"\| `([a-z0-9-]+)`", line)
        if not match:
            continue
        source = line.rstrip().rstrip("|").rsplit("|", 1)[1]
        rule = catalogue().rule(match.group(1))
        assert rule is not None
        cited_seeds = {key for key in rule.citations if key.startswith("S")}
        assert cited_seeds == _seed_keys(source), rule.code
        if "ext" in source or not _seed_keys(source):
            assert any(key.startswith("ext-") for key in rule.citations), rule.code


def test_uln_and_dose_tables_match_reference_intervals() -> None:
    rule_set = catalogue()
    ulns = {(band.sex, band.age_from, band.age_from_unit): band.uln for band in rule_set.uln_bands}
    assert ulns[("any", 0, "days")] == 248
    assert ulns[("any", 15, "days")] == 469
    assert ulns[("male", 19, "years")] == 129
    assert ulns[("female", 17, "years")] == 104
    doses = [(band.crcl_from, band.crcl_to, band.dose_mg) for band in rule_set.za_dose_bands]
    assert doses == [
        (None, 30.0, None),
        (30.0, 39.0, 3.0),
        (40.0, 49.0, 3.3),
        (50.0, 60.0, 3.5),
        (60.0, None, 4.0),
    ]
