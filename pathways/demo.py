"""Demo and synthetic patients, written through the same case-document path as real ones."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from pathways import engine
from pathways.models import Clinic, Membership, Patient
from pathways.publishing import rule_editor_grant
from pathways.services import patient_save_case
from pathways.twofactor import (
    authenticator_confirm,
    authenticator_start,
    base32_secret,
    recovery_codes_regenerate,
)


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    # Demo staff use two-factor like real staff: the authenticator key to add to an app, and
    # recovery codes that each log in once (fresh every run).
    totp_secret: str = ""
    recovery_codes: tuple[str, ...] = ()


DEMO_RECOVERY_CODES_SHOWN = 3


def _demo_two_factor(user: User) -> tuple[str, tuple[str, ...]]:
    """Enrol a demo staff user (keeping an existing authenticator, so an app set up on an
    earlier run still works); returns the key and a few fresh recovery codes."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = authenticator_start(user=user)
        codes = authenticator_confirm(user=user, device=device)
    else:
        codes = recovery_codes_regenerate(user=user)
    return base32_secret(device), tuple(codes[:DEMO_RECOVERY_CODES_SHOWN])


def _d(today: date, days_ago: int) -> str:
    return (today - timedelta(days=days_ago)).isoformat()


def _alp(today: date, days_ago: int, value: float, time: str = "08:30") -> dict[str, Any]:
    return {
        "test": "alp",
        "value": value,
        "unit": "U/L",
        "collected_at": f"{_d(today, days_ago)}T{time}",
    }


def _case(
    today: date,
    *,
    birth: str,
    sex: str,
    labs: list[dict[str, Any]],
    weight: float | None = None,
    **clinical: Any,
) -> dict[str, Any]:
    myeloma = clinical.pop("myeloma", {})
    return {
        "as_of": today.isoformat(),
        "patient": {"birth_date": birth, "sex": sex, "weight_kg": weight},
        "labs": labs,
        "clinical": {**clinical, "myeloma": myeloma},
    }


