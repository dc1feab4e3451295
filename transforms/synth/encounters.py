"""The clinical content of one synthetic encounter: the rows of its XML 130 tables.

`build_tables` turns an encounter plan (visit type, the patient as presented, the injected defects
and quirks) into raw rows, field name -> text, for every table the encounter carries, with every
field of the 3176 annex present in the annex's order (empty when a hospital would leave it empty).

Conventions of the generated data (documented so tests and the pipeline agree):
- money is computed in whole cents and written with at most 2 decimals, quantities with at most 3;
  every line: THANH_TIEN_BV = SO_LUONG * DON_GIA (rounded to 2 decimals), THANH_TIEN_BH =
  THANH_TIEN_BV * TYLE_TT_BH / 100, T_BHTT = THANH_TIEN_BH * MUC_HUONG / 100, T_BNCCT =
  THANH_TIEN_BH - T_BHTT, T_BNTT = THANH_TIEN_BV - THANH_TIEN_BH, T_NGUONKHAC = 0;
- XML1: T_THUOC = Σ XML2 THANH_TIEN_BV; T_VTYT = Σ XML3 THANH_TIEN_BV of supply lines (MA_VAT_TU
  set); T_TONGCHI_BV = Σ THANH_TIEN_BV over XML2 and XML3; T_TONGCHI_BH, T_BNTT, T_BNCCT,
  T_NGUONKHAC the same sums of their line fields; T_BHTT = T_TONGCHI_BH - T_BNCCT; T_BHTT_GDV =
  Σ T_BHTT of lines paid by fee-for-service (MA_PTTT "1", every line here);
- weight: XML1 CAN_NANG (kg, 2 decimals at most); height: XML1 DU_PHONG in cm as 3176 asks ("Ghi
  thông tin chiều cao của người bệnh (đơn vị cm)"), and for inpatient and day-care stays also an
  XML4 row MA_CHI_SO "CHIEU_CAO" (unit cm) as hospital information systems send vital signs;
- uninsured self-pay patients: no card, MA_DOITUONG_KCB "9", MUC_HUONG 0, TYLE_TT_BH 0 (all paid
  by the patient: T_BNTT = THANH_TIEN_BV).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from transforms.core import schema
from transforms.synth import vocab

NULL_TOKENS = ("NaN", "null", "undefined")
OLD_XML13_NAMES = {"MA_CSKCB_DI": "MA_NOI_DI", "MA_CSKCB_DEN": "MA_NOI_DEN", "TINH_TRANG_CT": "PP_DIEU_TRI"}
_FIELDS: dict[str, list[str]] = {}


def table_fields(loaihoso: str) -> list[str]:
    """Every field of one table in the order of the 3176 annex."""
    if not _FIELDS:
        for row in schema.spec_fields():
            _FIELDS.setdefault(row["table"], []).append(row["field"])
    return _FIELDS[loaihoso]


@dataclass(frozen=True)
class Facility:
    code: str  # 5 characters, first 2 = province
    name: str
    province_code: str
    doctors: tuple[tuple[str, str], ...]  # (licence code "000123/HCM-CCHN", name)


@dataclass
class EncounterPlan:
    """What one encounter will be: decided before its content is drawn."""

    encounter_id: str
    visit_type: str  # "01".."04"
    patient: dict[str, object]  # the true citizen (generate_citizens.Citizens.row)
    kind: str = "regular"  # regular | self_pay | twin | absent
    identity_noise: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)  # blocking defects and quirks (tags of the truth)
    has_referral: bool = False
    has_follow_up: bool = False
    is_insured: bool = True


def _money(cents: int) -> str:
    """Cents -> text with at most 2 decimals ("50600", "1234.5", "12.34")."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:02d}".rstrip("0")


def _qty(milli: int) -> str:
    whole, frac = divmod(milli, 1000)
    return f"{whole}" if frac == 0 else f"{whole}.{frac:03d}".rstrip("0")


def _instant(t: dt.datetime) -> str:
    return t.strftime("%Y%m%d%H%M")


def _day(d: dt.date) -> str:
    return d.strftime("%Y%m%d")


def _line_amounts(qty_milli: int, price_vnd: int, rate_pct: int, benefit_pct: int) -> dict[str, int]:
    """The money of one line in cents, by the 3176 formulas (no other funding source)."""
    bv = (qty_milli * price_vnd * 100 + 500) // 1000
    bh = (bv * rate_pct + 50) // 100
    bhtt = (bh * benefit_pct + 50) // 100
    return {"bv": bv, "bh": bh, "bhtt": bhtt, "bncct": bh - bhtt, "bntt": bv - bh}


def _empty(loaihoso: str) -> dict[str, str]:
    return dict.fromkeys(table_fields(loaihoso), "")


