"""alpcare's decision engine: pure Python, no Django.

case document → parse_case → Case → assess(case, rule_set) → Result → render_result_json.
Rules are data (CEL conditions over computed facts); the shipped catalogue is
pathways/catalogue/catalogue.toml, and the Django side publishes edited copies as RuleSets.
"""

from .assess import (
    Findings,
    FollowUp,
    Recommendation,
    Result,
    RuleEvaluationError,
    RuleSetInvalid,
    assess,
    clear_cache,
    render_result_json,
    result_to_document,
)
from .case import (
    Case,
    CaseInvalid,
    Clinical,
    FieldError,
    Lab,
    Myeloma,
    PatientInfo,
    Therapy,
    case_json_schema,
    case_to_document,
    parse_case,
    parse_case_json,
)
from .catalogue import CATALOGUE_PATH, CatalogueError, load_catalogue
from .conditions import check_condition
from .fact_specs import FACTS
from .facts import AlpPoint, Facts, FactSpec, TherapyFacts, compute_facts
from .ruleset import Citation, DoseBand, Example, FollowUpRule, Parameter, Rule, RuleSet, UlnBand
from .validate import ExampleOutcome, RuleSetError, run_examples, validate_rule_set
from .vocabulary import (
    AGENTS,
    BONE_SCANS,
    CANCERS,
    DIAGNOSES,
    FOLLOW_UP_STATUSES,
    FRACTURES,
    PATHWAYS,
    PRIORITIES,
    RESPONSES,
    RULE_PATHWAYS,
    SEXES,
    TESTS,
    UNITS,
)

__all__ = [
    "AGENTS",
    "BONE_SCANS",
    "CANCERS",
    "CATALOGUE_PATH",
    "DIAGNOSES",
    "FACTS",
    "FOLLOW_UP_STATUSES",
    "FRACTURES",
    "PATHWAYS",
    "PRIORITIES",
    "RESPONSES",
    "RULE_PATHWAYS",
    "SEXES",
    "TESTS",
    "UNITS",
    "AlpPoint",
    "Case",
    "CaseInvalid",
    "CatalogueError",
    "Citation",
    "Clinical",
    "DoseBand",
    "Example",
    "ExampleOutcome",
    "FactSpec",
    "Facts",
    "FieldError",
    "Findings",
    "FollowUp",
    "FollowUpRule",
    "Lab",
    "Myeloma",
    "Parameter",
    "PatientInfo",
    "Recommendation",
    "Result",
    "Rule",
    "RuleEvaluationError",
    "RuleSet",
    "RuleSetError",
    "RuleSetInvalid",
    "Therapy",
    "TherapyFacts",
    "UlnBand",
    "assess",
    "case_json_schema",
    "case_to_document",
    "check_condition",
    "clear_cache",
    "compute_facts",
    "load_catalogue",
    "parse_case",
    "parse_case_json",
    "render_result_json",
    "result_to_document",
    "run_examples",
    "validate_rule_set",
]
