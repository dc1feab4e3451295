"""The declared schemas of the pipeline, in one place.

Every XML 130 field the health book uses is declared here once: its source name, the English
snake_case column it becomes at the staging boundary, and its kind. Readers, the normalizer,
the quality suites and the serving DDL checks all derive from these declarations.

Kinds:
  text     free text, stripped; empty -> null
  code     a code kept as a string (leading zeros and dots preserved)
  int      whole number (nullable Int64)
  decimal  number with "." or "," as the decimal separator (float64); money in VND, quantities
  instant  yyyymmddHHMM -> timestamp (minute precision)
  date     yyyymmdd -> date
  birth    yyyymmdd[HHMM] with 00 for an unknown day/month -> date + precision ("day"|"month"|"year")
  codes    ";"-joined codes -> list of codes
  dates    ";"-joined yyyymmdd -> list of dates
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

import pyarrow as pa

from transforms.core.resources import package_path

SPEC_CSV = package_path("transforms.core", "xml130_fields.csv")

KINDS = ("text", "code", "int", "decimal", "instant", "date", "birth", "codes", "dates")

# The Arrow type of a staged column of each kind (docs/ARCHITECTURE.md "Staged datasets").
ARROW_TYPE_BY_KIND = {
    "text": pa.string(),
    "code": pa.string(),
    "int": pa.int64(),
    "decimal": pa.float64(),
    "instant": pa.timestamp("s"),
    "date": pa.date32(),
    "birth": pa.date32(),
    "codes": pa.list_(pa.string()),
    "dates": pa.list_(pa.date32()),
}

# One row per failing row per check, every stage (docs/ARCHITECTURE.md "Findings").
FINDINGS_SCHEMA = pa.schema(
    [
        ("night", pa.date32()),
        ("facility_code", pa.string()),
        ("encounter_id", pa.string()),
        ("version", pa.int64()),
        ("dataset", pa.string()),
        ("row_index", pa.int64()),
        ("stage", pa.string()),
        ("check_id", pa.string()),
        ("reason", pa.string()),
        ("severity", pa.string()),
        ("column", pa.string()),
        ("value", pa.string()),
    ]
)


@dataclass(frozen=True)
class Column:
    source: str
    name: str
    kind: str


@dataclass(frozen=True)
class Table:
    """One staged dataset: the XML 130 table it comes from and its declared columns."""

    loaihoso: str  # "XML1" ...
    dataset: str  # staging dataset name
    root: str  # inner root element
    row_path: tuple[str, ...]  # element path from the root to one row; () for a flat table
    columns: tuple[Column, ...]
    # old field names still sent by facilities -> the 3176 name
    aliases: tuple[tuple[str, str], ...] = ()

    @property
    def is_flat(self) -> bool:
        return not self.row_path

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _cols(spec: str) -> tuple[Column, ...]:
    out = []
    for line in spec.strip().splitlines():
        if not line.strip():
            continue
        source, name, kind = line.split()
        assert kind in KINDS, (source, kind)
        out.append(Column(source, name, kind))
    return tuple(out)


ENCOUNTERS = Table(
    "XML1",
    "encounters",
    "TONG_HOP",
    (),
    _cols(
        """
        MA_LK            encounter_id           code
        STT              line_number            int
        MA_BN            patient_code           code
        HO_TEN           patient_name           text
        SO_CCCD          citizen_id             code
        NGAY_SINH        birth_date             birth
        GIOI_TINH        sex_code               code
        NHOM_MAU         blood_group            text
        MA_QUOCTICH      nationality_code       code
        MA_DANTOC        ethnicity_code         code
        MA_NGHE_NGHIEP   occupation_code        code
        DIA_CHI          address                text
        MATINH_CU_TRU    province_code          code
        MAHUYEN_CU_TRU   district_code          code
        MAXA_CU_TRU      ward_code              code
        DIEN_THOAI       phone                  code
        MA_THE_BHYT      insurance_card         codes
        MA_DKBD          registered_facility    codes
        GT_THE_TU        card_valid_from        dates
        GT_THE_DEN       card_valid_to          dates
        NGAY_MIEN_CCT    copay_exempt_at        instant
        LY_DO_VV         visit_reason           text
        LY_DO_VNT        inpatient_reason       text
        MA_LY_DO_VNT     inpatient_reason_code  code
        CHAN_DOAN_VAO    admission_diagnosis    text
        CHAN_DOAN_RV     discharge_diagnosis    text
        MA_BENH_CHINH    main_icd10             code
        MA_BENH_KT       secondary_icd10        codes
        MA_BENH_YHCT     traditional_codes      codes
        MA_PTTT_QT       procedure_icd9         codes
        MA_DOITUONG_KCB  patient_category       code
        MA_NOI_DI        referred_from          code
        MA_NOI_DEN       referred_to            code
        MA_TAI_NAN       injury_code            code
        NGAY_VAO         admitted_at            instant
        NGAY_VAO_NOI_TRU inpatient_at           instant
        NGAY_RA          discharged_at          instant
        GIAY_CHUYEN_TUYEN referral_number       code
        SO_NGAY_DTRI     treatment_days         int
        PP_DIEU_TRI      treatment_method       text
        KET_QUA_DTRI     result_code            code
        MA_LOAI_RV       discharge_type_code    code
        GHI_CHU          instructions           text
        NGAY_TTOAN       paid_at                instant
        T_THUOC          drugs_total_vnd        decimal
        T_VTYT           supplies_total_vnd     decimal
        T_TONGCHI_BV     hospital_total_vnd     decimal
        T_TONGCHI_BH     insured_total_vnd      decimal
        T_BNTT           patient_paid_vnd       decimal
        T_BNCCT          patient_copay_vnd      decimal
        T_BHTT           insurance_paid_vnd     decimal
        T_NGUONKHAC      other_sources_vnd      decimal
        T_BHTT_GDV       insurance_outside_drg_vnd decimal
        NAM_QT           settlement_year        int
        THANG_QT         settlement_month       int
        MA_LOAI_KCB      visit_type             code
        MA_KHOA          department_codes       codes
        MA_CSKCB         facility_code_xml1     code
        MA_KHUVUC        living_area_code       code
        CAN_NANG         weight_kg              decimal
        CAN_NANG_CON     newborn_weight_g       text
        NAM_NAM_LIEN_TUC five_years_since       date
        NGAY_TAI_KHAM    follow_up_dates        dates
        MA_HSBA          medical_record_number  code
        MA_TTDV          facility_head_code     code
        DU_PHONG         reserve                text
        """
    ),
)

DRUGS = Table(
    "XML2",
    "drugs",
    "CHITIEU_CHITIET_THUOC",
    ("DSACH_CHI_TIET_THUOC", "CHI_TIET_THUOC"),
    _cols(
        """
        MA_LK            encounter_id           code
        STT              line_number            int
        MA_THUOC         drug_code              code
        MA_PP_CHEBIEN    preparation_code       code
        MA_CSKCB_THUOC   drug_facility_code     code
        MA_NHOM          cost_group             code
        TEN_THUOC        drug_name              text
        DON_VI_TINH      unit                   text
        HAM_LUONG        strength               text
        DUONG_DUNG       route_code             code
        DANG_BAO_CHE     dosage_form            text
        LIEU_DUNG        dose                   text
        CACH_DUNG        directions             text
        SO_DANG_KY       registration_number    code
        TT_THAU          tender_info            text
        PHAM_VI          coverage_scope         code
        TYLE_TT_BH       insurance_rate_pct     decimal
        SO_LUONG         quantity               decimal
        DON_GIA          unit_price_vnd         decimal
        THANH_TIEN_BV    amount_vnd             decimal
        THANH_TIEN_BH    insured_amount_vnd     decimal
        T_NGUONKHAC_NSNN other_state_vnd        decimal
        T_NGUONKHAC_VTNN other_foreign_vnd      decimal
        T_NGUONKHAC_VTTN other_domestic_vnd     decimal
        T_NGUONKHAC_CL   other_rest_vnd         decimal
        T_NGUONKHAC      other_sources_vnd      decimal
        MUC_HUONG        benefit_level_pct      decimal
        T_BNTT           patient_paid_vnd       decimal
        T_BNCCT          patient_copay_vnd      decimal
        T_BHTT           insurance_paid_vnd     decimal
        MA_KHOA          department_code        code
        MA_BAC_SI        physician_codes        codes
        MA_DICH_VU       service_codes          codes
        NGAY_YL          ordered_at             instant
        NGAY_TH_YL       administered_at        instant
        MA_PTTT          payment_method         code
        NGUON_CTRA       funding_source         code
        VET_THUONG_TP    recurrent_wound        code
        DU_PHONG         reserve                text
        """
    ),
)

SERVICES = Table(
    "XML3",
    "services",
    "CHITIEU_CHITIET_DVKT_VTYT",
    ("DSACH_CHI_TIET_DVKT", "CHI_TIET_DVKT"),
    _cols(
        """
        MA_LK            encounter_id           code
        STT              line_number            int
        MA_DICH_VU       service_code           code
        MA_PTTT_QT       procedure_icd9         codes
        MA_VAT_TU        supply_code            code
        MA_NHOM          cost_group             code
        GOI_VTYT         supply_package         code
        TEN_VAT_TU       supply_name            text
        TEN_DICH_VU      service_name           text
        MA_XANG_DAU      fuel_code              code
        DON_VI_TINH      unit                   text
        PHAM_VI          coverage_scope         code
        SO_LUONG         quantity               decimal
        DON_GIA_BV       unit_price_vnd         decimal
        DON_GIA_BH       insured_unit_price_vnd decimal
        TT_THAU          tender_info            text
        TYLE_TT_DV       service_rate_pct       decimal
        TYLE_TT_BH       insurance_rate_pct     decimal
        THANH_TIEN_BV    amount_vnd             decimal
        THANH_TIEN_BH    insured_amount_vnd     decimal
        T_TRANTT         ceiling_vnd            decimal
        MUC_HUONG        benefit_level_pct      decimal
        T_NGUONKHAC_NSNN other_state_vnd        decimal
        T_NGUONKHAC_VTNN other_foreign_vnd      decimal
        T_NGUONKHAC_VTTN other_domestic_vnd     decimal
        T_NGUONKHAC_CL   other_rest_vnd         decimal
        T_NGUONKHAC      other_sources_vnd      decimal
        T_BNTT           patient_paid_vnd       decimal
        T_BNCCT          patient_copay_vnd      decimal
        T_BHTT           insurance_paid_vnd     decimal
        MA_KHOA          department_code        code
        MA_GIUONG        bed_code               code
        MA_BAC_SI        physician_codes        codes
        NGUOI_THUC_HIEN  performer_codes        codes
        MA_BENH          icd10_codes            codes
        MA_BENH_YHCT     traditional_codes      codes
        NGAY_YL          ordered_at             instant
        NGAY_TH_YL       performed_at           instant
        NGAY_KQ          resulted_at            instant
        MA_PTTT          payment_method         code
        VET_THUONG_TP    recurrent_wound        code
        PP_VO_CAM        anaesthesia_code       code
        VI_TRI_TH_DVKT   body_site_code         code
        MA_MAY           machine_codes          codes
        MA_HIEU_SP       product_code           code
        TAI_SU_DUNG      is_reused              code
        DU_PHONG         reserve                text
        """
    ),
)

LAB_RESULTS = Table(
    "XML4",
    "lab_results",
    "CHITIEU_CHITIET_DICHVUCANLAMSANG",
    ("DSACH_CHI_TIET_CLS", "CHI_TIET_CLS"),
    _cols(
        """
        MA_LK            encounter_id           code
        STT              line_number            int
        MA_DICH_VU       service_code           code
        MA_CHI_SO        indicator_code         code
        TEN_CHI_SO       indicator_name         text
        GIA_TRI          value                  text
        DON_VI_DO        unit                   text
        MO_TA            description            text
        KET_LUAN         conclusion             text
        NGAY_KQ          reported_at            instant
        MA_BS_DOC_KQ     reader_codes           codes
        DU_PHONG         reserve                text
        """
    ),
)

CLINICAL_COURSE = Table(
    "XML5",
    "clinical_course",
    "CHITIEU_CHITIET_DIENBIENLAMSANG",
    ("DSACH_CHI_TIET_DIEN_BIEN_BENH", "CHI_TIET_DIEN_BIEN_BENH"),
    _cols(
        """
        MA_LK            encounter_id           code
        STT              line_number            int
        DIEN_BIEN_LS     note                   text
        GIAI_DOAN_BENH   disease_stage          text
        HOI_CHAN         consultation           text
        PHAU_THUAT       surgery_note           text
        THOI_DIEM_DBLS   noted_at               instant
        NGUOI_THUC_HIEN  author_codes           codes
        DU_PHONG         reserve                text
        """
    ),
)

# XML7 MA_BENH_CHINH / MA_BENH_KT are not in the 3176 annex, but real exports carry the discharge
# diagnosis codes there (REAL_EXPORTS.md: 18 of 26 stays with an empty XML1 main code have them);
# the main code is taken from XML7 when XML1's is empty or malformed (icd10.resolve_main_icd10).
DISCHARGE_PAPERS = Table(
    "XML7",
    "discharge_papers",
    "CHI_TIEU_DU_LIEU_GIAY_RA_VIEN",
    (),
    _cols(
        """
        MA_LK            encounter_id           code
        SO_LUU_TRU       archive_number         code
        MA_YTE           patient_code           code
        MA_KHOA_RV       discharge_department   code
        NGAY_VAO         admitted_at            instant
        NGAY_RA          discharged_at          instant
        MA_DINH_CHI_THAI is_pregnancy_terminated code
        NGUYENNHAN_DINHCHI termination_reason   text
        THOIGIAN_DINHCHI terminated_at          instant
        TUOI_THAI        gestation_weeks        int
        CHAN_DOAN_RV     discharge_diagnosis    text
        PP_DIEUTRI       treatment_method       text
        GHI_CHU          note                   text
        MA_TTDV          facility_head_code     code
        MA_BS            department_head_code   code
        TEN_BS           department_head_name   text
        NGAY_CT          issued_on              date
        MA_CHA           father_insurance_number code
        MA_ME            mother_insurance_number code
        MA_THE_TAM       temporary_card         code
        HO_TEN_CHA       father_name            text
        HO_TEN_ME        mother_name            text
        SO_NGAY_NGHI     leave_days             int
        NGOAITRU_TUNGAY  leave_from             date
        NGOAITRU_DENNGAY leave_to               date
        DU_PHONG         reserve                text
        MA_BENH_CHINH    main_icd10             code
        MA_BENH_KT       secondary_icd10        codes
        """
    ),
)

SUMMARIES = Table(
    "XML8",
    "summaries",
    "CHI_TIEU_DU_LIEU_TOM_TAT_HO_SO_BENH_AN",
    (),
    _cols(
        """
        MA_LK            encounter_id           code
        MA_LOAI_KCB      visit_type             code
        HO_TEN_CHA       father_name            text
        HO_TEN_ME        mother_name            text
        NGUOI_GIAM_HO    guardian_name          text
        DON_VI           employer               text
        NGAY_VAO         admitted_at            instant
        NGAY_RA          discharged_at          instant
        CHAN_DOAN_VAO    admission_diagnosis    text
        CHAN_DOAN_RV     discharge_diagnosis    text
        QT_BENHLY        medical_history        text
        TOMTAT_KQ        paraclinical_summary   text
        PP_DIEUTRI       treatment_method       text
        NGAY_SINHCON     child_born_on          date
        NGAY_CONCHET     child_died_on          date
        SO_CONCHET       children_died          int
        KET_QUA_DTRI     result_code            code
        GHI_CHU          note                   text
        MA_TTDV          facility_head_code     code
        NGAY_CT          issued_on              date
        MA_THE_TAM       temporary_card         code
        DU_PHONG         reserve                text
        """
    ),
)

# The patient's address, card and stay: a transfer paper (XML13) and a follow-up paper (XML14)
# repeat them from XML1.
_ADDRESS_CARD_STAY = """
        DIA_CHI          address                text
        MA_THE_BHYT      insurance_card         codes
        GT_THE_DEN       card_valid_to          dates
        NGAY_VAO         admitted_at            instant
        NGAY_VAO_NOI_TRU inpatient_at           instant
        NGAY_RA          discharged_at          instant
