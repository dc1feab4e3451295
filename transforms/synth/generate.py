"""The synthetic night generator behind `healthbook generate`.

One call of `generate_night` writes, under `out`:

    extracts/<D>/<province>/<facility>/<facility>_<D>_<seq>.xml   XML 130 envelopes (GIAMDINHHS)
    extracts/<D>/fhir/*.ndjson                                      FHIR R4 Immunization / AllergyIntolerance
    registry/part-00000.parquet ...                                 the identity-registry snapshot
    truth/encounters.parquet                                        one row per HOSO written (encounter version)
    truth/files.parquet                                             one row per envelope file
    truth/fhir.parquet                                              one row per NDJSON line
    truth/summary.json                                              counts by defect/noise kind, arguments, seed

Everything is a pure function of the arguments: the same arguments give byte-identical files.
Memory stays bounded: the registry is written in fixed-size chunks (`generate_citizens`), an
encounter re-derives its patient from (seed, index), and each facility's files are written as they
are built. Facilities run in a process pool when the night is large; each facility's output
depends only on (seed, facility index), so the pool does not change a byte.

The truth says what the pipeline must do with each encounter: `load`, `quarantine` with one reason
(each encounter carries at most one blocking defect), or `rejected_file`. Quirks of real files
(BOM, CDATA, NaN/null/undefined, comma decimals, old XML13 field names, unknown tables, inner XML
without declaration, a malformed xmlns declaration) never change the expected outcome.

Small building blocks for hand-made test files: `inner_xml` and `envelope_bytes`.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import datetime as dt
import json
import multiprocessing
import random
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.core import schema
from transforms.synth import vocab
from transforms.synth.citizens import (
    citizen_index_of,
    derive_citizens,
    draw_no_id_noise,
    non_separable_records,
    write_registry,
)
from transforms.synth.citizens import identity_profile as _identity_profile
from transforms.synth.encounters import EncounterPlan, Facility, build_tables

# ---------------------------------------------------------------------------------------------
# Settings: every rate in one place
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorSettings:
    """Rates of the generated night. Each is a probability per encounter (or per file / line)."""

    # visit types "01" examination, "02" outpatient treatment, "03" inpatient, "04" day-care
    visit_type_weights: tuple[float, float, float, float] = (0.70, 0.08, 0.15, 0.07)
    referral_rate: float = 0.04
    follow_up_rate: float = 0.2
    uninsured_rate: float = 0.05  # uninsured patients who still carry their citizen ID
    local_patient_share: float = 0.8  # patients living in the facility's province
    # identity noise of patients who carry an ID
    no_citizen_id_rate: float = 0.20
    sin_in_cccd_rate: float = 0.02
    old_id_in_cccd_rate: float = 0.02
    id_one_digit_typo_rate: float = 0.01
    name_upper_rate: float = 0.03
    name_unaccented_rate: float = 0.03
    name_nfd_rate: float = 0.01
    dob_day_month_swapped_rate: float = 0.01
    # patients identified by demographics only, or not identifiable
    self_pay_rate: float = 0.02  # uninsured, no ID, no card
    self_pay_noise_rate: float = 0.5  # share of them with one name/birth/address slip
    twin_rate: float = 0.005
    not_in_registry_rate: float = 0.015
    # blocking defects (one at most per encounter)
    invalid_icd10_rate: float = 0.01
    discharge_before_admission_rate: float = 0.01
    missing_xml1_rate: float = 0.01
    base64_invalid_rate: float = 0.01
    # Real nights (REAL_EXPORTS.md); none of these blocks under the issue #15 policy.
    # Money totals that disagree with their line items, per relation (each independently):
    drift_bhtt_rate: float = 0.005  # T_BHTT != T_TONGCHI_BH - T_BNCCT (holds in 99.5%)
    drift_parts_rate: float = 0.005  # T_TONGCHI_BV != T_BHTT + T_BNCCT + T_BNTT + T_NGUONKHAC
    drift_total_bv_rate: float = 0.10  # T_TONGCHI_BV != sum of THANH_TIEN_BV (holds in 90%)
    drift_total_bh_rate: float = 0.10  # T_TONGCHI_BH != sum of THANH_TIEN_BH (holds in 90%)
    drift_drugs_rate: float = 0.29  # T_THUOC != sum of XML2 THANH_TIEN_BH (holds in 71%)
    drift_drugs_bv_rate: float = 0.15  # T_THUOC = the BH sum, not the BV sum (56% hold for BV)
    # Late tables of inpatient/day-care stays (188 real stays: 28 neither, 17 XML7 only, 5 XML8 only):
    stay_without_both_rate: float = 28 / 188
    stay_without_summary_rate: float = 17 / 188  # has XML7, no XML8
    stay_without_paper_rate: float = 5 / 188  # has XML8, no XML7
    late_resend_rate: float = 0.5  # of those stays: the missing tables come on night D+1..D+3
    late_full_resend_share: float = 0.2  # of those re-sends: the whole HOSO again (else XML7/XML8 alone)
    main_code_from_xml7_rate: float = 18 / 155  # of stays with XML7: XML1 main code empty
    # Shapes of the main code (REAL_EXPORTS.md "Diagnosis codes"):
    fifth_char_rate: float = 0.005  # chapter XIX fifth character (S72.00 closed, S72.01 open)
    three_char_rate: float = 0.3  # a 4-character code sent in its 3-character form ("J06")
    retired_code_rate: float = 0.002  # codes retired from later WHO updates (D75.2, N18.8)
    xsi_space_rate: float = 0.996  # of files: inner tables declare xmlns:xsi="...XMLSchema instance"
    # quirks (never change the outcome)
    null_token_rate: float = 0.02
    comma_decimal_rate: float = 0.02
    cdata_rate: float = 0.03
    unknown_table_rate: float = 0.02
    old_xml13_names_rate: float = 0.5  # of referrals
    no_declaration_rate: float = 0.3  # of facilities
    bom_rate: float = 0.2  # of facilities
    malformed_xmlns_rate: float = 0.2  # of facilities
    resend_rate: float = 0.01
    # files: real nights hold one encounter per file, named <MA_BN>_<MA_LK>.xml (4.5-100 KB,
    # median ~13 KB); `BATCHED` (healthbook generate --batched) keeps the older batched nights
    single_file_share: float = 1.0  # share of files holding one encounter; the rest batch 50-200
    # FHIR lines per encounter
    immunizations_per_encounter: float = 0.3
    allergies_per_encounter: float = 0.08
    fhir_removed_rate: float = 0.05
    fhir_replaced_rate: float = 0.05
    # every defect class and noise kind appears at least once from this night size on
    guarantee_from_encounters: int = 300
    parallel_from_encounters: int = 20_000
    # registry and no-ID patients (generate_citizens.IDENTITY_PROFILES): "default" or "hard"
    identity_profile: str = "default"


SETTINGS = GeneratorSettings()
BATCHED_FILE_SHARE = 0.3  # `--batched`: the share of one-encounter files of the older nights
# The rates whose expected outcome ("load") needs the issue #15 checks policy (totals as warnings,
# the national ICD-10 list, XML7-sourced main codes): zero them to judge a branch without it.
POLICY_DEPENDENT_RATES = (
    "drift_bhtt_rate",
    "drift_parts_rate",
    "drift_total_bv_rate",
    "drift_total_bh_rate",
    "drift_drugs_rate",
    "drift_drugs_bv_rate",
    "main_code_from_xml7_rate",
    "fifth_char_rate",
    "retired_code_rate",
)

# True defects: the encounter must stay out of the book (one at most per encounter).
BLOCKING_DEFECTS = (
    "invalid_icd10",
    "discharge_before_admission",
    "missing_xml1",
    "base64_invalid",
)
# Late tables: the stay waits (quarantined with this reason) for the grace period, then loads
# marked incomplete unless the table arrives (truth: late_resend_night).
LATE_DEFECTS = ("missing_discharge_paper", "missing_summary")
# Real-file shapes that must load (warnings at most): totals drift, code shapes, XML7 main code.
DRIFT_RELATIONS = ("bhtt", "parts", "total_bv", "total_bh", "drugs", "drugs_bv")
CODE_SHAPES = ("icd10_fifth_char", "icd10_three_char", "icd10_retired", "main_code_from_xml7")
QUIRKS = ("null_token", "comma_decimal", "cdata", "old_xml13_names", "unknown_table", "no_xml_declaration")
ID_NOISE = ("no_citizen_id", "sin_in_cccd", "old_id_in_cccd", "id_one_digit_typo")
NAME_FORM_NOISE = ("name_upper", "name_unaccented", "name_nfd")
SELF_PAY_NOISE = ("name_typo", "dropped_middle_name", "dob_day_month_swapped", "moved_ward")
FILE_DEFECTS = ("xml_malformed", "xml_entity_declared", "declared_count_mismatch")
FILE_QUIRKS = ("bom", "malformed_xmlns")
# Every kind the night guarantees: (what it is, its name)
GUARANTEED = (
    [("defect", d) for d in BLOCKING_DEFECTS + LATE_DEFECTS]
    + [("defect", q) for q in QUIRKS]
    + [("defect", "resend")]
    + [("noise", n) for n in ID_NOISE + NAME_FORM_NOISE]
    + [("noise", "dob_day_month_swapped")]
    + [("patient", "self_pay_no_id"), ("patient", "indistinguishable_twin"), ("patient", "not_in_registry")]
    + [("self_pay_noise", n) for n in ("name_typo", "dropped_middle_name", "moved_ward")]
)

# ---------------------------------------------------------------------------------------------
# Building blocks: inner tables and envelopes
# ---------------------------------------------------------------------------------------------

# Root and row path of the tables the pipeline keeps raw (free-form here).
RAW_TABLE_PATHS = {
    "XML0": ("CHI_TIEU_TRANG_THAI_KCB", ("DSACH_TRANG_THAI_KCB", "TRANG_THAI_KCB")),
    "XML6": ("CHI_TIEU_HO_SO_BENH_AN_CHAM_SOC_VA_DIEU_TRI_HIV_AIDS", ()),
    "XML15": (
        "CHI_TIEU_DU_LIEU_DIEU_TRI_BENH_LAO",
        ("DSACH_CHI_TIET_DIEU_TRI_BENH_LAO", "CHI_TIET_DIEU_TRI_BENH_LAO"),
    ),
}
XMLNS = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
# Seen in real exports: relative namespace URIs (libxml2 warns, the document is still well-formed).
XMLNS_MALFORMED = 'xmlns:xsi="XMLSchema-instance" xmlns:xsd="XMLSchema"'
DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'
# what real inner tables declare (REAL_EXPORTS.md "XML quirks"): a space, not a hyphen
XSI_SPACE = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema instance"'
XSD = 'xmlns:xsd="http://www.w3.org/2001/XMLSchema"'


def _text(value: str, cdata: bool) -> str:
    if cdata and value and not value.replace(".", "").isdigit():
        return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    return escape(value)


def inner_xml(
    loaihoso: str,
    rows: list[dict[str, str]],
    cdata: bool = False,
    declaration: bool = True,
    xsi_space: bool = False,
) -> bytes:
    """One inner table (what NOIDUNGFILE carries, before base64) as UTF-8 bytes.

    `rows` maps raw field names to text, in the order to write; a flat table (XML1, XML7, XML8,
    XML13, XML14) takes exactly one row. Element paths come from `transforms.core.schema`; XML0, XML6
    and XML15 use `RAW_TABLE_PATHS`. `cdata` wraps non-numeric values in CDATA sections.
    `xsi_space` declares xmlns:xsi with the space real exports carry ("XMLSchema instance").
    """
    if loaihoso in schema.TABLES_BY_LOAIHOSO:
        table = schema.TABLES_BY_LOAIHOSO[loaihoso]
        root, row_path = table.root, table.row_path
    elif loaihoso in RAW_TABLE_PATHS:
        root, row_path = RAW_TABLE_PATHS[loaihoso]
    else:
        raise ValueError(f"unknown table {loaihoso}")
    if not row_path and len(rows) != 1:
        raise ValueError(f"{loaihoso} is a flat table: one row, got {len(rows)}")

    def fields(row: dict[str, str]) -> str:
        return "".join(f"<{k}>{_text(v, cdata)}</{k}>" for k, v in row.items())

    if row_path:
        list_tag, row_tag = row_path
        body = (
            f"<{list_tag}>" + "".join(f"<{row_tag}>{fields(r)}</{row_tag}>" for r in rows) + f"</{list_tag}>"
        )
    else:
        body = fields(rows[0])
    namespaces = f" {XSI_SPACE} {XSD}" if xsi_space else ""
    return (DECLARATION if declaration else b"") + f"<{root}{namespaces}>{body}</{root}>".encode()


def envelope_bytes(
    facility_code: str,
    ngaylap: str,
    hosos: list[dict[str, bytes | str]],
    declared: int | None = None,
    bom: bool = False,
    malformed_xmlns: bool = False,
    doctype: str = "",
) -> bytes:
    """One GIAMDINHHS envelope.

    Each hoso maps LOAIHOSO ("XML1", ...) to the inner XML bytes (base64-encoded here), or to a str
    written verbatim as NOIDUNGFILE (to craft broken base64). `declared` is SOLUONGHOSO (default:
    the number of hosos); `bom` prefixes a UTF-8 byte-order mark; `doctype` is written before the
    root (for entity-declaration tests).
    """
    parts = [
        DECLARATION.decode(),
        doctype,
        f"<GIAMDINHHS {XMLNS_MALFORMED if malformed_xmlns else XMLNS}>",
        f"<THONGTINDONVI><MACSKCB>{escape(facility_code)}</MACSKCB></THONGTINDONVI>",
        f"<THONGTINHOSO><NGAYLAP>{escape(ngaylap)}</NGAYLAP>",
        f"<SOLUONGHOSO>{len(hosos) if declared is None else declared}</SOLUONGHOSO><DANHSACHHOSO>",
    ]
    for hoso in hosos:
        parts.append("<HOSO>")
        for loaihoso, payload in hoso.items():
            content = payload if isinstance(payload, str) else base64.b64encode(payload).decode("ascii")
            parts.append(
                f"<FILEHOSO><LOAIHOSO>{loaihoso}</LOAIHOSO><NOIDUNGFILE>{content}</NOIDUNGFILE></FILEHOSO>"
            )
        parts.append("</HOSO>")
    parts.append("</DANHSACHHOSO></THONGTINHOSO><CHUKYDONVI></CHUKYDONVI></GIAMDINHHS>\n")
    return (b"\xef\xbb\xbf" if bom else b"") + "".join(parts).encode()


BILLION_LAUGHS = (
    '<!DOCTYPE GIAMDINHHS [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10)
    )
    + "]>\n"
)


def broken_base64(payload: bytes) -> str:
    """Base64 text no decoder accepts: a stray non-alphabet run and a length of 4n+1 characters."""
    text = base64.b64encode(payload).decode("ascii").rstrip("=")
    middle = len(text) // 2
    text = text[:middle] + "!#%*" + text[middle + 4 :]
    while len(text.replace("!#%*", "")) % 4 != 1:
        text = text[:-1]
    return text


# ---------------------------------------------------------------------------------------------
# Planning the night
# ---------------------------------------------------------------------------------------------


@dataclass
class FacilityJob:
    """Everything one worker needs to write one facility's files (picklable)."""

    seed: int
    night: dt.date
    night_dir: Path
    facility: Facility
    facility_index: int
    encounters: int
    citizens: int
    forced: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    file_defects: list[str] = field(default_factory=list)
    file_quirks: list[str] = field(default_factory=list)
    self_pay_pool: list[int] = field(default_factory=list)
    twin_pool: list[int] = field(default_factory=list)
    absent_pool: list[int] = field(default_factory=list)
    settings: GeneratorSettings = SETTINGS