def _card(
    patient: dict[str, object], night: dt.date, rng: random.Random, facility: Facility
) -> dict[str, str]:
    age = night.year - int(patient["birth_year"])
    if age < 6:
        group = "TE"
    elif age < 18:
        group = "HS"
    elif age >= 60 and rng.random() < 0.6:
        group = "HT"
    else:
        groups = [g for g, _ in vocab.CARD_GROUPS if g not in ("TE", "HS", "HT")]
        group = rng.choices(groups, [w for g, w in vocab.CARD_GROUPS if g in groups])[0]
    level = vocab.CARD_LEVEL[group]
    sin = str(patient["social_insurance_number"])
    valid_from = dt.date(night.year if night.month > 6 else night.year - 1, 7 if night.month <= 6 else 1, 1)
    valid_to = dt.date(valid_from.year + 1, valid_from.month, 1) - dt.timedelta(days=1)
    return {
        "MA_THE_BHYT": f"{group}{level}{sin[:2]}{sin}",
        "MA_DKBD": facility.code,
        "GT_THE_TU": _day(valid_from),
        "GT_THE_DEN": _day(valid_to),
        "level": level,
    }


def _address(patient: dict[str, object], ward_code: str, province_code: str, rng: random.Random) -> str:
    wards = dict(vocab.province_wards(province_code))
    ward = wards.get(ward_code, "")
    if rng.random() < 0.5:
        street = f"Số {rng.randint(1, 250)} đường {rng.choice(vocab.STREETS)}"
    else:
        street = rng.choice(vocab.HAMLETS)
    return f"{street}, {ward}, {vocab.PROVINCES[province_code]}"


def _typo(word: str, rng: random.Random) -> str:
    """A keyboard slip that makes no other real name: swap two letters, or double one."""
    known = {vocab.strip_accents(n).lower() for n, _ in vocab.GIVEN_NAMES_MALE + vocab.GIVEN_NAMES_FEMALE}
    for _ in range(10):
        if len(word) >= 3 and rng.random() < 0.6:
            k = rng.randrange(1, len(word) - 1)
            candidate = word[:k] + word[k + 1] + word[k] + word[k + 2 :]
        else:
            k = rng.randrange(1, len(word))
            candidate = word[:k] + word[k] + word[k:]
        if candidate != word and vocab.strip_accents(candidate).lower() not in known:
            return candidate
    return word + word[-1]


def present_patient(
    plan: EncounterPlan, night: dt.date, facility: Facility, rng: random.Random, other_ward: str
) -> dict[str, str]:
    """The XML1 identity fields as the hospital typed them (with the plan's identity noise)."""
    p = plan.patient
    noise = set(plan.identity_noise)
    family, middle, given = str(p["family"]), str(p["middle"]), str(p["given"])
    if "name_typo" in noise:
        given = " ".join(given.split()[:-1] + [_typo(given.split()[-1], rng)])
    if "dropped_middle_name" in noise:
        middle = ""
    name = " ".join(x for x in (family, middle, given) if x)
    if "name_upper" in noise:
        name = name.upper()
    elif "name_unaccented" in noise:
        name = vocab.strip_accents(name)
    elif "name_nfd" in noise:
        import unicodedata

        name = unicodedata.normalize("NFD", name)
    birth = str(p["birth_date"])
    if "dob_day_month_swapped" in noise:
        birth = birth[:4] + birth[6:8] + birth[4:6]
    if "birth_year_only" in noise:
        birth = birth[:4] + "0000"
    ward, province = str(p["ward_code"]), str(p["province_code"])
    if "moved_ward" in noise:
        ward = other_ward
    if "moved_province" in noise:
        province = rng.choice([c for c in sorted(vocab.PROVINCES) if c != province])
        ward = rng.choice(vocab.province_wards(province))[0]
    # what the record says, for the generator's identity truth (generate_citizens.non_separable_records)
    p["_presented"] = {
        "name": name,
        "birth": birth,
        "sex": str(p["sex"]),
        "province_code": province,
        "ward_code": ward,
    }
    out = {
        "HO_TEN": name,
        "NGAY_SINH": birth + "0000",
        "GIOI_TINH": str(p["sex"]),
        "MA_QUOCTICH": vocab.NATIONALITY_VN,
        "MA_DANTOC": str(p["ethnicity_code"]),
        "MA_NGHE_NGHIEP": str(p["occupation_code"]),
        "DIA_CHI": _address(p, ward, province, rng),
        "MATINH_CU_TRU": province,
        "MAHUYEN_CU_TRU": "",  # districts were abolished in 2025
        "MAXA_CU_TRU": ward,
        "NHOM_MAU": str(p["blood_group"]) if rng.random() < 0.3 else "",
        "DIEN_THOAI": f"0{rng.choice('3579')}{rng.randrange(10**7, 10**8)}" if rng.random() < 0.6 else "",
        "SO_CCCD": str(p["citizen_id"]),
        "MA_THE_BHYT": "",
        "MA_DKBD": "",
        "GT_THE_TU": "",
        "GT_THE_DEN": "",
    }
    if plan.is_insured:
        card = _card(p, night, rng, facility)
        out.update({k: v for k, v in card.items() if k != "level"})
        out["_level"] = card["level"]
    if "no_citizen_id" in noise or plan.kind in ("self_pay", "twin"):
        out["SO_CCCD"] = ""
    elif "sin_in_cccd" in noise:
        out["SO_CCCD"] = str(p["social_insurance_number"])
    elif "old_id_in_cccd" in noise:
        out["SO_CCCD"] = str(p["old_id_number"])
    elif "id_one_digit_typo" in noise:
        out["SO_CCCD"] = str(p["_typo_id"])
    return out