def demo_patients(today: date) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """(MRN, name, case document) per clinic slug; dates are relative to today."""
    return {
        "riverside": [
            (
                "RV-1001",
                "Margaret Ellis",
                _case(
                    today,
                    birth="1950-03-02",
                    sex="female",
                    weight=64,
                    labs=[
                        _alp(today, 300, 412),
                        _alp(today, 210, 318),
                        _alp(today, 120, 240),
                        _alp(today, 40, 171, "09:10"),
                    ],
                    diagnoses=["paget"],
                    bone_scan="diffuse",
                    therapies=[
                        {"agent": "alendronate", "start": _d(today, 290), "end": _d(today, 110)}
                    ],
                ),
            ),
            (
                "RV-1002",
                "Joan Whitfield",
                _case(
                    today,
                    birth="1961-07-19",
                    sex="female",
                    weight=71,
                    labs=[_alp(today, 95, 188), _alp(today, 12, 236, "14:40")],
                    cancer="breast",
                    cancer_treated=True,
                    bone_pain=True,
                ),
            ),
            (
                "RV-1003",
                "Peter Novak",
                _case(
                    today,
                    birth="1958-01-30",
                    sex="male",
                    weight=82,
                    labs=[_alp(today, 60, 164), _alp(today, 8, 171)],
                ),
            ),
            (
                "RV-2001",
                "Samuel Okafor",
                _case(
                    today,
                    birth="1956-11-04",
                    sex="male",
                    weight=78,
                    labs=[
                        _alp(today, 470, 150),
                        _alp(today, 440, 205),
                        _alp(today, 400, 190),
                        _alp(today, 200, 132),
                        _alp(today, 30, 118),
                        {
                            "test": "bone_alp",
                            "value": 31,
                            "unit": "ug/L",
                            "collected_at": _d(today, 470),
                        },
                        {
                            "test": "crcl",
                            "value": 78,
                            "unit": "mL/min",
                            "collected_at": _d(today, 470),
                        },
                        {
                            "test": "crcl",
                            "value": 74,
                            "unit": "mL/min",
                            "collected_at": _d(today, 30),
                        },
                    ],
                    diagnoses=["multiple_myeloma"],
                    dental_exam_done=True,
                    myeloma={
                        "requires_therapy": True,
                        "bone_disease": True,
                        "response": "VGPR",
                        "treatment_start": _d(today, 455),
                        "bortezomib_start": _d(today, 455),
                    },
                    therapies=[{"agent": "zoledronic_acid", "start": _d(today, 450), "end": None}],
                ),
            ),
            (
                "RV-2002",
                "Helen Brandt",
                _case(
                    today,
                    birth="1949-05-22",
                    sex="female",
                    weight=58,
                    labs=[
                        _alp(today, 20, 176),
                        {
                            "test": "bone_alp",
                            "value": 27,
                            "unit": "ug/L",
                            "collected_at": _d(today, 20),
                        },
                        {
                            "test": "creatinine",
                            "value": 1.3,
                            "unit": "mg/dL",
                            "collected_at": _d(today, 20),
                        },
                    ],
                    diagnoses=["multiple_myeloma"],
                    myeloma={"requires_therapy": True, "bone_disease": True},
                ),
            ),
            (
                "RV-2003",
                "Thomas Reilly",
                _case(
                    today,
                    birth="1963-09-09",
                    sex="male",
                    weight=90,
                    labs=[_alp(today, 200, 96), _alp(today, 15, 101)],
                    diagnoses=["mgus"],
                    therapies=[{"agent": "alendronate", "start": _d(today, 100), "end": None}],
                ),
            ),
        ],
        "hillcrest": [
            (
                "HC-0101",
                "Arthur Pym",
                _case(
                    today,
                    birth="1947-02-14",
                    sex="male",
                    weight=80,
                    labs=[_alp(today, 140, 380), _alp(today, 50, 620), _alp(today, 5, 1120)],
                    diagnoses=["bone_metastases"],
                    cancer="prostate",
                    bone_scan="focal_lesions",
                    fracture="impending",
                    bone_pain=True,
                ),
            ),
            (
                "HC-0102",
                "Grace Liang",
                _case(
                    today,
                    birth="1971-12-01",
                    sex="female",
                    weight=55,
                    labs=[
                        _alp(today, 90, 210),
                        _alp(today, 10, 198),
                        {
                            "test": "vitamin_d",
                            "value": 21,
                            "unit": "nmol/L",
                            "collected_at": _d(today, 90),
                        },
                        {
                            "test": "crcl",
                            "value": 41,
                            "unit": "mL/min",
                            "collected_at": _d(today, 10),
                        },
                    ],
                    diagnoses=["osteomalacia", "vitamin_d_deficiency", "chronic_kidney_disease"],
                ),
            ),
        ],
    }


CLINICS = {
    "riverside": "Riverside Oncology & Haematology",
    "hillcrest": "Hillcrest Endocrine & Bone",
}


DEMO_LAB = "RIVERSIDE-LAB"