def make_facilities(seed: int, count: int) -> list[Facility]:
    """`count` facilities with stable codes ("79012": province 79), names and doctors."""
    rng = random.Random(f"facilities:{seed}")
    provinces = sorted(vocab.PROVINCES)
    weights = [
        sum(w for _, new, w in vocab.BIRTH_PROVINCES if new == p) * (4 if p in ("01", "79") else 1)
        for p in provinces
    ]
    kinds = (
        "Bệnh viện Đa khoa",
        "Trung tâm Y tế",
        "Bệnh viện Nhi",
        "Phòng khám Đa khoa",
        "Bệnh viện Y học cổ truyền",
    )
    out: list[Facility] = []
    used: set[str] = set()
    for k in range(count):
        province = rng.choices(provinces, weights)[0]
        code = f"{province}{rng.randint(1, 999):03d}"
        while code in used:
            code = f"{province}{rng.randint(1, 999):03d}"
        used.add(code)
        mark = vocab.LICENCE_MARKS.get(province, "BYT")
        doctors = tuple(
            (
                f"{rng.randint(1, 99999):06d}/{mark}-CCHN",
                " ".join(
                    (
                        rng.choices([n for n, _ in vocab.FAMILY_NAMES], [w for _, w in vocab.FAMILY_NAMES])[
                            0
                        ],
                        rng.choice(("Văn", "Thị", "Minh", "Thanh", "Ngọc")),
                        rng.choice(
                            [n for n, _ in vocab.GIVEN_NAMES_MALE[:30] + vocab.GIVEN_NAMES_FEMALE[:30]]
                        ),
                    )
                ),
            )
            for _ in range(12)
        )
        place = vocab.PROVINCES[province].replace("Thành phố ", "").replace("Tỉnh ", "")
        out.append(Facility(code, f"{kinds[k % len(kinds)]} {place} {k + 1}", province, doctors))
    return out


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


