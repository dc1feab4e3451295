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

from transforms.synth import vocab
from transforms.synth.defects import apply_defects
from transforms.synth.parts import (
    OLD_XML13_NAMES,
    EncounterPlan,
    Facility,
    day_text,
    draw_height_cm,
    draw_weight_kg,
    drugs_for,
    empty_row,
    instant_text,
    line_amounts,
    money_text,
    pick_diagnoses,
    present_patient,
    qty_text,
    stay_times,
)

# What a transfer paper (XML13) and a follow-up appointment (XML14) copy from the encounter's XML1
CARRIED_FROM_XML1 = (
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
)


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
    admitted, inpatient_at, discharged = stay_times(plan, night, rng)
    inpatient = plan.visit_type in ("03", "04")
    diagnoses = pick_diagnoses(plan, rng)
    main = diagnoses[0]
    department = vocab.DEPARTMENT_BY_LETTER.get(main.code[0], "K03") if inpatient else "K01"
    doctor_code, doctor_name = rng.choice(facility.doctors)
    head_code = facility.doctors[0][0]
    ma_lk = plan.encounter_id
    days = (discharged.date() - admitted.date()).days + 1 if plan.visit_type != "01" else 0
    weight_kg = draw_weight_kg(plan.patient, night, rng)
    height_cm = draw_height_cm(plan.patient, night, rng)

    lines_total: dict[str, int] = dict.fromkeys(("bv", "bh", "bhtt", "bncct", "bntt", "drugs", "supplies"), 0)
    tables: dict[str, list[dict[str, str]]] = {}

    def money_fields(row: dict[str, str], amounts: dict[str, int]) -> None:
        row.update(
            {
                "THANH_TIEN_BV": money_text(amounts["bv"]),
                "THANH_TIEN_BH": money_text(amounts["bh"]),
                "T_NGUONKHAC_NSNN": "0",
                "T_NGUONKHAC_VTNN": "0",
                "T_NGUONKHAC_VTTN": "0",
                "T_NGUONKHAC_CL": "0",
                "T_NGUONKHAC": "0",
                "MUC_HUONG": str(benefit),
                "T_BNTT": money_text(amounts["bntt"]),
                "T_BNCCT": money_text(amounts["bncct"]),
                "T_BHTT": money_text(amounts["bhtt"]),
            }
        )
        for k in ("bv", "bh", "bhtt", "bncct", "bntt"):
            lines_total[k] += amounts[k]

    # XML2: drugs
    drug_rows = []
    course_days = max(days, 1)
    for k, drug in enumerate(drugs_for(main, rng, inpatient), start=1):
        supply_days = (
            course_days if inpatient else rng.choice((5, 7, 10, 14, 30) if main.setting == "o" else (3, 5, 7))
        )
        qty_milli = int(round(drug.per_dose * drug.per_day * supply_days * 1000))
        amounts = line_amounts(qty_milli, int(drug.price), rate, benefit)
        ordered = admitted + dt.timedelta(minutes=rng.randint(10, 90))
        row = empty_row("XML2")
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
                "LIEU_DUNG": f"{qty_text(int(drug.per_dose * 1000))} {drug.unit.lower()}/lần * {drug.per_day} lần/ngày"
                + ("" if inpatient else f" * {supply_days} ngày"),
                "CACH_DUNG": f"{drug.route}, {'sau ăn' if drug.route_code == '1.01' else 'theo y lệnh'}",
                "SO_DANG_KY": drug.registration,
                "TT_THAU": f"{rng.randint(100, 999)}/QĐ-BV;G1;N{rng.randint(1, 5)};{night.year - 1}",
                "PHAM_VI": "1",
                "TYLE_TT_BH": str(rate),
                "SO_LUONG": qty_text(qty_milli),
                "DON_GIA": qty_text(int(drug.price) * 1000),
                "MA_KHOA": department,
                "MA_BAC_SI": doctor_code,
                "NGAY_YL": instant_text(min(ordered, discharged)),
                "NGAY_TH_YL": instant_text(min(ordered + dt.timedelta(minutes=30), discharged))
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
        amounts = line_amounts(qty_milli, int(svc.price), rate, benefit)
        ordered = admitted + dt.timedelta(minutes=rng.randint(5, 60))
        row = empty_row("XML3")
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
                "SO_LUONG": qty_text(qty_milli),
                "DON_GIA_BV": money_text(int(svc.price) * 100),
                "DON_GIA_BH": money_text(int(svc.price) * 100),
                "TYLE_TT_DV": "100",
                "TYLE_TT_BH": str(rate),
                "MA_KHOA": department,
                "MA_GIUONG": f"H{rng.randint(1, 40):03d}" if svc.group in ("14", "15") else "",
                "MA_BAC_SI": doctor_code,
                "NGUOI_THUC_HIEN": doctor_code if svc.group in ("8", "18") else "",
                "NGAY_YL": instant_text(min(ordered, discharged)),
                "NGAY_TH_YL": instant_text(min(ordered + dt.timedelta(minutes=20), discharged)),
                "NGAY_KQ": instant_text(min(ordered + dt.timedelta(minutes=rng.randint(40, 120)), discharged))
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
            amounts = line_amounts(qty_milli, price, rate, benefit)
            row = empty_row("XML3")
            row.update(
                {
                    "MA_LK": ma_lk,
                    "STT": str(len(service_rows) + 1),
                    "MA_VAT_TU": code,
                    "MA_NHOM": "10",
                    "TEN_VAT_TU": name,
                    "DON_VI_TINH": unit,
                    "PHAM_VI": "1",
                    "SO_LUONG": qty_text(qty_milli),
                    "DON_GIA_BV": money_text(price * 100),
                    "DON_GIA_BH": money_text(price * 100),
                    "TT_THAU": f"{rng.randint(100, 999)}/QĐ-BV;G2;N1;{night.year - 1}",
                    "TYLE_TT_DV": "100",
                    "TYLE_TT_BH": str(rate),
                    "MA_KHOA": department,
                    "MA_BAC_SI": doctor_code,
                    "NGAY_YL": instant_text(min(admitted + dt.timedelta(minutes=30), discharged)),
                    "NGAY_TH_YL": instant_text(min(admitted + dt.timedelta(minutes=45), discharged)),
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
        row = empty_row("XML4")
        row.update(r)
        reported = admitted + dt.timedelta(minutes=rng.randint(60, 150))
        row.update(
            {
                "MA_LK": ma_lk,
                "STT": str(k),
                "NGAY_KQ": instant_text(min(reported, discharged)),
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
            row = empty_row("XML5")
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
                    "THOI_DIEM_DBLS": instant_text(at),
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
    x1 = empty_row("XML1")
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
            "NGAY_VAO": instant_text(admitted),
            "NGAY_VAO_NOI_TRU": instant_text(inpatient_at) if inpatient_at else "",
            "NGAY_RA": instant_text(discharged),
            "GIAY_CHUYEN_TUYEN": f"{rng.randint(1, 9999)}/GCT" if transfer else "",
            "SO_NGAY_DTRI": str(days),
            "PP_DIEU_TRI": method,
            "KET_QUA_DTRI": result,
            "MA_LOAI_RV": discharge_type,
            "GHI_CHU": instructions,
            "NGAY_TTOAN": instant_text(discharged + dt.timedelta(minutes=rng.randint(5, 40))),
            "NAM_QT": str(night.year),
            "THANG_QT": str(night.month),
            "MA_LOAI_KCB": plan.visit_type,
            "MA_KHOA": department,
            "MA_CSKCB": facility.code,
            "CAN_NANG": money_text(int(round(weight_kg * 100))) if weight_kg else "",
            "NGAY_TAI_KHAM": day_text(follow_up_on) if follow_up_on else "",
            "MA_HSBA": f"{night.year}{rng.randint(1, 999999):06d}"
            if inpatient
            else f"PK{rng.randint(1, 9999999):07d}",
            "MA_TTDV": head_code,
            "DU_PHONG": str(height_cm) if height_cm else "",
        }
    )
    x1.update(
        {
            "T_THUOC": money_text(lines_total["drugs"]),
            "T_VTYT": money_text(lines_total["supplies"]),
            "T_TONGCHI_BV": money_text(lines_total["bv"]),
            "T_TONGCHI_BH": money_text(lines_total["bh"]),
            "T_BNTT": money_text(lines_total["bntt"]),
            "T_BNCCT": money_text(lines_total["bncct"]),
            "T_BHTT": money_text(lines_total["bh"] - lines_total["bncct"]),
            "T_NGUONKHAC": "0",
            "T_BHTT_GDV": money_text(lines_total["bhtt"]),
        }
    )
    tables["XML1"] = [x1]

    if inpatient:
        x7 = empty_row("XML7")
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
                "NGAY_CT": day_text(discharged.date()),
            }
        )
        tables["XML7"] = [x7]
        x8 = empty_row("XML8")
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
                "NGAY_CT": day_text(discharged.date()),
            }
        )
        tables["XML8"] = [x8]

    if transfer:
        x13 = empty_row("XML13")
        x13.update(
            {
                "MA_LK": ma_lk,
                "SO_HOSO": x1["MA_HSBA"],
                "SO_CHUYENTUYEN": f"{rng.randint(1, 9999)}",
                "GIAY_CHUYEN_TUYEN": x1["GIAY_CHUYEN_TUYEN"],
                "MA_CSKCB": facility.code,
                "MA_CSKCB_DI": facility.code,
                "MA_CSKCB_DEN": x1["MA_NOI_DEN"],
                **{k: x1[k] for k in (*CARRIED_FROM_XML1, "MA_QUOCTICH", "MA_DANTOC", "MA_NGHE_NGHIEP")},
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
        x14 = empty_row("XML14")
        x14.update(
            {
                "MA_LK": ma_lk,
                "SO_GIAYHEN_KL": f"{rng.randint(1, 99999)}/GHK",
                "MA_CSKCB": facility.code,
                **{k: x1[k] for k in (*CARRIED_FROM_XML1, "MA_DOITUONG_KCB")},
                "NGAY_HEN_KL": day_text(follow_up_on),
                "MA_BAC_SI": doctor_code,
                "MA_TTDV": head_code,
                "NGAY_CT": day_text(discharged.date()),
            }
        )
        tables["XML14"] = [x14]

    apply_defects(plan, tables, rng)
    return tables