def _times(
    plan: EncounterPlan, night: dt.date, rng: random.Random
) -> tuple[dt.datetime, dt.datetime | None, dt.datetime]:
    day = dt.datetime.combine(night, dt.time())
    if plan.visit_type == "01":
        start = day + dt.timedelta(minutes=rng.randint(7 * 60, 15 * 60))
        return start, None, start + dt.timedelta(minutes=rng.randint(20, 180))
    end = day + dt.timedelta(minutes=rng.randint(8 * 60, 16 * 60))
    if plan.visit_type == "02":
        start = (
            day - dt.timedelta(days=rng.randint(0, 10)) + dt.timedelta(minutes=rng.randint(7 * 60, 11 * 60))
        )
        return start, None, max(end, start + dt.timedelta(minutes=30))
    if plan.visit_type == "03":
        start = day - dt.timedelta(days=rng.randint(1, 12)) + dt.timedelta(minutes=rng.randint(0, 23 * 60))
        return start, start + dt.timedelta(minutes=rng.randint(30, 180)), end
    start = day - dt.timedelta(days=rng.randint(0, 5)) + dt.timedelta(minutes=rng.randint(7 * 60, 9 * 60))
    return start, start + dt.timedelta(minutes=rng.randint(15, 60)), max(end, start + dt.timedelta(hours=3))


def _pick_diagnoses(plan: EncounterPlan, rng: random.Random) -> list[vocab.Diagnosis]:
    inpatient = plan.visit_type in ("03", "04")
    pool = [d for d in vocab.ICD10 if (d.setting in "ib" if inpatient else d.setting in "ob")]
    main = rng.choices(pool, [d.weight for d in pool])[0]
    others = [d for d in vocab.ICD10 if d.code != main.code and d.setting in "ob"]
    n = rng.choices((0, 1, 2, 3), (45, 30, 17, 8))[0]
    secondary = []
    for d in rng.choices(others, [d.weight for d in others], k=n):
        if d not in secondary:
            secondary.append(d)
    return [main, *secondary]


def _drugs_for(main: vocab.Diagnosis, rng: random.Random, inpatient: bool) -> list[vocab.Drug]:
    def fits(drug: vocab.Drug) -> bool:
        return any(
            tag == "*" or main.code.startswith(tag) or (len(tag) == 1 and main.code[0] == tag)
            for tag in drug.indications.split()
        )

    specific = [d for d in vocab.DRUGS if fits(d) and d.indications != "*"]
    generic = [d for d in vocab.DRUGS if d.indications == "*" and (inpatient or d.route_code == "1.01")]
    chosen = rng.sample(specific, k=min(len(specific), rng.randint(1, 3)))
    if rng.random() < 0.5 or not chosen:
        chosen.append(rng.choice(generic))
    return chosen