_FOLD = "lower(strip_accents(replace(replace({x}, 'Đ', 'D'), 'đ', 'd')))"


def _identity_pools(
    registry_dir: Path,
    seed: int,
    citizens: int,
    need_self_pay: int,
    need_twins: int,
    need_absent: int,
    profile: str = "default",
) -> tuple[list[int], list[int], list[int]]:
    """Registry indices of patients whose expected outcome depends on the whole registry.

    - self-pay patients must be uniquely identifiable by demographics: nobody else shares their
      folded family name, last given syllable, sex and birth year (robust to the slips injected);
    - twins: citizens sharing full name, birth date, sex, province and ward with another citizen;
    - absent patients (indices past the snapshot) whose folded key matches nobody in the registry.
    Answered by DuckDB over the Parquet snapshot, out of core."""
    con = duckdb.connect()
    con.execute("set threads to 2")
    con.execute("set preserve_insertion_order = true")
    con.execute("set memory_limit = '1GB'")  # a view over the Parquet files: DuckDB streams and spills
    family = _FOLD.format(x="split_part(full_name, ' ', 1)")
    last = _FOLD.format(x="regexp_extract(full_name, '(\\S+)$', 1)")
    glob = str(registry_dir / "*.parquet")
    con.execute(
        f"""create temp view keyed as
        select citizen_id, {family} as family, {last} as given, sex, substr(birth_date, 1, 4) as birth_year,
               full_name, birth_date, province_code, ward_code, death_date
        from read_parquet('{glob}')"""
    )
    self_pay_ids = [
        r[0]
        for r in con.execute(
            f"""select citizen_id from keyed k
            where death_date is null and ({not _identity_profile(profile).unique_no_id_patients} or
                (family, given, sex, birth_year) in (
                select family, given, sex, birth_year from keyed group by all having count(*) = 1))
            order by substr(citizen_id, 7), citizen_id limit {max(need_self_pay * 3, 10)}"""
        ).fetchall()
    ]
    twin_ids = [
        r[0]
        for r in con.execute(
            f"""select citizen_id from keyed
            where death_date is null and (full_name, birth_date, sex, province_code, ward_code) in (
                select full_name, birth_date, sex, province_code, ward_code from keyed group by all having count(*) > 1)
            order by substr(citizen_id, 7), citizen_id limit {max(need_twins * 2, 4)}"""
        ).fetchall()
    ]
    candidates = np.arange(citizens, min(citizens + max(need_absent * 20, 200), 62_000_000))
    absent = derive_citizens(seed, candidates, profile)
    con.register(
        "absent_people",
        pa.table(
            {
                "k": pa.array(np.arange(len(absent))),
                "full_name": absent.full_name,
                "sex": pa.array(absent.sex.astype(object), type=pa.string()),
                "birth_date": pa.array(absent.birth_date.astype(object), type=pa.string()),
                "dead": pa.array(absent.death_date.astype(object) != ""),
            }
        ),
    )
    absent_keep = [
        r[0]
        for r in con.execute(
            f"""select k from absent_people a where not dead and not exists (
                select 1 from keyed r where r.family = {family.replace("full_name", "a.full_name")}
                and r.given = {last.replace("full_name", "a.full_name")}
                and r.sex = a.sex and r.birth_year = substr(a.birth_date, 1, 4))
            order by k limit {max(need_absent * 2, 4)}"""
        ).fetchall()
    ]
    con.close()
    to_index = [citizen_index_of(seed, cid, citizens, profile) for cid in self_pay_ids + twin_ids]
    self_pay = [i for i in to_index[: len(self_pay_ids)] if i is not None]
    twins = [i for i in to_index[len(self_pay_ids) :] if i is not None]
    return self_pay, twins, [int(candidates[k]) for k in absent_keep]


# ---------------------------------------------------------------------------------------------
# One facility
# ---------------------------------------------------------------------------------------------


def _other_ward(patient: dict[str, object], rng: random.Random) -> str:
    wards = [w for w, _ in vocab.province_wards(str(patient["province_code"])) if w != patient["ward_code"]]
    return rng.choice(wards)


def _typo_id(seed: int, citizen_id: str, citizens: int, rng: random.Random, profile: str = "default") -> str:
    """The citizen ID with one of its 6 random digits mistyped, into an ID nobody in the registry has."""
    for _ in range(50):
        k = rng.randrange(6, 12)
        digit = rng.choice([d for d in "0123456789" if d != citizen_id[k]])
        typo = citizen_id[:k] + digit + citizen_id[k + 1 :]
        if citizen_index_of(seed, typo, citizens, profile) is None:
            return typo
    raise RuntimeError("no free typo")  # pragma: no cover - 50 collisions in a row is impossible here


