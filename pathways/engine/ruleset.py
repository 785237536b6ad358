"""The rule set: recommendations, parameters, follow-ups and reference tables, as plain data.

The shipped catalogue (pathways/catalogue/catalogue.toml) and the Django side's published rule
sets both become these frozen dataclasses; the engine reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """A full case document and whether the owning rule must fire on it."""

    name: str
    case: dict[str, Any]
    fires: bool


@dataclass(frozen=True)
class Suppression:
    """A context that stands a rule down (spec §4): when the rule's condition holds and this
    condition holds too, the rule is not recommended but listed in `suppressed` with `reason`."""

    condition: str  # CEL
    reason: str


@dataclass(frozen=True)
class Rule:
    code: str
    pathway: str  # "bone", "myeloma" or "both"
    priority: str
    title: str
    rationale: str  # template: {fact} placeholders, [[ ... ]] dropped when a placeholder is null
    condition: str  # CEL
    citations: tuple[str, ...]
    enabled: bool = True
    escalate_when: str | None = None  # CEL
    escalate_to: str | None = None
    examples: tuple[Example, ...] = ()
    suppressions: tuple[Suppression, ...] = ()
    # Where the rule departs from a seed: what the seed says and why the rule differs (§8).
    evidence_note: str | None = None
    reviewed_on: str | None = None  # ISO date of the last clinical review


@dataclass(frozen=True)
class Parameter:
    name: str
    value: float
    unit: str
    minimum: float
    maximum: float
    description: str
    rule: str | None = None  # owning rule code; None for a global parameter


@dataclass(frozen=True)
class FollowUpRule:
    code: str
    title: str
    rules: tuple[str, ...]  # created when any of these fired; empty: `when` alone decides
    when: str | None  # CEL, an extra condition
    anchor: str  # name of a date fact
    offset: int | str  # a literal, or the name of a parameter
    offset_unit: str  # "months" or "days"
    # Lab tests whose result marks it done; "therapy:bisphosphonate" (or any agent, or
    # "therapy:<agent>") is done by such a course starting on or after due - 14 days.
    satisfied_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class UlnBand:
    """A reference interval of one test for an age band (reference-intervals.md).

    Revision 2 adds the lower limit, a label shown as the ULN's source ("female ≥ 17 y"), the
    menopause a female adult band applies to (bone ALP), and pregnancy bands by gestational
    week (total ALP by trimester): such a band only ever applies to a result collected during
    the pregnancy, and only raises the usual limit."""

    test: str
    sex: str  # "male", "female" or "any"
    age_from: int
    age_from_unit: str  # "days" or "years"
    age_to: int | None  # exclusive; None = no upper limit
    age_to_unit: str
    uln: float
    unit: str
    source: str = ""
    lln: float | None = None  # lower limit, same unit; None: no lower limit
    label: str = ""  # shown as "built-in: <label>"; made from the band when blank
    menopause: str = "any"  # "any", "pre" or "post" (female adults, bone ALP)
    gestational_week_from: int | None = None  # a pregnancy band: from this week (inclusive)
    gestational_week_to: int | None = None  # exclusive; None = to term
    trimester: str = ""  # "first", "second", "third" for a pregnancy band (its label)

    @property
    def pregnancy(self) -> bool:
        return self.gestational_week_from is not None


# The revision-2 columns of a band, with their defaults (the Django model stores the same names).
ULN_BAND_R2_FIELDS = (
    "lln",
    "label",
    "menopause",
    "gestational_week_from",
    "gestational_week_to",
    "trimester",
)


@dataclass(frozen=True)
class DoseBand:
    """A zoledronic acid dose for a CrCl band; see select_dose_band for how bounds are read."""

    crcl_from: float | None
    crcl_to: float | None
    dose_mg: float | None  # None: not recommended
    source: str = ""


CITATION_KINDS = ("seed", "guideline", "label", "study", "reference", "local")


@dataclass(frozen=True)
class Citation:
    key: str
    text: str
    url: str = ""
    kind: str = "seed"  # one of CITATION_KINDS (spec §8)
    grade: str = ""  # the source's own grade of the recommendation, where it gives one


@dataclass(frozen=True)
class RuleSet:
    version: str
    rules: tuple[Rule, ...]
    parameters: tuple[Parameter, ...]
    follow_ups: tuple[FollowUpRule, ...]
    uln_bands: tuple[UlnBand, ...]
    za_dose_bands: tuple[DoseBand, ...]
    citations: tuple[Citation, ...] = field(default=())

    def parameter_values(self) -> dict[str, float]:
        return {parameter.name: float(parameter.value) for parameter in self.parameters}

    def rule(self, code: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.code == code), None)