"""

REFERRALS = Table(
    "XML13",
    "referrals",
    "CHI_TIEU_GIAYCHUYENTUYEN",
    (),
    _cols(
        f"""
        MA_LK            encounter_id           code
        SO_HOSO          record_number          code
        SO_CHUYENTUYEN   referral_book_number   code
        GIAY_CHUYEN_TUYEN referral_number       code
        MA_CSKCB         issuing_facility       code
        MA_CSKCB_DI      from_facility          code
        MA_CSKCB_DEN     to_facility            code
        HO_TEN           patient_name           text
        NGAY_SINH        birth_date             birth
        GIOI_TINH        sex_code               code
        MA_QUOCTICH      nationality_code       code
        MA_DANTOC        ethnicity_code         code
        MA_NGHE_NGHIEP   occupation_code        code
        {_ADDRESS_CARD_STAY}
        DAU_HIEU_LS      clinical_signs         text
        CHAN_DOAN_RV     discharge_diagnosis    text
        QT_BENHLY        medical_history        text
        TOMTAT_KQ        paraclinical_summary   text
        PP_DIEUTRI       treatment_method       text
        MA_BENH_CHINH    main_icd10             code
        MA_BENH_KT       secondary_icd10        codes
        MA_BENH_YHCT     traditional_codes      codes
        TEN_DICH_VU      service_names          text
        TEN_THUOC        drug_names             text
        TINH_TRANG_CT    condition_at_transfer  text
        MA_LOAI_RV       discharge_type_code    code
        MA_LYDO_CT       referral_reason_code   code
        HUONG_DIEU_TRI   treatment_plan         text
        PHUONGTIEN_VC    transport              text
        HOTEN_NGUOI_HT   escort_name            text
        CHUCDANH_NGUOI_HT escort_title          text
        MA_BAC_SI        physician_codes        codes
        MA_TTDV          facility_head_code     code
        DU_PHONG         reserve                text
        """
    ),
    aliases=(("MA_NOI_DI", "MA_CSKCB_DI"), ("MA_NOI_DEN", "MA_CSKCB_DEN"), ("PP_DIEU_TRI", "TINH_TRANG_CT")),
)

FOLLOW_UPS = Table(
    "XML14",
    "follow_ups",
    "CHI_TIEU_GIAYHEN_KHAMLAI",
    (),
    _cols(
        f"""
        MA_LK            encounter_id           code
        SO_GIAYHEN_KL    appointment_number     code
        MA_CSKCB         issuing_facility       code
        HO_TEN           patient_name           text
        NGAY_SINH        birth_date             birth
        GIOI_TINH        sex_code               code
        {_ADDRESS_CARD_STAY}
        NGAY_HEN_KL      appointment_on         date
        CHAN_DOAN_RV     discharge_diagnosis    text
        MA_BENH_CHINH    main_icd10             code
        MA_BENH_KT       secondary_icd10        codes
        MA_BENH_YHCT     traditional_codes      codes
        MA_DOITUONG_KCB  patient_category       code
        MA_BAC_SI        physician_codes        codes
        MA_TTDV          facility_head_code     code
        NGAY_CT          issued_on              date
        DU_PHONG         reserve                text
        """
    ),
)

TABLES: tuple[Table, ...] = (
    ENCOUNTERS,
    DRUGS,
    SERVICES,
    LAB_RESULTS,
    CLINICAL_COURSE,
    DISCHARGE_PAPERS,
    SUMMARIES,
    REFERRALS,
    FOLLOW_UPS,
)
TABLES_BY_LOAIHOSO = {t.loaihoso: t for t in TABLES}
TABLES_BY_DATASET = {t.dataset: t for t in TABLES}

# Tables of the standard the health book does not use: kept raw (base64 payload size and
# a hash) and counted, never dropped silently.
RAW_ONLY_TABLES = ("XML0", "XML6", "XML9", "XML10", "XML11", "XML12", "XML15")

# Columns every staged row carries besides its declared ones (lineage and identity).
LINEAGE_COLUMNS = (
    "night",  # date of the delivery night (partition)
    "facility_code",  # envelope MACSKCB: the facility that sent the file
    "encounter_id",  # MA_LK
    "version",  # 1 for the first receipt of (facility_code, encounter_id), +1 each re-send
    "source_file",  # path relative to <extracts>/<night>
    "hoso_index",  # 0-based position of the HOSO in the envelope
    "row_index",  # 0-based position of the row in its inner table
    "row_warnings",  # list of warning codes raised while typing this row
)
# ... and their Arrow types
LINEAGE_TYPES = {
    "night": pa.date32(),
    "facility_code": pa.string(),
    "encounter_id": pa.string(),
    "version": pa.int64(),
    "source_file": pa.string(),
    "hoso_index": pa.int64(),
    "row_index": pa.int64(),
    "row_warnings": pa.list_(pa.string()),
}


def spec_fields() -> list[dict[str, str]]:
    """All 481 fields of the standard as the 3176 annex lists them (one dict per field)."""
    with SPEC_CSV.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def max_lengths(loaihoso: str) -> dict[str, int]:
    """Maximum length of each field of one table, for fields with a numeric limit."""
    out = {}
    for row in spec_fields():
        if row["table"] == loaihoso and row["max_len"].isdigit():
            out[row["field"]] = int(row["max_len"])
    return out