PATIENT_CANDIDATES = 50_000  # registry citizens a facility draws its patients from


class _PatientSource:
    """Registry citizens to draw regular patients from, mostly living near the facility."""

    def __init__(self, job: FacilityJob, rng: random.Random) -> None:
        n = max(job.encounters, 1)
        # A bounded candidate set (columnar), so a million-encounter night does not hold a
        # million patients; people may come back, as they do.
        size = min(job.citizens, n * 25 + 100, PATIENT_CANDIDATES)
        picks = np.array(sorted({rng.randrange(job.citizens) for _ in range(size)}), dtype=np.int64)
        self._batch = derive_citizens(job.seed, picks, job.settings.identity_profile)
        alive = self._batch.death_date == ""
        local = alive & (self._batch.province_code == job.facility.province_code)
        self._local = np.flatnonzero(local).tolist()
        self._other = np.flatnonzero(alive & ~local).tolist()
        self._rng = rng
        self._share = job.settings.local_patient_share

    def draw(self, need_old_id: bool = False) -> dict[str, object]:
        for _ in range(1000):
            pool = self._local if (self._local and self._rng.random() < self._share) else self._other
            patient = self._batch.row(self._rng.choice(pool))
            if not need_old_id or patient["old_id_number"]:
                return patient
        raise RuntimeError("no patient with an old ID number")  # pragma: no cover


def _plan_encounter(
    job: FacilityJob, k: int, rng: random.Random, patients: _PatientSource, pools: dict[str, list[int]]
) -> EncounterPlan:
    s = job.settings
    forced = job.forced.get(k, [])
    forced_names = {name for _, name in forced}
    visit_type = rng.choices(("01", "02", "03", "04"), s.visit_type_weights)[0]
    if forced_names & set(LATE_DEFECTS) and visit_type not in ("03", "04"):
        visit_type = "03"
    ma_lk = f"{job.night:%y%m%d}{job.facility.code}{k + 1:06d}"

    kind = "regular"
    if "self_pay_no_id" in forced_names or any(t == "self_pay_noise" for t, _ in forced):
        kind = "self_pay"
    elif "indistinguishable_twin" in forced_names:
        kind = "twin"
    elif "not_in_registry" in forced_names:
        kind = "absent"
    elif not forced:
        r = rng.random()
        if r < s.self_pay_rate:
            kind = "self_pay"
        elif r < s.self_pay_rate + s.twin_rate:
            kind = "twin"
        elif r < s.self_pay_rate + s.twin_rate + s.not_in_registry_rate:
            kind = "absent"
    if kind != "regular" and not pools[kind]:
        kind = "regular"  # the registry is too small to hold such a patient

    noise: list[str] = []
    defects: list[str] = []
    if kind == "regular":
        id_noise = [n for n in ID_NOISE if n in forced_names]
        if not id_noise and not forced:
            r, acc = rng.random(), 0.0
            for n in ID_NOISE:
                acc += getattr(s, f"{n}_rate")
                if r < acc:
                    id_noise = [n]
                    break
        name_noise = [n for n in NAME_FORM_NOISE if n in forced_names]
        if not name_noise and not forced:
            r, acc = rng.random(), 0.0
            for n in NAME_FORM_NOISE:
                acc += getattr(s, f"{n}_rate")
                if r < acc:
                    name_noise = [n]
                    break
        noise = id_noise + name_noise
        patient = patients.draw(need_old_id="old_id_in_cccd" in noise)
        if "id_one_digit_typo" in noise:
            patient["_typo_id"] = _typo_id(
                job.seed, str(patient["citizen_id"]), job.citizens, rng, s.identity_profile
            )
        want_swap = "dob_day_month_swapped" in forced_names or (
            not forced and rng.random() < s.dob_day_month_swapped_rate
        )
        if want_swap:
            for _ in range(200):
                if _swappable(patient):
                    noise.append("dob_day_month_swapped")
                    break
                patient = patients.draw(need_old_id="old_id_in_cccd" in noise)
                if "id_one_digit_typo" in noise:
                    patient["_typo_id"] = _typo_id(
                        job.seed, str(patient["citizen_id"]), job.citizens, rng, s.identity_profile
                    )
        blocking = [d for d in BLOCKING_DEFECTS if d in forced_names]
        if not blocking and not forced:
            r, acc = rng.random(), 0.0
            for d in BLOCKING_DEFECTS:
                acc += getattr(s, f"{d}_rate")
                if r < acc:
                    blocking = [d]
                    break
        defects += blocking
        defects += _real_shapes(s, visit_type, blocking, forced_names, bool(forced), rng)
    else:
        pool = pools[kind]
        wanted = [n for t, n in forced if t == "self_pay_noise"]
        if kind == "self_pay" and not wanted and rng.random() < s.self_pay_noise_rate:
            wanted = [rng.choice(SELF_PAY_NOISE)]
        patient = None
        shape = _identity_profile(s.identity_profile)
        if kind == "self_pay" and shape.no_id_noise is not None and not forced:
            # the hard profile: any citizen, each slip independently (draw_no_id_noise)
            patient = derive_citizens(job.seed, np.array([pool[k % len(pool)]]), s.identity_profile).row(0)
            wanted = draw_no_id_noise(shape, patient, rng)
        for attempt in range(len(pool) if patient is None else 0):
            candidate = derive_citizens(
                job.seed, np.array([pool[(k + attempt) % len(pool)]]), s.identity_profile
            ).row(0)
            if kind != "self_pay" or not wanted or _noise_applies(wanted[0], candidate):
                patient = candidate
                break
        if patient is None:
            patient = derive_citizens(job.seed, np.array([pool[k % len(pool)]]), s.identity_profile).row(0)
            wanted = []
        noise = {
            "self_pay": ["self_pay_no_id"],
            "twin": ["indistinguishable_twin"],
            "absent": ["not_in_registry"],
        }[kind]
        noise = noise + wanted
    for q in QUIRKS:
        if q in forced_names or (
            not forced
            and q not in ("old_xml13_names", "no_xml_declaration")
            and rng.random() < getattr(s, f"{q}_rate")
        ):
            defects.append(q)
    has_referral = "old_xml13_names" in defects or rng.random() < s.referral_rate
    if has_referral and "old_xml13_names" not in defects and rng.random() < s.old_xml13_names_rate:
        defects.append("old_xml13_names")
    return EncounterPlan(
        encounter_id=ma_lk,
        visit_type=visit_type,
        patient=patient,
        kind=kind,
        identity_noise=noise,
        defects=defects,
        has_referral=has_referral,
        has_follow_up=rng.random() < s.follow_up_rate,
        is_insured=kind in ("regular", "absent")
        and not (
            kind == "regular"
            and "no_citizen_id" not in noise
            and "id_one_digit_typo" not in noise
            and rng.random() < s.uninsured_rate
        ),
    )