def _demo_lab_feed(clinic: Clinic, today: date) -> None:
    """Riverside's laboratory feed, and two results it sent that wait in the lab inbox: one
    under the laboratory's own code (match it to a test, and the result is stored for Joan
    Whitfield) and one for a patient the clinic does not follow (dismiss it with a note).
    Sent once, through the feed as a real message is (feed.receive)."""
    from pathways.feed import receive
    from pathways.feed_models import Hl7Feed, Hl7Message

    service_user, _ = User.objects.get_or_create(username="riverside-lab-feed")
    if not service_user.has_usable_password():
        service_user.set_unusable_password()
        service_user.save()
    # The results the feed stores are recorded as the service user's: a member of the clinic
    # (the feed admin refuses a service user from outside it).
    Membership.objects.get_or_create(user=service_user, clinic=clinic)
    Hl7Feed.objects.get_or_create(
        sending_facility=DEMO_LAB, defaults={"clinic": clinic, "service_user": service_user}
    )
    if Hl7Message.objects.filter(sending_facility=DEMO_LAB).exists():
        return
    collected = (today - timedelta(days=1)).strftime("%Y%m%d") + "0815"
    results = (
        ("DEMO-1", "RV-1002^^^RIVERSIDE^MR", "Whitfield^Joan", "ALKP^Alk phos^L", "251",
         "Sample slightly haemolysed"),
        ("DEMO-2", "RV-9911^^^RIVERSIDE^MR", "Doe^Robin", "6768-6^Alkaline phosphatase^LN",
         "96", ""),
    )  # fmt: skip
    for control_id, patient, name, code, value, comment in results:
        segments = [
            f"MSH|^~\\&|LIS|{DEMO_LAB}|ALPCARE|RIVERSIDE|{collected}||ORU^R01^ORU_R01|"
            f"{control_id}|P|2.5.1",
            f"PID|1||{patient}||{name}",
            f"OBR|1||{control_id}-F|24326-1^Panel^LN|||{collected}",
            f"OBX|1|NM|{code}|1|{value}|U/L|||||F|||{collected}",
        ]
        if comment:
            segments.append(f"NTE|1|L|{comment}")
        receive("\r".join(segments) + "\r", via="demo")


def _user(username: str, first: str, last: str, *, staff: bool) -> tuple[User, str]:
    password = secrets.token_urlsafe(12)
    user, _ = User.objects.get_or_create(username=username)
    user.first_name, user.last_name, user.is_staff = first, last, staff
    user.set_password(password)  # a fresh password each run, printed once
    user.save()
    return user, password


@transaction.atomic
def seed_demo(today: date) -> list[DemoLogin]:
    """Create (or refresh) the demo clinics, users and patients; safe to run repeatedly."""
    clinics = {
        slug: Clinic.objects.get_or_create(slug=slug, defaults={"name": name})[0]
        for slug, name in CLINICS.items()
    }
    clinician, clinician_pw = _user("clinician", "Dana", "Clinician", staff=False)
    editor, editor_pw = _user("editor", "Rui", "Editor", staff=True)
    publisher, publisher_pw = _user("publisher", "Pat", "Publisher", staff=True)
    for user, role in (
        (clinician, "clinician"),
        (editor, "rule_editor"),
        (publisher, "rule_editor"),
    ):
        Membership.objects.get_or_create(
            user=user, clinic=clinics["riverside"], defaults={"role": role}
        )
    Membership.objects.get_or_create(user=clinician, clinic=clinics["hillcrest"])
    rule_editor_grant(user=editor, publish=False)
    rule_editor_grant(user=publisher, publish=True)

    for slug, patients in demo_patients(today).items():
        for mrn, name, document in patients:
            if not Patient.objects.filter(clinic=clinics[slug], mrn=mrn).exists():
                patient_save_case(
                    user=clinician,
                    case=engine.parse_case(document),
                    mrn=mrn,
                    name=name,
                    clinic=clinics[slug],
                )
    _demo_lab_feed(clinics["riverside"], today)
    return [
        DemoLogin("clinician", clinician_pw, "clinician (both demo clinics)"),
        DemoLogin("editor", editor_pw, "rule editor (drafts rules)", *_demo_two_factor(editor)),
        DemoLogin(
            "publisher",
            publisher_pw,
            "rule editor who may publish (four-eyes)",
            *_demo_two_factor(publisher),
        ),
    ]


_FIRST = [
    "Ada",
    "Ben",
    "Cleo",
    "Dev",
    "Eve",
    "Finn",
    "Gita",
    "Hugo",
    "Iris",
    "Jon",
    "Kai",
    "Lena",
    "Milo",
    "Nora",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Saul",
    "Tara",
]
_LAST = [
    "Adams",
    "Baker",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Gupta",
    "Hale",
    "Ivanova",
    "Jones",
    "Khan",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Olsen",
    "Patel",
    "Quist",
    "Rossi",
]


