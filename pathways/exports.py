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
from django.db.models import Max
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


def follow_ups_calendar(
    patient: Patient, follow_ups: list[FollowUp], *, request_host: str
) -> bytes:
    """One all-day event per open follow-up, on its due date; MRN, no name.

    RFC 5545 3.8.4.7: a calendar app replaces an imported event with the same UID and adds one
    with a new UID. follow_ups_sync replaces a re-dated follow-up's row (dental-exam, due on the
    assessment date, gets a new row every day), so the UID names the patient and the code, not
    the row; SEQUENCE (3.8.7.4) grows with each change, so the app takes the new date."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//alpcare//follow-ups//EN")
    calendar.add("version", "2.0")
    # A text value, escaped as SUMMARY is: an MRN with a line break (a FHIR import can bring
    # one) made icalendar refuse the raw property (a server error).
    calendar.add("x-wr-calname", icalendar.vText(f"alpcare follow-ups MRN {patient.mrn}"))
    stamp = timezone.now()
    host = _calendar_host(request_host)
    revisions = _revisions(follow_ups)
    codes: set[str] = set()
    for follow_up in follow_ups:
        uid = f"follow-up-{patient.pk}-{follow_up.code}"
        if follow_up.code in codes:  # not left by follow_ups_sync (one open row per code)
            uid += f"-{follow_up.due.isoformat()}"
        codes.add(follow_up.code)
        event = icalendar.Event()
        event.add("uid", f"{uid}@{host}")
        event.add("sequence", revisions.get(follow_up.pk, 0))
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


def _calendar_host(request_host: str) -> str:
    """The UIDs' domain: the first allowed host that names one ("*", the setting of
    `make run HOST=0.0.0.0`, would give every installation the same UIDs), else the request's."""
    for allowed in settings.ALLOWED_HOSTS:
        host = allowed.lstrip(".")
        if host and "*" not in host:
            return host
    return request_host


def _revisions(follow_ups: list[FollowUp]) -> dict[int, int]:
    """Each row's latest history id, its SEQUENCE: it grows with every save of any follow-up,
    so a follow-up re-dated (a new row), retitled or reopened is always higher than before. The
    pk would not be: an older row marked done, back in force and reopened after a later-due
    row was downloaded, would read as a stale copy of that one."""
    latest = (
        FollowUp.history.filter(id__in=[follow_up.pk for follow_up in follow_ups])
        .order_by()
        .values("id")
        .annotate(revision=Max("history_id"))
    )
    return {row["id"]: row["revision"] for row in latest}


__all__ = ["CSV_CHUNK", "follow_ups_calendar", "worklist_csv_lines"]