def build_tables(
    plan: EncounterPlan,
    night: dt.date,
    facility: Facility,
    rng: random.Random,
    stt: int,
    other_ward: str,
) -> dict[str, list[dict[str, str]]]:
    """The raw rows of every table of one encounter (LOAIHOSO -> rows), defects and quirks applied
    except those that live in the envelope (missing XML1/XML8, broken base64, CDATA, declaration)."""
    who = present_patient(plan, night, facility, rng, other_ward)
    level = who.pop("_level", "")
    benefit = vocab.BENEFIT_PCT.get(level, 0) if plan.is_insured else 0
    rate = 100 if plan.is_insured else 0
    admitted, inpatient_at, discharged = _times(plan, night, rng)
    inpatient = plan.visit_type in ("03", "04")
    diagnoses = _pick_diagnoses(plan, rng)
    main = diagnoses[0]
    department = vocab.DEPARTMENT_BY_LETTER.get(main.code[0], "K03") if inpatient else "K01"
    doctor_code, doctor_name = rng.choice(facility.doctors)
    head_code = facility.doctors[0][0]
    ma_lk = plan.encounter_id
    days = (discharged.date() - admitted.date()).days + 1 if plan.visit_type != "01" else 0
    weight_kg = _weight(plan.patient, night, rng)
    height_cm = _height(plan.patient, night, rng)

    lines_total: dict[str, int] = dict.fromkeys(("bv", "bh", "bhtt", "bncct", "bntt", "drugs", "supplies"), 0)
    tables: dict[str, list[dict[str, str]]] = {}

    def money_fields(row: dict[str, str], amounts: dict[str, int]) -> None:
        row.update(
            {
                "THANH_TIEN_BV": _money(amounts["bv"]),
                "THANH_TIEN_BH": _money(amounts["bh"]),
                "T_NGUONKHAC_NSNN": "0",
                "T_NGUONKHAC_VTNN": "0",
                "T_NGUONKHAC_VTTN": "0",
                "T_NGUONKHAC_CL": "0",
                "T_NGUONKHAC": "0",
                "MUC_HUONG": str(benefit),
                "T_BNTT": _money(amounts["bntt"]),
                "T_BNCCT": _money(amounts["bncct"]),
                "T_BHTT": _money(amounts["bhtt"]),
            }
        )
        for k in ("bv", "bh", "bhtt", "bncct", "bntt"):
            lines_total[k] += amounts[k]

    # XML2: drugs
    drug_rows = []
    course_days = max(days, 1)
    for k, drug in enumerate(_drugs_for(main, rng, inpatient), start=1):
        supply_days = (
            course_days if inpatient else rng.choice((5, 7, 10, 14, 30) if main.setting == "o" else (3, 5, 7))
        )
        qty_milli = int(round(drug.per_dose * drug.per_day * supply_days * 1000))
        amounts = _line_amounts(qty_milli, int(drug.price), rate, benefit)
        ordered = admitted + dt.timedelta(minutes=rng.randint(10, 90))
        row = _empty("XML2")
        row.update(
            {
                "MA_LK": ma_lk,
                "STT": str(k),
                "MA_THUOC": drug.code,
                "MA_NHOM": "4",
                "TEN_THUOC": drug.name,
                "DON_VI_TINH": drug.unit,
                "HAM_LUONG": drug.strength,
                "DUONG_DUNG": drug.route_code,
                "DANG_BAO_CHE": drug.form,
                "LIEU_DUNG": f"{_qty(int(drug.per_dose * 1000))} {drug.unit.lower()}/lần * {drug.per_day} lần/ngày"
                + ("" if inpatient else f" * {supply_days} ngày"),
                "CACH_DUNG": f"{drug.route}, {'sau ăn' if drug.route_code == '1.01' else 'theo y lệnh'}",
                "SO_DANG_KY": drug.registration,
                "TT_THAU": f"{rng.randint(100, 999)}/QĐ-BV;G1;N{rng.randint(1, 5)};{night.year - 1}",
                "PHAM_VI": "1",
                "TYLE_TT_BH": str(rate),
                "SO_LUONG": _qty(qty_milli),
                "DON_GIA": _qty(int(drug.price) * 1000),
                "MA_KHOA": department,
                "MA_BAC_SI": doctor_code,
                "NGAY_YL": _instant(min(ordered, discharged)),
                "NGAY_TH_YL": _instant(min(ordered + dt.timedelta(minutes=30), discharged))
                if inpatient
                else "",
                "MA_PTTT": "1",
                "NGUON_CTRA": "1",
            }
        )
        money_fields(row, amounts)
        lines_total["drugs"] += amounts["bv"]
        drug_rows.append(row)
    tables["XML2"] = drug_rows

    # XML3: examination, beds, labs, imaging, procedures, supplies
    services: list[tuple[vocab.Service, int]] = []
    if plan.visit_type in ("01", "02"):
        services.append((rng.choice(vocab.EXAM_KINDS), 1000))
    else:
        services.append(
            (vocab.BED_DAY if plan.visit_type == "03" else vocab.BED_DAY_CARE, course_days * 1000)
        )
    labs = rng.sample(vocab.LABS, k=rng.choices((0, 1, 2, 3), (35, 30, 20, 15))[0] + (1 if inpatient else 0))
    services += [(lab, 1000) for lab in labs]
    if rng.random() < (0.5 if inpatient else 0.15):
        services.append((rng.choice(vocab.IMAGING), 1000))
    procedure = vocab.PROCEDURE_FOR.get(main.code[:3])
    procedures: list[vocab.Service] = []
    if procedure is not None and (inpatient or vocab.PROCEDURES[procedure].group == "18"):
        procedures.append(vocab.PROCEDURES[procedure])
        services.append((vocab.PROCEDURES[procedure], 1000))
    service_rows = []
    for k, (svc, qty_milli) in enumerate(services, start=1):
        amounts = _line_amounts(qty_milli, int(svc.price), rate, benefit)
        ordered = admitted + dt.timedelta(minutes=rng.randint(5, 60))
        row = _empty("XML3")
        row.update(
            {
                "MA_LK": ma_lk,
                "STT": str(k),
                "MA_DICH_VU": svc.code,
                "MA_PTTT_QT": svc.icd9,
                "MA_NHOM": svc.group,
                "TEN_DICH_VU": svc.name,
                "DON_VI_TINH": "Ngày" if svc.group in ("14", "15") else "Lần",
                "PHAM_VI": "1",
                "SO_LUONG": _qty(qty_milli),
                "DON_GIA_BV": _money(int(svc.price) * 100),
                "DON_GIA_BH": _money(int(svc.price) * 100),
                "TYLE_TT_DV": "100",
                "TYLE_TT_BH": str(rate),
                "MA_KHOA": department,
                "MA_GIUONG": f"H{rng.randint(1, 40):03d}" if svc.group in ("14", "15") else "",
                "MA_BAC_SI": doctor_code,
                "NGUOI_THUC_HIEN": doctor_code if svc.group in ("8", "18") else "",
                "NGAY_YL": _instant(min(ordered, discharged)),
                "NGAY_TH_YL": _instant(min(ordered + dt.timedelta(minutes=20), discharged)),
                "NGAY_KQ": _instant(min(ordered + dt.timedelta(minutes=rng.randint(40, 120)), discharged))
                if svc.group in ("1", "2", "3")
                else "",
                "MA_PTTT": "1",
                "PP_VO_CAM": "1" if svc.group == "8" else "",
                "MA_MAY": f"{'XN' if svc.group == '1' else 'CĐHA'}.1.{facility.code}.{rng.randint(1, 9)}"
                if svc.group in ("1", "2")
                else "",
            }
        )
        money_fields(row, amounts)
        service_rows.append(row)
    if inpatient or procedures:
        for code, name, unit, price in rng.sample(vocab.SUPPLIES, k=rng.randint(1, 3)):
            qty_milli = rng.randint(1, 6) * 1000
            amounts = _line_amounts(qty_milli, price, rate, benefit)
            row = _empty("XML3")
            row.update(
                {
                    "MA_LK": ma_lk,
                    "STT": str(len(service_rows) + 1),
                    "MA_VAT_TU": code,
                    "MA_NHOM": "10",
                    "TEN_VAT_TU": name,
                    "DON_VI_TINH": unit,
                    "PHAM_VI": "1",
                    "SO_LUONG": _qty(qty_milli),
                    "DON_GIA_BV": _money(price * 100),
                    "DON_GIA_BH": _money(price * 100),
                    "TT_THAU": f"{rng.randint(100, 999)}/QĐ-BV;G2;N1;{night.year - 1}",
                    "TYLE_TT_DV": "100",
                    "TYLE_TT_BH": str(rate),
                    "MA_KHOA": department,
                    "MA_BAC_SI": doctor_code,
                    "NGAY_YL": _instant(min(admitted + dt.timedelta(minutes=30), discharged)),
                    "NGAY_TH_YL": _instant(min(admitted + dt.timedelta(minutes=45), discharged)),
                    "MA_PTTT": "1",
                }
            )
            money_fields(row, amounts)
            lines_total["supplies"] += amounts["bv"]
            service_rows.append(row)
    tables["XML3"] = service_rows

    # XML4: paraclinical indicators of the labs, and height for stays
    cls_rows = []
    for lab in labs:
        for code, name, unit, low, high, decimals in lab.indicators:
            value = rng.uniform(low * 0.8, high * 1.25 if high else 1.0)
            text = f"{value:.{decimals}f}"
            cls_rows.append(
                {
                    "MA_DICH_VU": lab.code,
                    "MA_CHI_SO": code,
                    "TEN_CHI_SO": name,
                    "GIA_TRI": text,
                    "DON_VI_DO": unit,
                    "MO_TA": "",
                    "KET_LUAN": "Bình thường"
                    if low <= value <= high
                    else ("Tăng" if value > high else "Giảm"),
                }
            )
        if not lab.indicators:
            cls_rows.append(
                {
                    "MA_DICH_VU": lab.code,
                    "MA_CHI_SO": "",
                    "TEN_CHI_SO": lab.name,
                    "GIA_TRI": "Âm tính",
                    "DON_VI_DO": "",
                    "MO_TA": "Không thấy vi khuẩn",
                    "KET_LUAN": "Âm tính",
                }
            )
    if inpatient and height_cm:
        cls_rows.append(
            {
                "MA_DICH_VU": services[0][0].code,
                "MA_CHI_SO": "CHIEU_CAO",
                "TEN_CHI_SO": "Chiều cao",
                "GIA_TRI": str(height_cm),
                "DON_VI_DO": "cm",
                "MO_TA": "",
                "KET_LUAN": "",
            }
        )
    xml4 = []
    for k, r in enumerate(cls_rows, start=1):
        row = _empty("XML4")
        row.update(r)
        reported = admitted + dt.timedelta(minutes=rng.randint(60, 150))
        row.update(
            {
                "MA_LK": ma_lk,
                "STT": str(k),
                "NGAY_KQ": _instant(min(reported, discharged)),
                "MA_BS_DOC_KQ": doctor_code,
            }
        )
        xml4.append(row)
    if xml4:
        tables["XML4"] = xml4

    # XML5: clinical course (usual for stays, not always sent)
    if plan.visit_type == "03" and rng.random() < 0.7:
        notes = []
        for k in range(1, min(course_days, 4) + 1):
            at = min(admitted + dt.timedelta(days=k - 1, hours=2), discharged)
            row = _empty("XML5")
            row.update(
                {
                    "MA_LK": ma_lk,
                    "STT": str(k),
                    "DIEN_BIEN_LS": rng.choice(vocab.COURSE_NOTES).format(
                        pulse=rng.randint(68, 96), bp=f"{rng.randint(105, 150)}/{rng.randint(65, 95)}"
                    ),
                    "GIAI_DOAN_BENH": "",
                    "HOI_CHAN": "",
                    "PHAU_THUAT": procedures[0].name if procedures and k == 2 else "",
                    "THOI_DIEM_DBLS": _instant(at),
                    "NGUOI_THUC_HIEN": doctor_code,
                }
            )
            notes.append(row)
        tables["XML5"] = notes

    transfer = plan.has_referral
    result = (
        rng.choices("12347", (30, 55, 8, 3, 4))[0] if inpatient else rng.choices("1237", (20, 70, 8, 2))[0]
    )
    discharge_type = "2" if transfer else ("4" if inpatient and rng.random() < 0.05 else "1")
    diagnosis_text = "; ".join(d.name for d in diagnoses)
    method = rng.choice(vocab.TREATMENT_METHODS[:1] if not procedures else vocab.TREATMENT_METHODS)
    instructions = rng.choice(vocab.INSTRUCTIONS)
    follow_up_on = night + dt.timedelta(days=rng.choice((7, 14, 28, 30))) if plan.has_follow_up else None
    reasons = vocab.VISIT_REASONS.get(main.code[0], vocab.VISIT_REASONS["*"])

    # XML1
    x1 = _empty("XML1")
    x1.update(who)
    x1.update(
        {
            "MA_LK": ma_lk,
            "STT": str(stt),
            "MA_BN": f"BN{facility.code}{int(plan.patient['index']) % 10_000_000:07d}",
            "LY_DO_VV": rng.choice(reasons),
            "LY_DO_VNT": main.name if inpatient else "",
            "CHAN_DOAN_VAO": main.name,
            "CHAN_DOAN_RV": diagnosis_text,
            "MA_BENH_CHINH": main.code,
            "MA_BENH_KT": ";".join(d.code for d in diagnoses[1:]),
            "MA_PTTT_QT": ";".join(p.icd9 for p in procedures),
            "MA_DOITUONG_KCB": (
                rng.choices(("1.1", "1.2", "1.3", "1.12"), (80, 8, 8, 4))[0] if plan.is_insured else "9"
            ),
            "MA_NOI_DEN": rng.choice(("79071", "01929", "48001")) if transfer else "",
            "NGAY_VAO": _instant(admitted),
            "NGAY_VAO_NOI_TRU": _instant(inpatient_at) if inpatient_at else "",
            "NGAY_RA": _instant(discharged),
            "GIAY_CHUYEN_TUYEN": f"{rng.randint(1, 9999)}/GCT" if transfer else "",
            "SO_NGAY_DTRI": str(days),
            "PP_DIEU_TRI": method,
            "KET_QUA_DTRI": result,
            "MA_LOAI_RV": discharge_type,
            "GHI_CHU": instructions,
            "NGAY_TTOAN": _instant(discharged + dt.timedelta(minutes=rng.randint(5, 40))),
            "NAM_QT": str(night.year),
            "THANG_QT": str(night.month),
            "MA_LOAI_KCB": plan.visit_type,
            "MA_KHOA": department,
            "MA_CSKCB": facility.code,
            "CAN_NANG": _money(int(round(weight_kg * 100))) if weight_kg else "",
            "NGAY_TAI_KHAM": _day(follow_up_on) if follow_up_on else "",
            "MA_HSBA": f"{night.year}{rng.randint(1, 999999):06d}"
            if inpatient
            else f"PK{rng.randint(1, 9999999):07d}",
            "MA_TTDV": head_code,
            "DU_PHONG": str(height_cm) if height_cm else "",
        }
    )
    x1.update(
        {
            "T_THUOC": _money(lines_total["drugs"]),
            "T_VTYT": _money(lines_total["supplies"]),
            "T_TONGCHI_BV": _money(lines_total["bv"]),
            "T_TONGCHI_BH": _money(lines_total["bh"]),
            "T_BNTT": _money(lines_total["bntt"]),
            "T_BNCCT": _money(lines_total["bncct"]),
            "T_BHTT": _money(lines_total["bh"] - lines_total["bncct"]),
            "T_NGUONKHAC": "0",
            "T_BHTT_GDV": _money(lines_total["bhtt"]),
        }
    )
    tables["XML1"] = [x1]

    if inpatient:
        x7 = _empty("XML7")
        x7.update(
            {
                "MA_LK": ma_lk,
                "SO_LUU_TRU": f"LT{night.year}{rng.randint(1, 99999):05d}",
                "MA_YTE": x1["MA_BN"],
                "MA_KHOA_RV": department,
                "NGAY_VAO": x1["NGAY_VAO"],
                "NGAY_RA": x1["NGAY_RA"],
                "CHAN_DOAN_RV": diagnosis_text,
                "PP_DIEUTRI": method,
                "GHI_CHU": instructions,
                "MA_TTDV": head_code,
                "MA_BS": doctor_code,
                "TEN_BS": doctor_name,
                "NGAY_CT": _day(discharged.date()),
            }
        )
        tables["XML7"] = [x7]
        x8 = _empty("XML8")
        x8.update(
            {
                "MA_LK": ma_lk,
                "MA_LOAI_KCB": plan.visit_type,
                "NGAY_VAO": x1["NGAY_VAO"],
                "NGAY_RA": x1["NGAY_RA"],
                "CHAN_DOAN_VAO": main.name,
                "CHAN_DOAN_RV": diagnosis_text,
                "QT_BENHLY": f"{rng.choice(reasons)} {rng.randint(1, 7)} ngày nay, điều trị tại nhà không đỡ",
                "TOMTAT_KQ": "; ".join(
                    f"{r['TEN_CHI_SO']}: {r['GIA_TRI']} {r['DON_VI_DO']}".strip() for r in cls_rows[:4]
                )
                or "Chưa ghi nhận bất thường",
                "PP_DIEUTRI": method,
                "KET_QUA_DTRI": result,
                "GHI_CHU": instructions,
                "MA_TTDV": head_code,
                "NGAY_CT": _day(discharged.date()),
            }
        )
        tables["XML8"] = [x8]

    if transfer:
        x13 = _empty("XML13")
        x13.update(
            {
                "MA_LK": ma_lk,
                "SO_HOSO": x1["MA_HSBA"],
                "SO_CHUYENTUYEN": f"{rng.randint(1, 9999)}",
                "GIAY_CHUYEN_TUYEN": x1["GIAY_CHUYEN_TUYEN"],
                "MA_CSKCB": facility.code,
                "MA_CSKCB_DI": facility.code,
                "MA_CSKCB_DEN": x1["MA_NOI_DEN"],
                **{
                    k: x1[k]
                    for k in (
                        "HO_TEN",
                        "NGAY_SINH",
                        "GIOI_TINH",
                        "MA_QUOCTICH",
                        "MA_DANTOC",
                        "MA_NGHE_NGHIEP",
                        "DIA_CHI",
                        "MA_THE_BHYT",
                        "GT_THE_DEN",
                        "NGAY_VAO",
                        "NGAY_VAO_NOI_TRU",
                        "NGAY_RA",
                        "CHAN_DOAN_RV",
                        "MA_BENH_CHINH",
                        "MA_BENH_KT",
                    )
                },
                "DAU_HIEU_LS": rng.choice(reasons),
                "QT_BENHLY": x8["QT_BENHLY"] if inpatient else rng.choice(reasons),
                "TOMTAT_KQ": "Xem kết quả cận lâm sàng kèm theo",
                "PP_DIEUTRI": method,
                "TEN_DICH_VU": "; ".join(s.name for s, _ in services[:3]),
                "TEN_THUOC": "; ".join(d["TEN_THUOC"] for d in drug_rows[:3]),
                "TINH_TRANG_CT": "Người bệnh tỉnh, dấu hiệu sinh tồn ổn định",
                "MA_LOAI_RV": "2",
                "MA_LYDO_CT": "1",
                "HUONG_DIEU_TRI": "Chuyển tuyến trên điều trị chuyên khoa",
                "PHUONGTIEN_VC": "Xe cứu thương",
                "MA_BAC_SI": doctor_code,
                "MA_TTDV": head_code,
            }
        )
        if "old_xml13_names" in plan.defects:
            x13 = {OLD_XML13_NAMES.get(k, k): v for k, v in x13.items()}
        tables["XML13"] = [x13]

    if follow_up_on:
        x14 = _empty("XML14")
        x14.update(
            {
                "MA_LK": ma_lk,
                "SO_GIAYHEN_KL": f"{rng.randint(1, 99999)}/GHK",
                "MA_CSKCB": facility.code,
                **{
                    k: x1[k]
                    for k in (
                        "HO_TEN",
                        "NGAY_SINH",
                        "GIOI_TINH",
                        "DIA_CHI",
                        "MA_THE_BHYT",
                        "GT_THE_DEN",
                        "NGAY_VAO",
                        "NGAY_VAO_NOI_TRU",
                        "NGAY_RA",
                        "CHAN_DOAN_RV",
                        "MA_BENH_CHINH",
                        "MA_BENH_KT",
                        "MA_DOITUONG_KCB",
                    )
                },
                "NGAY_HEN_KL": _day(follow_up_on),
                "MA_BAC_SI": doctor_code,
                "MA_TTDV": head_code,
                "NGAY_CT": _day(discharged.date()),
            }
        )
        tables["XML14"] = [x14]

    _apply_defects(plan, tables, rng)
    return tables


