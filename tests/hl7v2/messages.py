"""Synthetic HL7 v2 messages for the tests (no real patient): built, not copied, so each test says
exactly what it sends."""

from __future__ import annotations

CR = "\r"


def nhs_number(seed: int) -> str:
    """A valid (modulus 11) NHS number in the 999 test range."""
    while True:
        base = f"999{seed:06d}"
        total = sum(int(d) * w for d, w in zip(base, range(10, 1, -1), strict=True))
        check = (11 - total % 11) % 11
        if check != 10:
            return base + str(check)
        seed += 1


def siu(trigger: str, control: str, appt: str, when: str, nhs: str, birth: str = "20150601",
        status: str = "Booked", facility: str = "RXQ", reason: str = "") -> bytes:
    segments = [
        f"MSH|^~\\&|PAS|{facility}|FHIR-ENGAGEMENT|HSCP|{when}||SIU^{trigger}^SIU_S12|{control}|P|2.5.1",
        "|".join(["SCH", f"{appt}-P", appt, "", "", "", reason, "", "", "60", "MIN",
                  f"^^60^{when}^{when}"] + [""] * 13 + [status]),  # SCH-6 reason, SCH-25 status
        f"TQ1|||||||{when}|{when}|R",
        f"PID|1||{nhs}^^^NHS^NH~L{nhs[-5:]}^^^{facility}^MR||Test^Child||{birth}|F",
        "RGS|1",
        "AIS|1||PAEDS^Paediatric outpatients^L",
        "AIP|1||C1234567^Clinician^Alex^^^Dr|CONS",
    ]
    return (CR.join(segments) + CR).encode()


def adt(trigger: str, control: str, visit: str, when: str, nhs: str, birth: str = "20150601",
        patient_class: str = "I", disposition: str = "", facility: str = "RXQ") -> bytes:
    pv1 = ["PV1", "1", patient_class, "WARD1^^^" + facility, "", "", "", "C7654321^Doctor^Sam"]
    pv1 += [""] * 11 + [visit] + [""] * 16 + [disposition] + [""] * 7 + [when, when]  # 19, 36, 44, 45
    segments = [
        f"MSH|^~\\&|PAS|{facility}|FHIR-ENGAGEMENT|HSCP|{when}||ADT^{trigger}^ADT_A03|{control}|P|2.4",
        f"EVN|{trigger}|{when}",
        f"PID|1||{nhs}^^^NHS^NH||Test^Child||{birth}|M",
        "|".join(pv1),
    ]
    return (CR.join(segments) + CR).encode()
