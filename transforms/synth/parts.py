"""The parts of a synthetic encounter: its plan and facility, how values are written (money, quantities, times), the patient as a hospital presents them, the stay's times and diagnoses."""

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


def money_text(cents: int) -> str:
    """Cents -> text with at most 2 decimals ("50600", "1234.5", "12.34")."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:02d}".rstrip("0")


def qty_text(milli: int) -> str:
    whole, frac = divmod(milli, 1000)
    return f"{whole}" if frac == 0 else f"{whole}.{frac:03d}".rstrip("0")


def instant_text(t: dt.datetime) -> str:
    return t.strftime("%Y%m%d%H%M")


def day_text(d: dt.date) -> str:
    return d.strftime("%Y%m%d")


def line_amounts(qty_milli: int, price_vnd: int, rate_pct: int, benefit_pct: int) -> dict[str, int]:
    """The money of one line in cents, by the 3176 formulas (no other funding source)."""
    bv = (qty_milli * price_vnd * 100 + 500) // 1000
    bh = (bv * rate_pct + 50) // 100
    bhtt = (bh * benefit_pct + 50) // 100
    return {"bv": bv, "bh": bh, "bhtt": bhtt, "bncct": bh - bhtt, "bntt": bv - bh}


def empty_row(loaihoso: str) -> dict[str, str]:
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
        "GT_THE_TU": day_text(valid_from),
        "GT_THE_DEN": day_text(valid_to),
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
    # what the record says, for the generator's identity truth (transforms/synth/identity_truth.py)
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


def stay_times(
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


def pick_diagnoses(plan: EncounterPlan, rng: random.Random) -> list[vocab.Diagnosis]:
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


def drugs_for(main: vocab.Diagnosis, rng: random.Random, inpatient: bool) -> list[vocab.Drug]:
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


def draw_weight_kg(patient: dict[str, object], night: dt.date, rng: random.Random) -> float | None:
    age = night.year - int(patient["birth_year"])
    if rng.random() < 0.15:
        return None
    if age < 1:
        return round(rng.uniform(3.0, 9.5), 2)
    if age < 15:
        return round(rng.uniform(8 + age * 2.0, 12 + age * 3.2), 1)
    base = 62 if patient["sex"] == "1" else 52
    return round(rng.gauss(base, 8), 1)


def draw_height_cm(patient: dict[str, object], night: dt.date, rng: random.Random) -> int | None:
    age = night.year - int(patient["birth_year"])
    if rng.random() < 0.5:
        return None
    if age < 15:
        return int(50 + age * 6.5 + rng.uniform(-5, 5))
    return int(rng.gauss(166 if patient["sex"] == "1" else 155, 6))