def _weight(patient: dict[str, object], night: dt.date, rng: random.Random) -> float | None:
    age = night.year - int(patient["birth_year"])
    if rng.random() < 0.15:
        return None
    if age < 1:
        return round(rng.uniform(3.0, 9.5), 2)
    if age < 15:
        return round(rng.uniform(8 + age * 2.0, 12 + age * 3.2), 1)
    base = 62 if patient["sex"] == "1" else 52
    return round(rng.gauss(base, 8), 1)


def _height(patient: dict[str, object], night: dt.date, rng: random.Random) -> int | None:
    age = night.year - int(patient["birth_year"])
    if rng.random() < 0.5:
        return None
    if age < 15:
        return int(50 + age * 6.5 + rng.uniform(-5, 5))
    return int(rng.gauss(166 if patient["sex"] == "1" else 155, 6))


def _apply_defects(plan: EncounterPlan, tables: dict[str, list[dict[str, str]]], rng: random.Random) -> None:
    """Content defects and value quirks (envelope-level ones are applied when the HOSO is packed)."""
    x1 = tables["XML1"][0]
    if "invalid_icd10" in plan.defects:
        x1["MA_BENH_CHINH"] = rng.choice(vocab.INVALID_ICD10)
        for t in ("XML13", "XML14"):
            if t in tables:
                tables[t][0]["MA_BENH_CHINH"] = x1["MA_BENH_CHINH"]
    if "discharge_before_admission" in plan.defects:
        # a clerk typed the discharge a day (or hours) before the admission
        admitted = dt.datetime.strptime(x1["NGAY_VAO"], "%Y%m%d%H%M")
        x1["NGAY_RA"] = _instant(admitted - dt.timedelta(hours=rng.choice((3, 24, 26))))
        for t in ("XML7", "XML8"):
            if t in tables:
                tables[t][0]["NGAY_RA"] = x1["NGAY_RA"]
    if "totals_mismatch" in plan.defects:
        _drift_totals(plan, tables, rng)
    _shape_main_code(plan, tables, rng)
    if "null_token" in plan.defects:
        x1["CAN_NANG"] = rng.choice(NULL_TOKENS)
        for row in tables["XML3"]:
            row["T_TRANTT"] = rng.choice(NULL_TOKENS)
    if "comma_decimal" in plan.defects:
        if x1["CAN_NANG"] and x1["CAN_NANG"] not in NULL_TOKENS:
            x1["CAN_NANG"] = (
                x1["CAN_NANG"].replace(".", ",") if "." in x1["CAN_NANG"] else x1["CAN_NANG"] + ",0"
            )
        for row in tables["XML2"][:1]:
            for key in (
                "SO_LUONG",
                "DON_GIA",
                "THANH_TIEN_BV",
                "THANH_TIEN_BH",
                "T_BNTT",
                "T_BNCCT",
                "T_BHTT",
            ):
                if "." in row[key]:
                    row[key] = row[key].replace(".", ",")
                elif row[key] and row[key] != "0":
                    row[key] = row[key] + ",00"


