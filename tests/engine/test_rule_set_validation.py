"""validate_rule_set() and check_condition(): what blocks an edited rule set from publishing."""

from __future__ import annotations

from dataclasses import replace

from pathways.engine import (
    FollowUpRule,
    Rule,
    RuleSet,
    RuleSetError,
    UlnBand,
    check_condition,
    load_catalogue,
    validate_rule_set,
)
from tests.engine.clinical_cases import catalogue

PARAMETERS = ("extreme_alp", "renal_impairment_crcl")
CODES = ("bone-scan", "extreme-alp")


def rule(code: str = "new-rule", **changes: object) -> Rule:
    fields: dict[str, object] = {
        "code": code,
        "pathway": "bone",
        "priority": "routine",
        "title": "A title",
        "rationale": "ALP {alp_latest}",
        "condition": "alp_elevated",
        "citations": ("S0-1",),
    }
    fields.update(changes)
    return Rule(**fields)  # type: ignore[arg-type]


def validate_with(*rules: Rule, **changes: object) -> list[RuleSetError]:
    rule_set = replace(catalogue(), rules=(*catalogue().rules, *rules), **changes)  # type: ignore[arg-type]
    return validate_rule_set(rule_set)


def messages(errors: list[RuleSetError]) -> list[str]:
    return [str(error) for error in errors]


# --- check_condition ---------------------------------------------------------------------------


def test_a_valid_condition_has_no_error() -> None:
    assert (
        check_condition("alp_latest != null && alp_latest > params.extreme_alp", PARAMETERS, CODES)
        is None
    )
    assert check_condition('"bone-scan" in fired && cancer == "breast"', PARAMETERS, CODES) is None
    assert (
        check_condition(
            "therapies.exists(t, t.months_since_start != null && t.months_since_start >= 6)", (), ()
        )
        is None
    )


def test_a_syntax_error_gives_the_compiler_message() -> None:
    message = check_condition("alp_latest >", PARAMETERS, CODES)
    assert message is not None and "Syntax error" in message


def test_an_unknown_fact_is_named_with_a_suggestion() -> None:
    message = check_condition("alp_lates > 3.0", PARAMETERS, CODES)
    assert message == 'unknown fact "alp_lates" (did you mean "alp_latest"?)'


def test_an_unknown_parameter() -> None:
    message = check_condition(
        "alp_latest != null && alp_latest > params.extreme", PARAMETERS, CODES
    )
    assert message is not None and message.startswith('unknown parameter "params.extreme"')


def test_an_unknown_rule_code_in_fired() -> None:
    message = check_condition('"bone-scans" in fired', PARAMETERS, CODES)
    assert message is not None and message.startswith('unknown rule code "bone-scans" in fired')


def test_fired_may_only_be_used_as_a_membership_test() -> None:
    message = check_condition("size(fired) > 0", PARAMETERS, CODES)
    assert message == '"fired" may only be used as "rule-code" in fired'


def test_an_unknown_key_of_a_therapy() -> None:
    message = check_condition("therapies.exists(t, t.month_since_start > 6)", (), ())
    assert message is not None and 'unknown key "month_since_start" of therapies' in message


def test_an_unknown_function() -> None:
    assert check_condition("max(1, 2) > 1", (), ()) == 'unknown function "max"'


def test_a_type_error_shows_when_probed_with_example_facts() -> None:
    message = check_condition('alp_latest > "high"', (), ())
    assert message is not None and message.startswith("cannot be evaluated")
    message = check_condition("alp_x_uln * 2 > 3.0", (), ())  # int * double does not coerce
    assert message is not None and message.startswith("cannot be evaluated")


def test_a_condition_must_give_a_boolean() -> None:
    assert check_condition("alp_latest", (), ()) == "must give true or false, not 412.0"


def test_strings_are_not_read_as_code() -> None:
    assert check_condition('bone_scan == "params.nope fired unknown_fact"', (), ()) is None


def test_an_empty_condition() -> None:
    assert check_condition("  ", (), ()) == "empty expression"


# --- validate_rule_set ------------------------------------------------------------------------


