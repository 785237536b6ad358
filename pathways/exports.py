"""Exports: the worklist as CSV (the page's filters) and a patient's follow-ups as iCalendar.

The calendar names the patient by MRN only: calendar files end up on phones and in shared
calendars, where a name would be patient data out of the record's protection."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any

import icalendar
from django.conf import settings
from django.utils import timezone

from pathways.models import FollowUp, Patient

CSV_CHUNK = 500  # worklist rows read and written at a time: the export is streamed, all of it
# Excel reads a CSV as UTF-8 only after a byte-order mark (else "Müller" shows as "MÃ¼ller");
# Python's "utf-8-sig" and LibreOffice read it too.
CSV_BYTE_ORDER_MARK = "\ufeff"
CSV_COLUMNS = [
    "status",
    "due",
    "what",
    "follow_up_code",
    "more_follow_ups",
    "clinic",  # its name: an MRN is unique only within a clinic, and a user can be in several
    "mrn",
    "name",
    "pathway",
    "alp_latest_u_l",
    "alp_latest_date",
    "alp_x_uln",
    "top_priority",
    "top_recommendation",
    "top_acted_on",  # "yes": every card was acted on (the worklist's "(acted on)")
]


def _cell(value: Any) -> str:
    """A spreadsheet must not run a cell as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _number(snapshot: Any, name: str, digits: int) -> str:
    """As stored, to ``digits`` decimals without trailing zeros: never in exponent form
    (1234567 U/L written as 1.23457e+06 reads back as 1234570)."""
    value = getattr(snapshot, name, None)
    if value is None:
        return ""
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def worklist_csv_lines(
    chunks: Iterable[list[Any]], *, clinic_names: Mapping[int, str]
) -> Iterator[str]:
    """The CSV text of the worklist: the byte-order mark and the header, then one piece per
    chunk of rows. ``clinic_names``: the user's clinics by key, read once for all rows."""
    out = io.StringIO()
    writer = csv.writer(out)

    def written() -> str:
        text = out.getvalue()
        out.seek(0)
        out.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield CSV_BYTE_ORDER_MARK + written()
    for rows in chunks:
        writer.writerows((_cell(value) for value in _csv_values(row, clinic_names)) for row in rows)
        yield written()


def _csv_values(row: Any, clinic_names: Mapping[int, str]) -> tuple[Any, ...]:
    follow_up, snapshot, patient = row.follow_up, row.snapshot, row.patient
    # Missing only for a patient moved to another clinic during the export: read on its own.
    known = patient.clinic_id in clinic_names
    clinic_name = clinic_names[patient.clinic_id] if known else patient.clinic.name
    return (
        row.status_text,
        follow_up.due.isoformat() if follow_up else "",
        follow_up.title if follow_up else "Review the advice (no follow-up scheduled)",
        follow_up.code if follow_up else "",
        row.more_follow_ups,
        clinic_name,
        patient.mrn,
        patient.name,
        snapshot.pathway,
        _number(snapshot, "alp_latest", 2),
        row.alp_collected_on.isoformat() if row.alp_collected_on else "",
        f"{snapshot.alp_x_uln:.2f}" if snapshot.alp_x_uln is not None else "",
        snapshot.top_priority,
        snapshot.top_title,
        "yes" if snapshot.top_acted_on else "",
    )


def follow_ups_calendar(patient: Patient, follow_ups: list[FollowUp]) -> bytes:
    """One all-day event per open follow-up, on its due date; MRN, no name."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//alpcare//follow-ups//EN")
    calendar.add("version", "2.0")
    # A text value, escaped as SUMMARY is: an MRN with a line break (a FHIR import can bring
    # one) made icalendar refuse the raw property (a server error).
    calendar.add("x-wr-calname", icalendar.vText(f"alpcare follow-ups MRN {patient.mrn}"))
    stamp = timezone.now()
    host = (settings.ALLOWED_HOSTS or ["alpcare"])[0].lstrip(".") or "alpcare"
    for follow_up in follow_ups:
        event = icalendar.Event()
        event.add("uid", f"follow-up-{follow_up.pk}@{host}")
        event.add("dtstamp", stamp)
        event.add("dtstart", follow_up.due)
        event.add("dtend", follow_up.due + timedelta(days=1))
        event.add("summary", f"MRN {patient.mrn}: {follow_up.title}")
        event.add(
            "description",
            f"Follow-up {follow_up.code} for MRN {patient.mrn}, due {follow_up.due.isoformat()} "
            f"(rule set {follow_up.rule_set_version}).",
        )
        calendar.add_component(event)
    return bytes(calendar.to_ical())


__all__ = ["CSV_CHUNK", "follow_ups_calendar", "worklist_csv_lines"]
