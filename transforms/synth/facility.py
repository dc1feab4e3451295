"""One facility's night: each encounter planned (defects, quirks, identity noise), built and packed into files."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import numpy as np

from transforms.synth.citizens import (
    derive_citizens,
    draw_no_id_noise,
)
from transforms.synth.citizens import identity_profile as _identity_profile
from transforms.synth.encounters import build_tables
from transforms.synth.envelope import (
    BILLION_LAUGHS,
    RAW_TABLE_PATHS,
    broken_base64,
    envelope_bytes,
    inner_xml,
)
from transforms.synth.parts import EncounterPlan
from transforms.synth.patients import FacilityJob, PatientSource, other_ward, typo_id
from transforms.synth.rates import (
    BLOCKING_DEFECTS,
    CODE_SHAPES,
    DRIFT_RELATIONS,
    FILE_DEFECTS,
    ID_NOISE,
    LATE_DEFECTS,
    NAME_FORM_NOISE,
    QUIRKS,
    SELF_PAY_NOISE,
    GeneratorSettings,
)


def _one_of(
    kinds: tuple[str, ...], s: GeneratorSettings, forced_names: set[str], forced: bool, rng: random.Random
) -> list[str]:
    """The kinds a plan forces, else at most one kind drawn at its `<kind>_rate` (one draw of `rng`)."""
    chosen = [k for k in kinds if k in forced_names]
    if not chosen and not forced:
        r, acc = rng.random(), 0.0
        for k in kinds:
            acc += getattr(s, f"{k}_rate")
            if r < acc:
                return [k]
    return chosen


def _plan_encounter(
    job: FacilityJob, k: int, rng: random.Random, patients: PatientSource, pools: dict[str, list[int]]
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
        id_noise = _one_of(ID_NOISE, s, forced_names, bool(forced), rng)
        name_noise = _one_of(NAME_FORM_NOISE, s, forced_names, bool(forced), rng)
        noise = id_noise + name_noise
        patient = patients.draw(need_old_id="old_id_in_cccd" in noise)
        if "id_one_digit_typo" in noise:
            patient["_typo_id"] = typo_id(
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
                    patient["_typo_id"] = typo_id(
                        job.seed, str(patient["citizen_id"]), job.citizens, rng, s.identity_profile
                    )
        blocking = _one_of(BLOCKING_DEFECTS, s, forced_names, bool(forced), rng)
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
    patients = PatientSource(job, rng)
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
                plan, job.night, job.facility, rng, hoso_index + 1, other_ward(plan.patient, rng)
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
