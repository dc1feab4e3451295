"""A citizen's electronic health book as JSON (INTERFACES.md "One health book").

`books_for(serving_url, citizen_ids)` reads the serving database (the current version of every
encounter only) and returns one dict per ID in the order asked. Values the source did not carry
are None or [], never invented: a code outside its code list gives None for its English word.
Dates are ISO strings ("2026-11-26"), instants to the minute ("2026-11-26T08:15"); a registry
birth date known only to the month or year is a reduced-precision ISO date ("1975-03", "1975").
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from pathlib import Path

import sqlalchemy as sa

from transforms.serving import schema
from transforms.serving.book_names import name as ref_name
from transforms.serving.db import ServingDatabaseUnreachable, check_schema_current, serving_engine, sql_file
from transforms.serving.schema import VERSION_TABLES, ServingTable

# KET_QUA_DTRI and MA_LOAI_RV code lists (XML130.md, and the 3176 annex for MA_LOAI_RV 5).
RESULTS = {
    "1": "cured",
    "2": "improved",
    "3": "unchanged",
    "4": "worse",
    "5": "died at the facility",
    "6": "grave prognosis, taken home at the family's request",
    "7": "undetermined",
    "8": "died outside the facility",
}
DISCHARGE_TYPES = {
    "1": "discharged",
    "2": "transferred for professional reasons",
    "3": "absconded",
    "4": "left on request",
    "5": "transferred at the patient's request",
}
SEXES = {"1": "male", "2": "female"}

# Book queries are chunked so that a long --citizens-file never makes one huge IN list.
CHUNK = 500


# ---------------------------------------------------------------------------------------------
# value formatting


def iso_date(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)[:10]


def iso_instant(value) -> str | None:
    """An instant to the minute, "2026-11-26T08:15" (SQLite returns "2026-11-26 08:15:00")."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M")
    text = str(value)
    return text[:10] + "T" + text[11:16] if len(text) >= 16 else text[:10]


def birth_date_text(value, precision: str | None) -> str | None:
    text = iso_date(value)
    if text is None:
        return None
    return {"year": text[:4], "month": text[:7]}.get(precision or "day", text)


