"""Planning a night's patients: facilities, their jobs, and the registry citizens each facility draws its patients from."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from transforms.synth import vocab
from transforms.synth.citizens import (
    citizen_index_of,
    derive_citizens,
)
from transforms.synth.citizens import identity_profile as _identity_profile
from transforms.synth.parts import Facility
from transforms.synth.rates import SETTINGS, GeneratorSettings

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


def split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


_FOLD = "lower(strip_accents(replace(replace({x}, 'Đ', 'D'), 'đ', 'd')))"


def identity_pools(
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


def other_ward(patient: dict[str, object], rng: random.Random) -> str:
    wards = [w for w, _ in vocab.province_wards(str(patient["province_code"])) if w != patient["ward_code"]]
    return rng.choice(wards)


def typo_id(seed: int, citizen_id: str, citizens: int, rng: random.Random, profile: str = "default") -> str:
    """The citizen ID with one of its 6 random digits mistyped, into an ID nobody in the registry has."""
    for _ in range(50):
        k = rng.randrange(6, 12)
        digit = rng.choice([d for d in "0123456789" if d != citizen_id[k]])
        typo = citizen_id[:k] + digit + citizen_id[k + 1 :]
        if citizen_index_of(seed, typo, citizens, profile) is None:
            return typo
    raise RuntimeError("no free typo")  # pragma: no cover - 50 collisions in a row is impossible here


PATIENT_CANDIDATES = 50_000  # registry citizens a facility draws its patients from


class PatientSource:
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