def _real_shapes(
    s: GeneratorSettings,
    visit_type: str,
    blocking: list[str],
    forced_names: set[str],
    any_forced: bool,
    rng: random.Random,
) -> list[str]:
    """The real-night tags of one regular encounter (REAL_EXPORTS.md): late tables of a stay,
    totals drift per relation, the main code's shape. Drawn in a fixed order from `rng`."""
    tags: list[str] = []
    stay = visit_type in ("03", "04")
    late = [d for d in LATE_DEFECTS if d in forced_names]
    r = rng.random()
    if stay and not blocking and not late and not any_forced:
        if r < s.stay_without_both_rate:
            late = list(LATE_DEFECTS)
        elif r < s.stay_without_both_rate + s.stay_without_summary_rate:
            late = ["missing_summary"]
        elif r < s.stay_without_both_rate + s.stay_without_summary_rate + s.stay_without_paper_rate:
            late = ["missing_discharge_paper"]
    tags += late
    broken = [rel for rel in DRIFT_RELATIONS if rng.random() < getattr(s, f"drift_{rel}_rate")]
    if broken:
        tags += ["totals_mismatch", *(f"totals_drift:{rel}" for rel in broken)]
    r = rng.random()
    if "invalid_icd10" not in blocking:
        if stay and "missing_discharge_paper" not in late and r < s.main_code_from_xml7_rate:
            tags.append("main_code_from_xml7")
        elif (r := rng.random()) < s.fifth_char_rate:
            tags.append("icd10_fifth_char")
        elif r < s.fifth_char_rate + s.retired_code_rate:
            tags.append("icd10_retired")
        elif r < s.fifth_char_rate + s.retired_code_rate + s.three_char_rate:
            tags.append("icd10_three_char")
    return tags


def _swappable(patient: dict[str, object]) -> bool:
    birth = str(patient["birth_date"])
    day, month = birth[6:8], birth[4:6]
    return day != "00" and month != "00" and int(day) <= 12 and day != month


def _noise_applies(noise: str, patient: dict[str, object]) -> bool:
    if noise == "dob_day_month_swapped":
        return _swappable(patient)
    if noise == "dropped_middle_name":
        return bool(patient["middle"])
    return True


def _expected(plan: EncounterPlan, file_defect: str | None) -> tuple[str, str | None]:
    if file_defect in ("xml_malformed", "xml_entity_declared"):
        return "rejected_file", file_defect
    for d in BLOCKING_DEFECTS:
        if d in plan.defects:
            return "quarantine", d
    if plan.kind == "absent":
        return "quarantine", "patient_not_in_registry"
    if plan.kind == "twin":
        return "quarantine", "many_match"
    for d in LATE_DEFECTS:  # waits tonight; loads after the grace period (truth: expected_after_grace)
        if d in plan.defects:
            return "quarantine", d
    return "load", None


def _incomplete(defects: list[str]) -> str | None:
    """What a stay lacks ("discharge_paper;summary"), as the book names it; None when complete."""
    names = {"missing_discharge_paper": "discharge_paper", "missing_summary": "summary"}
    missing = [names[d] for d in LATE_DEFECTS if d in defects]
    return ";".join(missing) if missing else None


def _warnings(defects: list[str]) -> list[str]:
    """The warning reasons the issue #15 policy expects (the encounter loads)."""
    out = ["totals_mismatch"] if "totals_mismatch" in defects else []
    return out + [d for d in CODE_SHAPES if d in defects]


def _pack(
    plan: EncounterPlan,
    tables: dict[str, list[dict[str, str]]],
    declaration: bool,
    rng: random.Random,
    xsi_space: bool = False,
) -> dict[str, bytes | str]:
    """The FILEHOSO payloads of one HOSO, envelope-level defects and quirks applied."""
    cdata = "cdata" in plan.defects
    declaration = declaration and "no_xml_declaration" not in plan.defects
    hoso: dict[str, bytes | str] = {}
    for loaihoso in ("XML1", "XML2", "XML3", "XML4", "XML5", "XML7", "XML8", "XML13", "XML14"):
        if loaihoso not in tables or not tables[loaihoso]:
            continue
        if loaihoso == "XML1" and "missing_xml1" in plan.defects:
            continue
        if loaihoso == "XML8" and "missing_summary" in plan.defects:
            continue
        if loaihoso == "XML7" and "missing_discharge_paper" in plan.defects:
            continue
        hoso[loaihoso] = inner_xml(
            loaihoso, tables[loaihoso], cdata=cdata, declaration=declaration, xsi_space=xsi_space
        )
    if "base64_invalid" in plan.defects:
        target = "XML2" if "XML2" in hoso else "XML3"
        hoso[target] = broken_base64(hoso[target])  # type: ignore[arg-type]
    if "unknown_table" in plan.defects:
        extra = rng.choice(tuple(RAW_TABLE_PATHS))
        row = {"MA_LK": plan.encounter_id, "STT": "1", "GHI_CHU": "Dữ liệu bảng " + extra}
        hoso[extra] = inner_xml(extra, [row], declaration=declaration)
    return hoso


def _file_sizes(n: int, rng: random.Random, single_share: float) -> list[int]:
    sizes: list[int] = []
    left = n
    while left > 0:
        size = 1 if rng.random() < single_share else min(left, rng.randint(50, 200))
        sizes.append(size)
        left -= size
    return sizes


