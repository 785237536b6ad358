"""The case-entry form's POST for a case document, as a browser sends it.

The inverse of ``forms.case_draft``, field by field as the case declaration lists them: the
bench and the tests build the requests a clinician's browser makes with it (tools do not import
the tests).
"""

from __future__ import annotations

from typing import Any

from pathways.engine.declaration import CLINICAL, MYELOMA, PATIENT, THERAPY, Group


def _group_data(group: Group, part: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    data: dict[str, Any] = {}
    for item in group.fields:
        name = prefix + group.prefix + item.name
        value = part.get(item.name, item.default)
        if item.kind == "bool" and item.default is None:  # yes / no / not given
            data[name] = {True: "true", False: "false"}.get(value, "")
        elif item.kind == "bool":
            if value:
                data[name] = "on"  # an unticked box is not posted
        elif item.kind == "choices":
            data[name] = list(value or [])
        else:
            data[name] = "" if value is None else str(value)
    return data


def form_data(
    document: dict[str, Any], *, mrn: str = "MM-1", name: str = "Ada Myeloma"
) -> dict[str, Any]:
    """The POST data a browser sends for a case document typed into the case-entry form."""
    clinical = document.get("clinical", {})
    labs = document.get("labs", [])
    therapies = clinical.get("therapies", [])
    data: dict[str, Any] = {
        "mrn": mrn,
        "name": name,
        **_group_data(PATIENT, document["patient"]),
        **_group_data(CLINICAL, clinical),
        **_group_data(MYELOMA, clinical.get("myeloma", {})),
        "labs-TOTAL_FORMS": str(len(labs)),
        "labs-INITIAL_FORMS": "0",
        "therapies-TOTAL_FORMS": str(len(therapies)),
        "therapies-INITIAL_FORMS": "0",
    }
    for index, lab in enumerate(labs):
        day, _, at = lab["collected_at"].partition("T")
        data.update(
            {
                f"labs-{index}-test": lab["test"],
                f"labs-{index}-value": str(lab["value"]),
                f"labs-{index}-unit": lab["unit"],
                f"labs-{index}-collected_on": day,
                f"labs-{index}-collected_time": at,
            }
        )
        for limit in ("reference_high", "reference_low"):
            value = lab.get(limit)
            data[f"labs-{index}-{limit}"] = "" if value is None else str(value)
    for index, therapy in enumerate(therapies):
        data.update(_group_data(THERAPY, therapy, prefix=f"therapies-{index}-"))
    return data


def as_browser_json(data: dict[str, Any]) -> dict[str, Any]:
    """The form as the live preview posts it (static/alpcare/case-entry.js): name to value, a
    list of values for a name given more than once, every value a string."""
    posted: dict[str, Any] = {}
    for name, value in data.items():
        values = [str(item) for item in value] if isinstance(value, list) else [str(value)]
        if values:
            posted[name] = values if len(values) > 1 else values[0]
    return posted
