"""The shipped catalogue: valid, every example passing, and faithful to the spec tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pathways.engine import (
    CATALOGUE_PATH,
    CATALOGUE_R1_PATH,
    ExampleOutcome,
    load_catalogue,
    run_examples,
    validate_rule_set,
)
from pathways.engine.vocabulary import RETIRED_CODES
from tests.engine.clinical_cases import catalogue
from tests.spec import spec_required

# The clinical contract, revision 2 (issue 11). The catalogue of revision 1 stays, frozen, in
# catalogue_r1.toml; pathways-r1.md is no longer read.
SPEC = Path(__file__).parents[3] / "shared/spec/pathways.md"
PRIORITY_WORDS = ("urgent", "high", "routine", "info")


def _spec_text() -> str:
    if not SPEC.exists():
        if spec_required():
            pytest.fail(f"spec not found at {SPEC} (CI=true: the spec-reading tests must run)")
        pytest.skip(f"spec not found at {SPEC}")
    return SPEC.read_text(encoding="utf-8")


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _priority(code_cell: str) -> tuple[str, str | None]:
    """(base priority, escalated priority or None) from "`code` (high when …, else routine)"."""
    match = re.search(r"\((.*)\)", code_cell)
    if not match:
        return "routine", None
    parts = [part.strip() for part in match.group(1).split(";")]
    conditional = re.match(r"(\w+) when ", parts[0])
    if conditional and conditional.group(1) in PRIORITY_WORDS:
        otherwise = re.search(r", else (\w+)$", parts[0])
        return (otherwise.group(1) if otherwise else "routine"), conditional.group(1)
    if parts[0] in PRIORITY_WORDS:
        escalated = next(
            (p.split()[0] for p in parts[1:] if re.match(r"(urgent|high|routine|info) when", p)),
            None,
        )
        return parts[0], escalated
    return "routine", None


class SpecRow:
    def __init__(self, code_cell: str, pathway: str, says: str, stood_down: str, source: str):
        self.code = re.match(r"`([a-z0-9-]+)`", code_cell).group(1)  # type: ignore[union-attr]
        self.priority, self.escalated = _priority(code_cell)
        self.pathway = "both" if "both pathways" in code_cell else pathway
        self.says = says
        self.reasons = set(re.findall(r'\("([^"]+)"\)', stood_down))
        self.source = source


def _spec_rule_rows() -> dict[str, SpecRow]:
    r"""code -> its row, for every `| \`code\` |` row of the five tables of §4."""
    text = _spec_text()
    tables = (
        ("4.1", "### 4.1", "### 4.2", None),
        ("4.2", "### 4.2", "### 4.3", "bone"),
        ("4.3", "### 4.3", "### 4.4", "both"),
        ("4.4", "### 4.4", "### 4.5", "myeloma"),
        ("4.5", "### 4.5", "## 5.", "both"),
    )
    rows = {}
    for _, start, end, pathway in tables:
        for line in _section(text, start, end).splitlines():
            if not line.startswith("| `"):
                continue
            cells = _cells(line)
            if pathway is None:  # 4.1 has its own pathway column
                code, row_pathway, _, says, stood_down, source = cells
            else:
                code, _, says, stood_down, source = cells
                row_pathway = pathway
            row = SpecRow(code, row_pathway, says, stood_down, source)
            rows[row.code] = row
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
    assert len(spec_codes) == 68
    assert {rule.code for rule in catalogue().rules} == spec_codes


def _retired() -> tuple[set[str], set[str]]:
    body = _section(_spec_text(), "## 0.", "## 1.")
    retired, replacements = set(), set()
    for line in body.splitlines():
        if line.startswith("| `"):
            old, new = _cells(line)[:2]
            retired |= set(re.findall(r"`([a-z0-9-]+)`", old))
            replacements |= set(re.findall(r"`([a-z0-9-]+)`", new))
    return retired, replacements


def test_the_nine_retired_codes_are_gone_and_their_replacements_are_there() -> None:
    retired, replacements = _retired()
    assert len(retired) == 9
    codes = {rule.code for rule in catalogue().rules}
    assert not retired & codes
    assert replacements <= codes
    # They stay readable in revision 1, which migration 0002 installs and old results name.
    assert retired <= {rule.code for rule in load_catalogue(CATALOGUE_R1_PATH).rules}
    # The engine's own table of them (vocabulary.RETIRED_CODES) is the spec's.
    assert set(RETIRED_CODES) == retired
    assert {code for new in RETIRED_CODES.values() for code in new} == replacements


def test_rule_pathways_follow_the_spec_tables() -> None:
    for code, row in _spec_rule_rows().items():
        rule = catalogue().rule(code)
        assert rule is not None
        # osteomalacia-pattern: the table is "both" and the condition itself asks pathway bone.
        assert rule.pathway == row.pathway, code


def test_rule_priorities_and_conditional_priorities_follow_the_spec() -> None:
    for code, row in _spec_rule_rows().items():
        rule = catalogue().rule(code)
        assert rule is not None
        assert (rule.priority, rule.escalate_to) == (row.priority, row.escalated), code
        assert (rule.escalate_when is None) == (row.escalated is None), code


def test_stood_down_reasons_are_the_spec_reasons() -> None:
    for code, row in _spec_rule_rows().items():
        rule = catalogue().rule(code)
        assert rule is not None
        assert {s.reason for s in rule.suppressions} == row.reasons, code


def test_evidence_notes_exactly_where_the_spec_gives_one() -> None:
    for code, row in _spec_rule_rows().items():
        rule = catalogue().rule(code)
        assert rule is not None
        assert (rule.evidence_note is not None) == ("Evidence note:" in row.source), code


def test_every_rule_records_its_clinical_review() -> None:
    for rule in catalogue().rules:
        assert rule.reviewed_on == "2026-11-29", rule.code


def test_every_follow_up_code_of_the_spec_is_in_the_catalogue() -> None:
    body = _section(_spec_text(), "## 5.", "## 6.")
    spec_codes = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            spec_codes |= set(re.findall(r"`([a-z0-9-]+)`", line.split("|")[1]))
    assert len(spec_codes) == 13
    assert spec_codes == {follow_up.code for follow_up in catalogue().follow_ups}


def test_follow_ups_are_created_by_the_spec_rules() -> None:
    body = _section(_spec_text(), "## 5.", "## 6.")
    created = {}
    for line in body.splitlines():
        if line.startswith("| `"):
            cells = _cells(line)
            for code in re.findall(r"`([a-z0-9-]+)`", cells[0]):
                created[code] = set(re.findall(r"`([a-z0-9-]+)`", cells[1]))
    rule_codes = {rule.code for rule in catalogue().rules}
    for follow_up in catalogue().follow_ups:
        assert set(follow_up.rules) == created[follow_up.code] & rule_codes, follow_up.code


def test_every_bold_default_of_the_spec_is_a_parameter() -> None:
    values = {parameter.name: parameter.value for parameter in catalogue().parameters}
    assert values == {
        "extreme_alp": 1000,
        "renal_impairment_crcl": 60,
        "renal_deterioration_pct": 10,
        "paget_retreat_months": 6,
        "paget_retreat_rise_pct": 25,
        "persistent_elevation_months": 6,
        "za_min_crcl": 30,
        "mm_alp_rise_day42_pct": 25,
        "mm_alp_history_days": 90,
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
        "recent_lab_days": 90,
        "thi_alp_u_l": 1000,
        "paget_min_crcl": 35,
        "alp_confirm_days": 42,
        "thi_repeat_months": 4,
        "denosumab_follow_on_months": 6,
        "denosumab_oncology_follow_on_days": 28,
    }
    for parameter in catalogue().parameters:
        assert parameter.unit or parameter.name == "rcv_z"
        assert parameter.description
        assert parameter.minimum <= parameter.value <= parameter.maximum


def _spec_sources() -> dict[str, str]:
    """key -> kind from the table of §8 (the seed row names its keys with "…")."""
    kinds = {}
    for line in _section(_spec_text(), "## 8.", "Every rule keeps").splitlines():
        if line.startswith("| `"):
            cells = _cells(line)
            for key in re.findall(r"`([A-Za-z0-9-]+)`", cells[0]):
                kinds[key] = cells[1]
    return kinds


def test_citations_carry_the_spec_keys_and_kinds() -> None:
    spec = _spec_sources()
    assert spec["S0-1"] == "seed" and spec["LOCAL"] == "local"
    cited = {citation.key: citation for citation in catalogue().citations}
    for key, kind in spec.items():
        if key.startswith("S"):
            continue  # the seed row lists a range; every S… key is checked below
        assert key in cited, key
        assert cited[key].kind == kind, key
    for key, citation in cited.items():
        assert citation.text, key
        if re.fullmatch(r"S[03](-.+)?", key):
            assert citation.kind == "seed", key
        else:
            assert key in spec, f"{key} is not a source of §8"
    assert cited["S0-7"].text.startswith("Seed 000") and "reference 7" in cited["S0-7"].text


# How the §4 source column names a source, when not by its §8 key.
_SOURCE_NAMES = {
    "abbassi-ghanavati 2009": "ABBASSI-2009",
    "endocrine society 2014": "ES-2014",
    "acg 2016 (pregnancy)": "ACG-2016-PREG",
    "imwg 2019 imaging": "IMWG-2019-IMAGING",
    "eubivas": "EUBIVAS",
    "caliper": "CALIPER",
    "zometa label": "ZOMETA-PI",
    "reclast label": "RECLAST-PI",
    "xgeva label": "XGEVA-PI",
    "fosamax label": "FOSAMAX-PI",
    "zometa, reclast, xgeva, prolia labels": "ZOMETA-PI RECLAST-PI XGEVA-PI PROLIA-PI",
}


def _source_keys(source: str) -> set[str]:
    """The citation keys a §4 source cell names ("S0 1,3" -> S0-1, S0-3; "Shipman 2013" ->
    SHIPMAN-2013; "the 25 % is a local choice" -> LOCAL)."""
    source = source.split("Evidence note:")[0]
    keys = set(re.findall(r"\b[A-Z][A-Z0-9]+(?:-[A-Z0-9]+)+\b", source))
    keys |= {"LOCAL"} if "local choice" in source or source.strip() == "LOCAL" else set()
    parts = []
    for part in source.split(";"):
        inner = re.findall(r"\(([^)]*)\)", part)
        parts.append(re.sub(r"\s*\(THI[^)]*\)|\s*\(the 2024[^)]*\)", "", part).strip(" ."))
        parts += [i for i in inner if re.fullmatch(r"[A-Z][a-z]+ \d{4}", i)]
    for part in parts:
        part = re.sub(r"\s*\([A-Z][a-z]+ \d{4}\)", "", part).strip(" .")
        seed = re.fullmatch(r"(S0|S3)(?: caveat (\d+)| ([\d,]+))?", part)
        if seed:
            name, caveat, numbers = seed.groups()
            if caveat:
                keys.add(f"{name}-caveat-{caveat}")
            elif numbers:
                keys |= {f"{name}-{n}" for n in numbers.split(",")}
            else:
                keys.add(name)
        elif part.lower() in _SOURCE_NAMES:
            keys |= set(_SOURCE_NAMES[part.lower()].split())
        elif re.fullmatch(r"[A-Za-z]+ \d{4}", part):
            name, year = part.split()
            keys.add(f"{name.upper()}-{year}")
    return keys


def test_rule_citations_are_the_spec_source_column() -> None:
    for code, row in _spec_rule_rows().items():
        rule = catalogue().rule(code)
        assert rule is not None
        assert set(rule.citations) == _source_keys(row.source), code


def test_every_rule_citation_resolves_to_a_citation_entry() -> None:
    rule_set = catalogue()
    texts = {citation.key: citation.text for citation in rule_set.citations}
    for rule in rule_set.rules:
        assert rule.citations, rule.code
        for key in rule.citations:
            assert texts.get(key), f"{rule.code}: {key}"


def test_the_revision_1_catalogue_still_validates_and_its_examples_pass() -> None:
    revision_1 = load_catalogue(CATALOGUE_R1_PATH, version="2026-11-22.1")
    assert validate_rule_set(revision_1) == []
    failing = [o for o in run_examples(revision_1) if not o.passed]
    assert failing == []


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


def test_a_missing_spec_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tests.engine.test_catalogue as this

    monkeypatch.setattr(this, "SPEC", tmp_path / "absent" / "pathways.md")
    monkeypatch.delenv("ALPCARE_REQUIRE_SPEC", raising=False)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="spec not found"):
        this._spec_text()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        this._spec_text()
    monkeypatch.setenv("ALPCARE_REQUIRE_SPEC", "1")
    with pytest.raises(pytest.fail.Exception):
        this._spec_text()