def build_facility(job: FacilityJob) -> tuple[list[dict], list[dict], list[dict]]:
    """Write one facility's envelope files (and its late tables on later nights); return its truth
    rows (encounters, files, late re-sends)."""
    rng = random.Random(f"{job.seed}:{job.facility_index}:{job.night.isoformat()}")
    style_rng = random.Random(f"style:{job.seed}:{job.facility_index}")
    s = job.settings
    declaration = style_rng.random() >= s.no_declaration_rate
    bom = "bom" in job.file_quirks or style_rng.random() < s.bom_rate
    malformed_xmlns = "malformed_xmlns" in job.file_quirks or style_rng.random() < s.malformed_xmlns_rate
    patients = _PatientSource(job, rng)
    pools = {"self_pay": job.self_pay_pool, "twin": job.twin_pool, "absent": job.absent_pool}
    plans = [_plan_encounter(job, k, rng, patients, pools) for k in range(job.encounters)]
    if not declaration:
        for plan in plans:
            plan.defects.append("no_xml_declaration")

    # Special files take plain encounters (no forced kind), cleaned of every defect and noise.
    plain = [k for k in range(job.encounters) if k not in job.forced]
    files: list[tuple[str | None, list[int]]] = []
    for defect in job.file_defects:
        take = 3 if defect != "declared_count_mismatch" else min(len(plain), 5)
        ks, plain = plain[:take], plain[take:]
        for k in ks:
            if defect != "declared_count_mismatch":
                plans[k].defects = [d for d in plans[k].defects if d == "no_xml_declaration"]
                plans[k].identity_noise = []
                plans[k].kind = "regular"
                plans[k].patient = patients.draw()
        files.append((defect, ks))
    taken = {k for _, ks in files for k in ks}
    rest = [k for k in range(job.encounters) if k not in taken]
    start = 0
    for size in _file_sizes(len(rest), rng, s.single_file_share):
        files.append((None, rest[start : start + size]))
        start += size
    # Re-sends: a corrected copy of some loaded encounters in the facility's last file of the night.
    normal = [k for d, ks in files if d in (None, "declared_count_mismatch") for k in ks]
    resend = [k for k in normal if any(n == "resend" for _, n in job.forced.get(k, []))]
    resend += [k for k in normal if k not in job.forced and rng.random() < s.resend_rate]
    if resend:
        files.append(("resend", sorted(set(resend))))

    province_dir = job.night_dir / job.facility.province_code / job.facility.code
    province_dir.mkdir(parents=True, exist_ok=True)
    encounter_rows: list[dict] = []
    file_rows: list[dict] = []
    late_rows: list[dict] = []
    versions: dict[int, int] = {}
    ngaylap = f"{job.night:%Y%m%d}"
    for seq, (defect, ks) in enumerate(files, start=1):
        name = f"{job.facility.code}_{ngaylap}_{seq:04d}.xml"
        xsi_space = rng.random() < s.xsi_space_rate
        hosos = []
        built = []
        for hoso_index, k in enumerate(ks):
            plan = plans[k]
            if defect == "resend":
                plan = dataclasses.replace(
                    plan,
                    defects=[d for d in plan.defects if d not in BLOCKING_DEFECTS + LATE_DEFECTS]
                    + ["resend"],
                )
            tables = build_tables(
                plan, job.night, job.facility, rng, hoso_index + 1, _other_ward(plan.patient, rng)
            )
            hosos.append(_pack(plan, tables, declaration, rng, xsi_space))
            built.append((k, plan, tables))
        if len(ks) == 1 and defect is None:  # a real night's one-encounter file: <MA_BN>_<MA_LK>.xml
            name = f"{built[0][2]['XML1'][0]['MA_BN']}_{built[0][1].encounter_id}.xml"
        elif defect == "resend":
            # named like the real batch-named files (QD130_<facility>_<yyyymm>_<stamp>): after every
            # "BN..." one-encounter file, so the re-send is the newer version (versions follow names)
            name = f"QD130_{job.facility.code}_{job.night:%Y%m}_{ngaylap}{seq:04d}.xml"
        rel = f"{job.facility.province_code}/{job.facility.code}/{name}"
        for hoso_index, (k, plan, tables) in enumerate(built):
            versions[k] = versions.get(k, 0) + 1
            outcome, reason = _expected(plan, defect)
            late = _late_resend(job, plan, tables, defect, declaration, bom, rng)
            if late is not None:
                late_rows.append(late)
            after_grace = "load" if outcome == "quarantine" and reason in LATE_DEFECTS else outcome
            encounter_rows.append(
                {
                    "facility_code": job.facility.code,
                    "encounter_id": plan.encounter_id,
                    "version": versions[k],
                    "source_file": rel,
                    "hoso_index": hoso_index,
                    "visit_type": plan.visit_type,
                    "citizen_id": None if plan.kind == "absent" else str(plan.patient["citizen_id"]),
                    "identity_noise": list(plan.identity_noise),
                    "defects": list(plan.defects),
                    "is_superseded": False,
                    "expected_outcome": outcome,
                    "expected_reason": reason,
                    # issue #15: what must hold after the grace period (late tables), the warning
                    # reasons the checks policy expects, what the stay lacks if nothing arrives
                    "expected_after_grace": after_grace,
                    "warnings": _warnings(plan.defects) if outcome != "rejected_file" else [],
                    "expected_incomplete": _incomplete(plan.defects)
                    if after_grace == "load" and late is None
                    else None,
                    "late_resend_night": late["night"] if late is not None else None,
                    "_k": k,
                    "_presented": plan.patient.get("_presented") if plan.kind == "self_pay" else None,
                }
            )
        declared = len(hosos) + (rng.choice((-1, 1, 2)) if defect == "declared_count_mismatch" else 0)
        if defect == "declared_count_mismatch" and declared < 0:
            declared = len(hosos) + 1
        data = envelope_bytes(
            job.facility.code,
            ngaylap,
            hosos,
            declared=declared,
            bom=bom,
            malformed_xmlns=malformed_xmlns,
            doctype=BILLION_LAUGHS if defect == "xml_entity_declared" else "",
        )
        if defect == "xml_entity_declared":
            data = data.replace(b"<CHUKYDONVI></CHUKYDONVI>", b"<CHUKYDONVI>&lol9;</CHUKYDONVI>")
        if defect == "xml_malformed":
            data = data[: int(len(data) * 0.6)]
        (province_dir / name).write_bytes(data)
        file_rows.append(
            {
                "source_file": rel,
                "facility_code": job.facility.code,
                "declared": declared,
                "hoso_written": len(hosos),
                "file_defect": defect if defect in FILE_DEFECTS else None,
                "has_bom": bom,
                "has_malformed_xmlns": malformed_xmlns,
            }
        )
    last_version = {}
    for row in encounter_rows:
        last_version[row["_k"]] = max(last_version.get(row["_k"], 0), row["version"])
    for row in encounter_rows:
        row["is_superseded"] = row["version"] < last_version[row.pop("_k")]
    return encounter_rows, file_rows, late_rows


def _late_resend(
    job: FacilityJob,
    plan: EncounterPlan,
    tables: dict[str, list[dict[str, str]]],
    defect: str | None,
    declaration: bool,
    bom: bool,
    rng: random.Random,
) -> dict | None:
    """For a stay sent without XML7/XML8: maybe write its late tables on a later night (D+1..D+3),
    alone in a HOSO without XML1 (a partial re-send) or in a full re-send; its truth row."""
    missing = [d for d in LATE_DEFECTS if d in plan.defects]
    if not missing or defect is not None or rng.random() >= job.settings.late_resend_rate:
        return None
    offset = rng.choice((1, 1, 2, 3))
    full = rng.random() < job.settings.late_full_resend_share
    wanted = {"missing_discharge_paper": "XML7", "missing_summary": "XML8"}
    only = None if full else {wanted[d] for d in missing}
    complete = dataclasses.replace(plan, defects=[d for d in plan.defects if d not in LATE_DEFECTS])
    hoso = _pack(complete, tables, declaration, rng)
    if only is not None:
        hoso = {t: payload for t, payload in hoso.items() if t in only}
    night = job.night + dt.timedelta(days=offset)
    folder = job.night_dir.parent / night.isoformat() / job.facility.province_code / job.facility.code
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{tables['XML1'][0]['MA_BN']}_{plan.encounter_id}.xml"
    (folder / name).write_bytes(envelope_bytes(job.facility.code, f"{night:%Y%m%d}", [hoso], bom=bom))
    return {
        "facility_code": job.facility.code,
        "encounter_id": plan.encounter_id,
        "night": night,
        "source_file": f"{job.facility.province_code}/{job.facility.code}/{name}",
        "kind": "full" if full else "partial",
        "tables": sorted(hoso),
        "expected_outcome": "load",
    }


# ---------------------------------------------------------------------------------------------
# FHIR
# ---------------------------------------------------------------------------------------------