def number(value):
    """Whole floats as ints (10.0 -> 10), as the book shows quantities and measurements."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _codes(text: str | None) -> list[str]:
    return [c for c in (text or "").split(";") if c]


# ---------------------------------------------------------------------------------------------
# queries


def version_rows_sql(table: ServingTable) -> str:
    """The rows of `table` for some encounter versions (:keys, expanding version_ids), in key order."""
    return f"select * from {table.name} where version_id in :keys order by {', '.join(table.primary_key)}"


CHILD_QUERIES = {table.name: version_rows_sql(table) for table in VERSION_TABLES[1:]}
CITIZEN_QUERIES = ("citizens", "encounters", "illnesses", "immunizations", "allergies")


@functools.lru_cache(maxsize=64)
def _query(sql: str, name: str) -> sa.TextClause:
    return sa.text(sql).bindparams(sa.bindparam(name, expanding=True))


def _fetch(conn, sql: str, values: list, name: str = "ids") -> list[dict]:
    result = conn.execute(_query(sql, name), {name: values})
    columns = list(result.keys())
    return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]


_SCHEMA_SEEN: set[str] = set()


def _has_schema(conn, url: str) -> bool:
    """True once the serving tables exist and are at this release's migration revision
    (remembered: a book read need not inspect every time). A database behind the revision raises
    ServingSchemaOutdated before any book is read: its tables may lack what a book shows."""
    if url not in _SCHEMA_SEEN and sa.inspect(conn).has_table("citizens"):
        check_schema_current(conn)
        _SCHEMA_SEEN.add(url)
    return url in _SCHEMA_SEEN


def books_for(serving_url: str, citizen_ids: list[str]) -> list[dict]:
    """One health book per citizen ID, in the order asked (INTERFACES.md "One health book").

    A citizen without a book (not in the serving database) gets
    {"citizen": {"citizen_id": ID}, "found": False}. Raises ServingDatabaseUnreachable when the
    database does not answer (or an SQLite file does not exist), ServingSchemaOutdated when it is
    not at this release's migration revision (`healthbook db upgrade` first).
    """
    if serving_url.startswith("sqlite:///"):
        path = serving_url.split("///", 1)[1]
        if path and path != ":memory:" and not Path(path).exists():
            raise ServingDatabaseUnreachable(f"no serving database at {path}: no night has been loaded there")
    engine = serving_engine(serving_url)
    unique = list(dict.fromkeys(citizen_ids))
    books: dict[str, dict] = {}
    try:
        with engine.connect() as conn:
            if not _has_schema(conn, serving_url):
                return [{"citizen": {"citizen_id": i}, "found": False} for i in citizen_ids]
            for start in range(0, len(unique), CHUNK):
                books.update(_read_books(conn, engine.dialect.name, unique[start : start + CHUNK]))
    except sa.exc.OperationalError as e:
        raise ServingDatabaseUnreachable(
            f"the serving database is unreachable: {str(e).splitlines()[0]}"
        ) from e
    return [books.get(i) or {"citizen": {"citizen_id": i}, "found": False} for i in citizen_ids]


def _read_books(conn, dialect: str, ids: list[str]) -> dict[str, dict]:
    rows = {
        name: _fetch(conn, sql_file(f"queries/book_{name}.sql", dialect), ids) for name in CITIZEN_QUERIES
    }
    # line items by the versions' ids: index probes on each table's primary key, no join
    keys = [e["version_id"] for e in rows["encounters"]]
    children: dict[str, dict[int, list[dict]]] = {}
    for name, sql in CHILD_QUERIES.items():
        grouped: dict[int, list[dict]] = defaultdict(list)
        for r in _fetch(conn, sql, keys, "keys") if keys else []:
            grouped[r["version_id"]].append(r)
        children[name] = grouped

    by_citizen: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for name in CITIZEN_QUERIES[1:]:
        for r in rows[name]:
            by_citizen[r["citizen_id"]][name].append(r)

    out = {}
    for c in rows["citizens"]:
        mine = by_citizen[c["citizen_id"]]
        out[c["citizen_id"]] = {
            "found": True,
            "citizen": citizen_part(c),
            "allergies": [allergy_part(a) for a in mine["allergies"]],
            "illnesses": [illness_part(i) for i in mine["illnesses"]],
            "vaccinations": [vaccination_part(v) for v in mine["immunizations"]],
            "encounters": [encounter_part(e, children) for e in mine["encounters"]],
        }
    return out


# ---------------------------------------------------------------------------------------------
# the parts of a book


def citizen_part(c: dict) -> dict:
    return {
        "citizen_id": c["citizen_id"],
        "full_name": c["full_name"],
        "birth_date": birth_date_text(c["birth_date"], c["birth_date_precision"]),
        "sex": SEXES.get(c["sex_code"]),
        "province_code": c["province_code"],
        "ward_code": c["ward_code"],
        "social_insurance_number": c["social_insurance_number"],
        "blood_group": c["blood_group"],
        # HEALTHBOOK.md group 1 also lists these; INTERFACES.md allows additions.
        "ethnicity_code": c["ethnicity_code"],
        "nationality_code": c["nationality_code"],
        "death_date": iso_date(c["death_date"]),
    }


def allergy_part(a: dict) -> dict:
    return {
        "substance": a["substance_name"],
        "code": a["substance_code"],
        "reaction": a["reaction_name"],
        "severity": a["severity"],
        "recorded_at": iso_instant(a["recorded_at"]),
    }


def illness_part(i: dict) -> dict:
    return {
        "icd10": i["icd10"],
        "name": i["name"],
        "name_vi": ref_name("icd10", i["icd10"]),  # addition: Vietnamese title (reference file)
        "first_seen": iso_date(i["first_seen"]),
        "last_seen": iso_date(i["last_seen"]),
    }


def vaccination_part(v: dict) -> dict:
    return {
        "vaccine_code": v["vaccine_code"],
        "vaccine": v["vaccine_name"],
        "dose_number": v["dose_number"],
        "date": iso_date(v["occurred_at"]),
        "facility_code": v["facility_code"],
        "facility_name": ref_name("facility", v["facility_code"]),
        "lot": v["lot_number"],
    }


def encounter_part(e: dict, children: dict[str, dict[int, list[dict]]]) -> dict:
    def rows(name: str) -> list[dict]:
        return children[name].get(e["version_id"], [])

    def one(name: str) -> dict | None:
        found = rows(name)
        return found[0] if found else None

    diagnoses = rows(schema.DIAGNOSES.name)
    main = next((d for d in diagnoses if d["is_main"]), None)
    secondary = [d for d in diagnoses if not d["is_main"]]
    main_text, secondary_texts = split_diagnosis_text(
        main["diagnosis_text"] if main else None, len(secondary)
    )
    summary, paper, referral, follow_up = (
        one(schema.SUMMARIES.name),
        one(schema.DISCHARGE_PAPERS.name),
        one(schema.REFERRALS.name),
        one(schema.FOLLOW_UPS.name),
    )
    physician = (paper or {}).get("department_head_name") or "; ".join(
        _codes((follow_up or {}).get("physician_codes"))
    )
    if not physician:
        # an outpatient visit has no discharge paper: its doctor is who prescribed (XML2 MA_BAC_SI)
        prescribers = [c for m in rows(schema.MEDICATIONS.name) for c in _codes(m.get("physician_codes"))]
        physician = "; ".join(dict.fromkeys(prescribers))
    physician = physician or None
    follow_up_part = follow_up_of(e, follow_up)
    return {
        "facility_code": e["facility_code"],
        "facility_name": ref_name("facility", e["facility_code"]),
        "encounter_id": e["encounter_id"],
        "version": e["version"],
        "visit_type": e["visit_type"],
        "visit_type_name": ref_name("visit_type", e["visit_type"]),
        "reason": e["visit_reason"],
        "admitted_at": iso_instant(e["admitted_at"]),
        "inpatient_at": iso_instant(e["inpatient_at"]),
        "discharged_at": iso_instant(e["discharged_at"]),
        "result": RESULTS.get(e["result_code"]),
        "result_code": e["result_code"],
        "result_name": ref_name("result", e["result_code"]),
        "discharge_type": DISCHARGE_TYPES.get(e["discharge_type_code"]),
        "discharge_type_code": e["discharge_type_code"],
        "discharge_type_name": ref_name("discharge_type", e["discharge_type_code"]),
        "main_diagnosis": (
            {
                # source: "xml1" (MA_BENH_CHINH) or "xml7" (the discharge paper's code; issue 15)
                "icd10": main["icd10"],
                "text": main_text,
                "name": ref_name("icd10", main["icd10"]),
                "source": e.get("main_icd10_source"),
            }
            if main
            else None
        ),
        "secondary_diagnoses": [
            {"icd10": d["icd10"], "text": text or d["diagnosis_text"], "name": ref_name("icd10", d["icd10"])}
            for d, text in zip(secondary, secondary_texts, strict=True)
        ],
        # weight: XML1 CAN_NANG; height: XML1 DU_PHONG (3176) or an XML4 height row (assemble.py)
        "indicators": {"weight_kg": number(e["weight_kg"]), "height_cm": number(e["height_cm"])},
        "lab_results": [
            {
                "code": r["indicator_code"] or r["service_code"],
                "name": r["indicator_name"],
                "value": r["value"],
                "unit": r["unit"],
                "conclusion": r["conclusion"],
                "reported_at": iso_instant(r["reported_at"]),
            }
            for r in rows(schema.LAB_RESULTS.name)
        ],
        "medications": [
            {
                "code": m["drug_code"],
                "name": m["drug_name"],
                "strength": m["strength"],
                "route": m["route_code"],
                "route_name": ref_name("route", m["route_code"]),
                "dose": m["dose"],
                "quantity": number(m["quantity"]),
                "ordered_at": iso_instant(m["ordered_at"]),
            }
            for m in rows(schema.MEDICATIONS.name)
        ],
        "procedures": [
            {
                "code": p["service_code"],
                "name": p["service_name"],
                "performed_at": iso_instant(p["performed_at"]),
            }
            for p in rows(schema.PROCEDURES.name)
        ],
        "clinical_course": [
            {"at": iso_instant(c["noted_at"]), "note": c["note"]} for c in rows(schema.CLINICAL_COURSE.name)
        ],
        "summary": summary_part(summary, e, follow_up_part, physician) if summary else None,
        "discharge_paper": discharge_paper_part(paper) if paper else None,
        "referral": referral_part(referral) if referral else None,
        "follow_up": follow_up_part,
        "physician": physician,
        "source": {"file": e["source_file"], "received_on": iso_date(e["night"])},
        # addition to INTERFACES.md: a stay published after its grace period without its late
        # tables names them (["discharge_paper", "summary"]); null when nothing is missing
        "incomplete": e["incomplete"].split(";") if e.get("incomplete") else None,
    }


def split_diagnosis_text(text: str | None, secondary_count: int) -> tuple[str | None, list[str | None]]:
    """The main diagnosis's own text, and the secondary ones' texts where the source gave them.

    XML1 CHAN_DOAN_RV names every discharge diagnosis, main first, separated by ";". With
    secondary codes, only the first part is the main diagnosis's text; when the parts are exactly
    one per code, each secondary code gets its part. Without secondary codes the text stays whole
    (a ";" may then be part of the main text itself).
    """
    if text is None or secondary_count == 0:
        return text, [None] * secondary_count
    parts = [p.strip() for p in text.split(";")]
    if len(parts) < 2:
        return text, [None] * secondary_count
    rest = parts[1:] if len(parts) == 1 + secondary_count else [None] * secondary_count
    return parts[0] or None, [p or None for p in rest]


def follow_up_of(e: dict, paper: dict | None) -> dict | None:
    """The follow-up appointment: the XML14 paper when issued, else XML1 NGAY_TAI_KHAM (first date)."""
    if paper is not None:
        physicians = "; ".join(_codes(paper["physician_codes"])) or None
        return {"date": iso_date(paper["appointment_on"]), "physician": physicians}
    dates = _codes(e["follow_up_dates"])
    return {"date": dates[0], "physician": None} if dates else None


def summary_part(s: dict, e: dict, follow_up: dict | None, physician: str | None) -> dict:
    """The medical record summary (XML8) with XML1 instructions, the follow-up and the physician."""
    return {
        "admission_diagnosis": s["admission_diagnosis"],
        "discharge_diagnosis": s["discharge_diagnosis"],
        "medical_history": s["medical_history"],
        "paraclinical_summary": s["paraclinical_summary"],
        "treatment_method": s["treatment_method"],
        "result": RESULTS.get(s["result_code"]),
        "instructions": e["instructions"],
        "note": s["note"],
        "follow_up_date": (follow_up or {}).get("date"),
        "physician": physician,
        "issued_on": iso_date(s["issued_on"]),
    }


def discharge_paper_part(p: dict) -> dict:
    return {
        "archive_number": p["archive_number"],
        "department": p["discharge_department"],
        "department_name": ref_name("department", p["discharge_department"]),
        "diagnosis": p["discharge_diagnosis"],
        "treatment_method": p["treatment_method"],
        "note": p["note"],
        "physician": p["department_head_name"],
        "issued_on": iso_date(p["issued_on"]),
        "leave_days": p["leave_days"],
        "leave_from": iso_date(p["leave_from"]),
        "leave_to": iso_date(p["leave_to"]),
        "pregnancy_terminated": p["is_pregnancy_terminated"],
        "termination_reason": p["termination_reason"],
        "terminated_at": iso_instant(p["terminated_at"]),
        "gestation_weeks": p["gestation_weeks"],
    }


def referral_part(r: dict) -> dict:
    return {
        "referral_number": r["referral_number"],
        "from_facility": r["from_facility"],
        "from_facility_name": ref_name("facility", r["from_facility"]),
        "to_facility": r["to_facility"],
        "to_facility_name": ref_name("facility", r["to_facility"]),
        "diagnosis": r["discharge_diagnosis"],
        "clinical_signs": r["clinical_signs"],
        "condition_at_transfer": r["condition_at_transfer"],
        "reason_code": r["referral_reason_code"],
        "discharge_type": DISCHARGE_TYPES.get(r["discharge_type_code"]),
        "treatment_plan": r["treatment_plan"],
        "transport": r["transport"],
        "escort_name": r["escort_name"],
        "physicians": _codes(r["physician_codes"]),
    }