def test_a_new_rule_with_a_broken_condition_is_reported_where_it_is() -> None:
    errors = validate_with(rule(condition="alp_latest >"))
    assert len(errors) == 1
    assert errors[0].where == "rule new-rule: condition"
    assert "Syntax error" in errors[0].message


def test_parameter_values_outside_their_range() -> None:
    parameters = tuple(
        replace(p, value=5001.0) if p.name == "extreme_alp" else p for p in catalogue().parameters
    )
    assert messages(validate_with(parameters=parameters)) == [
        "parameter extreme_alp: value 5001 is outside [300, 5000]"
    ]


def test_a_missing_engine_parameter() -> None:
    parameters = tuple(p for p in catalogue().parameters if p.name != "rcv_z")
    assert messages(validate_with(parameters=parameters)) == [
        "parameter rcv_z: missing (the engine computes facts with it)"
    ]


def test_cycles_between_rules_are_reported() -> None:
    errors = validate_with(
        rule("first-rule", condition='"second-rule" in fired'),
        rule("second-rule", condition='"first-rule" in fired'),
    )
    assert messages(errors) == [
        "rules: rules depend on each other in a cycle: first-rule, second-rule"
    ]


def test_rule_fields_are_checked() -> None:
    errors = validate_with(
        rule(
            "Bad_Code",
            pathway="skeleton",
            priority="soon",
            citations=("S9-1",),
            rationale="{alp_lates} {params.nope} [[",
            escalate_when="bone_pain",
        )
    )
    assert messages(errors) == [
        "rule Bad_Code: code must be kebab-case (lower-case words joined by '-')",
        'rule Bad_Code: pathway "skeleton" is not one of: bone, myeloma, both',
        'rule Bad_Code: priority "soon" is not one of: urgent, high, routine, info',
        'rule Bad_Code: citations: unknown citation "S9-1"',
        "rule Bad_Code: escalate_when and escalate_to go together",
        'rule Bad_Code: rationale: unknown fact "{alp_lates}"',
        'rule Bad_Code: rationale: unknown parameter "{params.nope}"',
        "rule Bad_Code: rationale: unbalanced [[ ]]",
    ]


def test_duplicate_rule_codes() -> None:
    assert messages(validate_with(rule("extreme-alp"))) == [
        "rule extreme-alp: code used by 2 rules"
    ]


def test_follow_up_checks() -> None:
    follow_up = FollowUpRule(
        code="new-follow-up",
        title="t",
        rules=("no-such-rule",),
        when="alp_latest >",
        anchor="alp_latest",
        offset="no_such_parameter",
        offset_unit="weeks",
        satisfied_by=("tsh",),
    )
    errors = validate_with(follow_ups=(*catalogue().follow_ups, follow_up))
    wheres = [error.where for error in errors]
    assert wheres == [
        "follow-up new-follow-up: rules",
        "follow-up new-follow-up: when",
        "follow-up new-follow-up: anchor",
        "follow-up new-follow-up: offset_unit",
        "follow-up new-follow-up: offset",
        "follow-up new-follow-up: satisfied_by",
    ]


def test_a_gap_in_the_uln_table_is_reported() -> None:
    bands = tuple(
        band for band in catalogue().uln_bands if not (band.sex == "female" and band.age_from == 15)
    )
    assert messages(validate_with(uln_bands=bands)) == [
        "uln bands: no total ALP band for a female aged 15 years"
    ]


def test_uln_band_fields_are_checked() -> None:
    band = UlnBand("alp", "x", 0, "weeks", None, "days", -1, "mmol/L")
    errors = messages(validate_with(uln_bands=(*catalogue().uln_bands, band)))
    where = f"uln band {len(catalogue().uln_bands) + 1}"
    assert errors == [
        f'{where}: sex "x" is not one of: female, male, any',
        f"{where}: age units must be days or years",
        f'{where}: "mmol/L" is not a unit for alp',
        f"{where}: uln must be positive",
    ]


def test_the_shipped_catalogue_loads_under_another_version_label() -> None:
    rule_set = load_catalogue(version="2026-11-22.3")
    assert isinstance(rule_set, RuleSet) and rule_set.version == "2026-11-22.3"
    assert validate_rule_set(rule_set) == []