def _resource_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def write_fhir(
    night_dir: Path,
    seed: int,
    night: dt.date,
    citizens: int,
    encounters: int,
    facilities: list[Facility],
    settings: GeneratorSettings = SETTINGS,
) -> list[dict]:
    """Write the night's FHIR NDJSON files; return one truth row per line."""
    rng = random.Random(f"fhir:{seed}:{night.isoformat()}")
    fhir_dir = night_dir / "fhir"
    fhir_dir.mkdir(parents=True, exist_ok=True)
    n_imm = max(10, int(encounters * settings.immunizations_per_encounter))
    n_all = max(6, int(encounters * settings.allergies_per_encounter))
    picks = np.array(
        sorted({rng.randrange(citizens) for _ in range(min(citizens, (n_imm + n_all) * 3))}), dtype=np.int64
    )
    batch = derive_citizens(seed, picks, settings.identity_profile)
    alive = [batch.row(k) for k in np.flatnonzero(batch.death_date == "")]
    children = [p for p in alive if night.year - int(p["birth_year"]) <= 6] or alive
    ref = dt.datetime.combine(night, dt.time(9, 0))

    def immunization(rid: str, patient: dict, status: str) -> dict:
        system, code, display, schedule = rng.choice(vocab.VACCINES)
        dose = rng.randrange(len(schedule)) + 1
        facility = rng.choice(facilities)
        return {
            "resourceType": "Immunization",
            "id": rid,
            "status": status,
            "vaccineCode": {"coding": [{"system": system, "code": code, "display": display}]},
            "patient": {"identifier": {"system": "urn:vn:cccd", "value": patient["citizen_id"]}},
            "occurrenceDateTime": (
                ref - dt.timedelta(days=rng.randint(0, 3), minutes=rng.randint(0, 480))
            ).strftime("%Y-%m-%dT%H:%M:00+07:00"),
            "lotNumber": f"{rng.choice(vocab.VACCINE_LOT_PREFIXES)}{rng.randint(10000, 99999)}",
            "performer": [
                {
                    "actor": {
                        "identifier": {"system": "urn:vn:cskcb", "value": facility.code},
                        "display": facility.name,
                    }
                }
            ],
            "protocolApplied": [{"doseNumberPositiveInt": dose}],
        }

    def allergy(rid: str, patient: dict, verification: str) -> dict:
        system, code, display, category = rng.choice(vocab.ALLERGENS)
        r_system, r_code, r_display = rng.choice(vocab.REACTIONS)
        severity = "severe" if r_code == "39579001" else rng.choice(("mild", "moderate"))
        return {
            "resourceType": "AllergyIntolerance",
            "id": rid,
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "code": "active",
                    }
                ]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                        "code": verification,
                    }
                ]
            },
            "category": [category],
            "criticality": "high" if severity == "severe" else "low",
            "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "patient": {"identifier": {"system": "urn:vn:cccd", "value": patient["citizen_id"]}},
            "recordedDate": (ref - dt.timedelta(days=rng.randint(0, 2))).strftime("%Y-%m-%d"),
            "reaction": [
                {
                    "manifestation": [
                        {"coding": [{"system": r_system, "code": r_code, "display": r_display}]}
                    ],
                    "severity": severity,
                }
            ],
        }

    first: dict[str, list[dict]] = {"Immunization": [], "AllergyIntolerance": []}
    for _ in range(n_imm):
        status = "entered-in-error" if rng.random() < settings.fhir_removed_rate else "completed"
        first["Immunization"].append(
            immunization(_resource_id(rng), rng.choice(children if rng.random() < 0.8 else alive), status)
        )
    for _ in range(n_all):
        verification = "refuted" if rng.random() < settings.fhir_removed_rate else "confirmed"
        first["AllergyIntolerance"].append(allergy(_resource_id(rng), rng.choice(alive), verification))
    # A later file: corrected copies (same id) of some resources, some withdrawn, and one foreign line.
    later: list[dict] = []
    for rtype, resources in first.items():
        chosen = [r for r in resources if rng.random() < settings.fhir_replaced_rate] or resources[:1]
        for r in chosen:
            patient_id = r["patient"]["identifier"]["value"]
            p = {"citizen_id": patient_id}
            if rtype == "Immunization":
                later.append(
                    immunization(r["id"], p, "entered-in-error" if rng.random() < 0.3 else "completed")
                )
            else:
                later.append(allergy(r["id"], p, "entered-in-error" if rng.random() < 0.3 else "confirmed"))
    later.append(
        {
            "resourceType": "Patient",
            "id": _resource_id(rng),
            "identifier": [{"system": "urn:vn:cccd", "value": alive[0]["citizen_id"]}],
        }
    )

    files = [
        ("Immunization-0001.ndjson", first["Immunization"]),
        ("AllergyIntolerance-0001.ndjson", first["AllergyIntolerance"]),
        ("Bundle-0002.ndjson", later),
    ]
    last_line: dict[str, tuple[str, int]] = {}
    rows: list[dict] = []
    for name, resources in files:
        lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in resources]
        (fhir_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        for n, r in enumerate(resources, start=1):
            rows.append(
                {
                    "source_file": f"fhir/{name}",
                    "line_number": n,
                    "resource_type": r["resourceType"],
                    "resource_id": r["id"],
                    "citizen_id": r["patient"]["identifier"]["value"]
                    if "patient" in r
                    else r["identifier"][0]["value"],
                    "_resource": r,
                }
            )
            last_line[r["id"]] = (f"fhir/{name}", n)
    for row in rows:
        r = row.pop("_resource")
        if row["resource_type"] not in ("Immunization", "AllergyIntolerance"):
            row["expected"] = "skipped"
        elif last_line[row["resource_id"]] != (row["source_file"], row["line_number"]):
            row["expected"] = "replaced"
        elif r.get("status") == "entered-in-error" or r.get("verificationStatus", {}).get("coding", [{}])[
            0
        ].get("code") in ("refuted", "entered-in-error"):
            row["expected"] = "removed"
        else:
            row["expected"] = "load"
    return rows


# ---------------------------------------------------------------------------------------------
# The night
# ---------------------------------------------------------------------------------------------

ENCOUNTER_TRUTH_SCHEMA = pa.schema(
    [
        ("facility_code", pa.string()),
        ("encounter_id", pa.string()),
        ("version", pa.int64()),
        ("source_file", pa.string()),
        ("hoso_index", pa.int64()),
        ("visit_type", pa.string()),
        ("citizen_id", pa.string()),
        ("identity_noise", pa.list_(pa.string())),
        ("defects", pa.list_(pa.string())),
        ("is_superseded", pa.bool_()),
        ("expected_outcome", pa.string()),
        ("expected_reason", pa.string()),
        # issue #15 (additions): the outcome once the grace period is over (a stay waiting for
        # XML7/XML8 loads), the warning reasons it must raise, what it lacks when published
        # incomplete ("discharge_paper;summary"), the night its late tables arrive
        ("expected_after_grace", pa.string()),
        ("warnings", pa.list_(pa.string())),
        ("expected_incomplete", pa.string()),
        ("late_resend_night", pa.date32()),
    ]
)
FILE_TRUTH_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("facility_code", pa.string()),
        ("declared", pa.int64()),
        ("hoso_written", pa.int64()),
        ("file_defect", pa.string()),
        ("has_bom", pa.bool_()),
        ("has_malformed_xmlns", pa.bool_()),
    ]
)
LATE_TRUTH_SCHEMA = pa.schema(
    [
        ("facility_code", pa.string()),
        ("encounter_id", pa.string()),
        ("night", pa.date32()),  # the later night whose extracts folder holds the re-send
        ("source_file", pa.string()),
        ("kind", pa.string()),  # partial (XML7/XML8 alone) | full
        ("tables", pa.list_(pa.string())),
        ("expected_outcome", pa.string()),  # load: completes the stay as a new version
    ]
)
FHIR_TRUTH_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
        ("resource_type", pa.string()),
        ("resource_id", pa.string()),
        ("citizen_id", pa.string()),
        ("expected", pa.string()),
    ]
)