# Money relations broken as real exports break them (REAL_EXPORTS.md), one tag per relation:
# `totals_drift:<relation>`; each shifts only the fields of its relation, so the others still hold.
_DRIFT_FIELDS = {
    "bhtt": (("T_BHTT", -1), ("T_NGUONKHAC", 1)),  # T_BHTT != T_TONGCHI_BH - T_BNCCT; parts add up
    "parts": (("T_BNTT", 1),),  # T_TONGCHI_BV != T_BHTT + T_BNCCT + T_BNTT + T_NGUONKHAC
    "total_bv": (("T_TONGCHI_BV", 1), ("T_NGUONKHAC", 1)),  # != Σ THANH_TIEN_BV (another source paid)
    "total_bh": (("T_TONGCHI_BH", 1), ("T_BHTT", 1)),  # != Σ THANH_TIEN_BH
    "drugs": (("T_THUOC", 1),),  # != Σ XML2 THANH_TIEN_BH and BV (a drug line added after totalling)
}


def _cents(text: str) -> int:
    return int(round(float(text or "0") * 100))


def _drift_totals(plan: EncounterPlan, tables: dict[str, list[dict[str, str]]], rng: random.Random) -> None:
    x1 = tables["XML1"][0]
    relations = [d.split(":", 1)[1] for d in plan.defects if d.startswith("totals_drift:")]
    if not relations:  # a plan tagged by hand without its relations: the grand and drug totals
        relations = ["total_bv", "drugs"]
    for relation in relations:
        if relation == "drugs_bv":
            if "drugs" in relations:
                continue  # T_THUOC already disagrees with both sums
            # T_THUOC written from the insured amounts (Σ THANH_TIEN_BH), not the hospital's;
            # when the two sums agree the relation cannot show, so shift it like "drugs"
            insured = sum(_cents(r.get("THANH_TIEN_BH", "")) for r in tables.get("XML2", []))
            hospital = sum(_cents(r.get("THANH_TIEN_BV", "")) for r in tables.get("XML2", []))
            if insured != hospital:
                x1["T_THUOC"] = _money(insured)
                continue
            relation = "drugs"
        delta = rng.choice((1_500_000, 2_350_000, 4_000_000, 15_000))  # cents
        if relation == "bhtt":  # never below zero: the fund paid less than the insured share
            delta = min(delta, _cents(x1["T_BHTT"])) or delta
        for key, sign in _DRIFT_FIELDS[relation]:
            x1[key] = _money(_cents(x1[key]) + sign * delta)


