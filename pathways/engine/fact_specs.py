"""FACTS: the vocabulary rule editors see — every fact a condition or a rationale may name.

Each entry lives beside the function computing it, in its group's module under facts/; a test
keeps each group's entries and its function in step (same names, same types).
"""

from __future__ import annotations

from typing import Final

from .facts import GROUP_SPECS, FactSpec
from .facts.therapies import THERAPY_FIELDS

FACTS: Final[tuple[FactSpec, ...]] = tuple(spec for specs in GROUP_SPECS for spec in specs)
FACT_NAMES: Final = frozenset(spec.name for spec in FACTS)
FACTS_BY_NAME: Final = {spec.name: spec for spec in FACTS}
DATE_FACTS: Final = frozenset(spec.name for spec in FACTS if spec.type == "date")

__all__ = ["DATE_FACTS", "FACTS", "FACTS_BY_NAME", "FACT_NAMES", "THERAPY_FIELDS"]