def _assign_guarantees(
    rng: random.Random, counts: list[int], settings: GeneratorSettings
) -> tuple[list[dict[int, list[tuple[str, str]]]], list[list[str]], list[list[str]]]:
    """Which encounter slot of which facility carries each guaranteed kind, and which facility
    writes each special file."""
    forced: list[dict[int, list[tuple[str, str]]]] = [{} for _ in counts]
    file_defects: list[list[str]] = [[] for _ in counts]
    file_quirks: list[list[str]] = [[] for _ in counts]
    total = sum(counts)
    if total < settings.guarantee_from_encounters:
        return forced, file_defects, file_quirks
    slots = [(f, k) for f, n in enumerate(counts) for k in range(n)]
    # keep the first slots of each facility free: special files take plain encounters from the front
    slots = [(f, k) for f, k in slots if k >= 12]
    chosen = rng.sample(slots, len(GUARANTEED))
    for (f, k), kind in zip(chosen, GUARANTEED, strict=True):
        forced[f].setdefault(k, []).append(kind)
    for j, defect in enumerate(FILE_DEFECTS):
        file_defects[j % len(counts)].append(defect)
    for j, quirk in enumerate(FILE_QUIRKS):
        file_quirks[(j + 1) % len(counts)].append(quirk)
    return forced, file_defects, file_quirks


def generate_night(
    out: Path,
    night: dt.date,
    facilities: int = 10,
    encounters: int = 1000,
    citizens: int = 20000,
    seed: int = 42,
    settings: GeneratorSettings = SETTINGS,
    workers: int | None = None,
    identity_profile: str | None = None,
) -> dict:
    """Write one synthetic night under `out` (layout in the module docstring); return the summary
    (also written to truth/summary.json). `identity_profile="hard"` makes the night of issue #18
    (generate_citizens.IDENTITY_PROFILES): namesakes in the registry, 10% of patients with no ID."""
    if identity_profile is not None:
        shape = _identity_profile(identity_profile)
        settings = dataclasses.replace(
            settings, identity_profile=identity_profile, self_pay_rate=shape.self_pay_rate
        )
    if facilities < 1 or encounters < 0 or citizens < 100:
        raise ValueError("need at least 1 facility and 100 citizens")
    out = Path(out)
    night_dir = out / "extracts" / night.isoformat()
    if night_dir.exists():
        shutil.rmtree(night_dir)  # a re-generated night replaces the old one, no stale files
    night_dir.mkdir(parents=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    registry_dir = out / "registry"
    for old in registry_dir.glob("part-*.parquet"):
        old.unlink()
    registry_files = write_registry(registry_dir, seed, citizens, profile=settings.identity_profile)

    rng = random.Random(f"night:{seed}:{night.isoformat()}")
    sites = make_facilities(seed, facilities)
    counts = _split(encounters, facilities)
    forced, file_defects, file_quirks = _assign_guarantees(rng, counts, settings)
    need = max(encounters, 1)
    self_pay, twins, absent = _identity_pools(
        registry_dir,
        seed,
        citizens,
        int(need * settings.self_pay_rate) + 4,
        int(need * settings.twin_rate) + 2,
        int(need * settings.not_in_registry_rate) + 4,
        settings.identity_profile,
    )
    jobs = [
        FacilityJob(
            seed=seed,
            night=night,
            night_dir=night_dir,
            facility=site,
            facility_index=f,
            encounters=counts[f],
            citizens=citizens,
            forced=forced[f],
            file_defects=file_defects[f],
            file_quirks=file_quirks[f],
            self_pay_pool=self_pay[f::facilities] or self_pay,
            twin_pool=twins,
            absent_pool=absent[f::facilities] or absent,
            settings=settings,
        )
        for f, site in enumerate(sites)
    ]
    if workers is None:
        workers = 2 if encounters >= settings.parallel_from_encounters and facilities > 1 else 1
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = list(pool.map(build_facility, jobs))
    else:
        results = [build_facility(job) for job in jobs]
    encounter_rows = [row for rows, _, _ in results for row in rows]
    file_rows = [row for _, rows, _ in results for row in rows]
    late_rows = [row for _, _, rows in results for row in rows]
    fhir_rows = write_fhir(night_dir, seed, night, citizens, encounters, sites, settings)
    _mark_non_separable(registry_dir, encounter_rows)

    pq.write_table(
        pa.Table.from_pylist(encounter_rows, schema=ENCOUNTER_TRUTH_SCHEMA),
        out / "truth" / "encounters.parquet",
        compression="zstd",
    )
    pq.write_table(
        pa.Table.from_pylist(file_rows, schema=FILE_TRUTH_SCHEMA),
        out / "truth" / "files.parquet",
        compression="zstd",
    )
    pq.write_table(
        pa.Table.from_pylist(fhir_rows, schema=FHIR_TRUTH_SCHEMA),
        out / "truth" / "fhir.parquet",
        compression="zstd",
    )
    pq.write_table(
        pa.Table.from_pylist(late_rows, schema=LATE_TRUTH_SCHEMA),
        out / "truth" / "late_resends.parquet",
        compression="zstd",
    )

    def count(values: list[str]) -> dict[str, int]:
        out_counts: dict[str, int] = {}
        for v in values:
            out_counts[v] = out_counts.get(v, 0) + 1
        return dict(sorted(out_counts.items()))

    summary = {
        "arguments": {
            "date": night.isoformat(),
            "facilities": facilities,
            "encounters": encounters,
            "citizens": citizens,
            "seed": seed,
        },
        "seed": seed,
        "settings": dataclasses.asdict(settings),
        "facilities": [{"code": s.code, "name": s.name, "province_code": s.province_code} for s in sites],
        "registry_rows": citizens,
        "registry_files": [p.relative_to(out).as_posix() for p in registry_files],
        "files": len(file_rows),
        "hoso_written": len(encounter_rows),
        "encounters_planned": encounters,
        "declared": sum(r["declared"] for r in file_rows),
        "expected_outcome": count([r["expected_outcome"] for r in encounter_rows]),
        "expected_reason": count([r["expected_reason"] for r in encounter_rows if r["expected_reason"]]),
        "defects": count([d for r in encounter_rows for d in r["defects"]]),
        "identity_noise": count([n for r in encounter_rows for n in r["identity_noise"]]),
        "file_defects": count([r["file_defect"] for r in file_rows if r["file_defect"]]),
        "files_with_bom": sum(r["has_bom"] for r in file_rows),
        "files_with_malformed_xmlns": sum(r["has_malformed_xmlns"] for r in file_rows),
        "visit_types": count([r["visit_type"] for r in encounter_rows]),
        "fhir_lines": len(fhir_rows),
        "fhir_expected": count([r["expected"] for r in fhir_rows]),
        "fhir_resource_types": count([r["resource_type"] for r in fhir_rows]),
        "late_resends": count([f"{r['night']}:{r['kind']}" for r in late_rows]),
        "warnings": count([w for r in encounter_rows for w in r["warnings"]]),
    }
    (out / "truth" / "summary.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return summary


def _mark_non_separable(registry_dir: Path, encounter_rows: list[dict]) -> None:
    """Patients with no ID whose record another citizen fits as well as they do: the truth is
    `many_match` (noise `non_separable`), whatever the slips were. Drops the `_presented` helper."""
    presented = []
    for key, row in enumerate(encounter_rows):
        shown = row.pop("_presented", None)
        if shown is not None and row["expected_outcome"] == "load":
            presented.append({"key": key, "citizen_id": row["citizen_id"], **shown})
    for key in non_separable_records(registry_dir, presented):
        row = encounter_rows[key]
        row["identity_noise"] = [*row["identity_noise"], "non_separable"]
        row["expected_outcome"], row["expected_reason"] = "quarantine", "many_match"


def yesterday_utc() -> dt.date:
    """The default night: yesterday in UTC."""
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


__all__ = [
    "GeneratorSettings",
    "SETTINGS",
    "envelope_bytes",
    "generate_night",
    "inner_xml",
    "yesterday_utc",
]