def _shape_main_code(
    plan: EncounterPlan, tables: dict[str, list[dict[str, str]]], rng: random.Random
) -> None:
    """The main code as real exports shape it: 3-character form, chapter XIX fifth character,
    retired codes, or empty in XML1 with the discharge diagnosis only in XML7 CHAN_DOAN_RV."""
    x1 = tables["XML1"][0]
    code, text = x1["MA_BENH_CHINH"], None
    if "icd10_three_char" in plan.defects and "." in code:
        code = code.split(".", 1)[0]
    elif "icd10_fifth_char" in plan.defects:
        code, text = rng.choice(vocab.FIFTH_CHAR_CODES)
    elif "icd10_retired" in plan.defects:
        code, text = rng.choice(vocab.RETIRED_CODES)
    elif "main_code_from_xml7" in plan.defects and "XML7" in tables:
        # XML7's discharge diagnosis carries the code ("<code> - <text>"); XML1 leaves it empty
        paper = tables["XML7"][0]
        paper["CHAN_DOAN_RV"] = f"{code} - {paper['CHAN_DOAN_RV']}"
        x1["MA_BENH_CHINH"] = ""
        return
    else:
        return
    x1["MA_BENH_CHINH"] = code
    if text:
        x1["CHAN_DOAN_RV"] = text
        for t in ("XML7", "XML8"):
            if t in tables:
                tables[t][0]["CHAN_DOAN_RV"] = text
    for t in ("XML13", "XML14"):
        if t in tables and "MA_BENH_CHINH" in tables[t][0]:
            tables[t][0]["MA_BENH_CHINH"] = code