# ALP results per synthetic case, at most one a day: ten years back stays after the latest
# birth date (1985) drawn below.
MAX_SYNTHETIC_RESULTS = 3650


def synthetic_case(rng: random.Random, today: date, *, results: int = 20) -> dict[str, Any]:
    """A plausible random case: serial ALP (some timed), therapies, either pathway."""
    if not 0 <= results <= MAX_SYNTHETIC_RESULTS:
        raise ValueError(f"results: from 0 to {MAX_SYNTHETIC_RESULTS}, not {results}")
    myeloma = rng.random() < 0.4
    sex = rng.choice(["female", "male"])
    birth = date(rng.randint(1935, 1985), rng.randint(1, 12), rng.randint(1, 28))
    # Long enough for every result asked for (a day each): a shorter span gave fewer, unsaid.
    span = max(rng.randint(180, 900), results + 1)
    level = rng.uniform(80, 600)
    labs = []
    days = sorted(rng.sample(range(1, span), k=min(results, span - 1)), reverse=True)
    for days_ago in days:
        level = max(30.0, level * rng.uniform(0.85, 1.12))
        timed = rng.random() < 0.7
        when = _d(today, days_ago) + (
            f"T{rng.randint(7, 16):02d}:{rng.choice(['00', '30'])}" if timed else ""
        )
        labs.append({"test": "alp", "value": round(level), "unit": "U/L", "collected_at": when})
    labs.append(
        {
            "test": "crcl",
            "value": rng.randint(25, 95),
            "unit": "mL/min",
            "collected_at": _d(today, rng.randint(1, 60)),
        }
    )
    clinical: dict[str, Any] = {"diagnoses": [], "therapies": []}
    if myeloma:
        start = _d(today, rng.randint(30, 800))
        clinical["diagnoses"] = ["multiple_myeloma"]
        clinical["myeloma"] = {
            "requires_therapy": True,
            "bone_disease": rng.random() < 0.7,
            "response": rng.choice(["CR", "VGPR", "PR", "SD", None]),
            "treatment_start": start,
            "bortezomib_start": start if rng.random() < 0.5 else None,
        }
        clinical["dental_exam_done"] = rng.random() < 0.6
        if rng.random() < 0.6:
            clinical["therapies"] = [
                {
                    "agent": rng.choice(["zoledronic_acid", "pamidronate"]),
                    "start": start,
                    "end": None,
                }
            ]
    else:
        clinical["diagnoses"] = rng.choice([[], ["paget"], ["bone_metastases"], ["osteomalacia"]])
        clinical["cancer"] = rng.choice([None, None, "breast", "prostate", "lung"])
        clinical["bone_pain"] = rng.random() < 0.3
        if rng.random() < 0.4:
            clinical["therapies"] = [
                {"agent": "alendronate", "start": _d(today, rng.randint(60, 500)), "end": None}
            ]
    return {
        "as_of": today.isoformat(),
        "patient": {"birth_date": birth.isoformat(), "sex": sex, "weight_kg": rng.randint(50, 100)},
        "labs": labs,
        "clinical": clinical,
    }


def seed_synthetic(
    *, clinic: Clinic, user: User, count: int, today: date, seed: int = 1, results: int = 20
) -> int:
    rng = random.Random(seed)
    # After the highest number in use, not the count: a deleted one would make it a duplicate.
    numbers = Patient.objects.filter(clinic=clinic, mrn__regex=r"^SYN-[0-9]{6}$").values_list(
        "mrn", flat=True
    )
    start = max((int(mrn[4:]) + 1 for mrn in numbers), default=0)
    # All of them or none: a failure part way must not leave some behind, unsaid.
    with transaction.atomic():
        for number in range(start, start + count):
            document = synthetic_case(rng, today, results=results)
            name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
            patient_save_case(
                user=user,
                case=engine.parse_case(document),
                mrn=f"SYN-{number:06d}",
                name=name,
                clinic=clinic,
            )
    return count
