"""The context flags of a result (spec §2), read from the facts of the same names: the context
line above the advice, and what stands rules down."""

from __future__ import annotations

from typing import Any, Final

from .spec import FactSpec as _F

# spec §2: the context flags reported in the result, in this order.
CONTEXT_FLAGS: Final = (
    "pregnant",
    "child",
    "under_5",
    "renal_function_unknown",
    "hypercalcaemia",
    "alp_not_recent",
)

SPECS: Final[tuple[_F, ...]] = (
    _F(
        "context",
        "list<string>",
        "",
        "context flags: pregnant, child, under_5, renal_function_unknown, hypercalcaemia, "
        'alp_not_recent (e.g. "child" in context)',
        ["renal_function_unknown"],
    ),
)


def flag_facts(values: dict[str, Any]) -> dict[str, Any]:
    """`values`: every other fact."""
    return {"context": [flag for flag in CONTEXT_FLAGS if values.get(flag)]}
