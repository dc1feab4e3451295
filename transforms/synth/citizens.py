"""Synthetic citizens: the identity-registry snapshot of a generated night.

A citizen is a pure function of (seed, index): every attribute is drawn from a counter-based hash
of the two (splitmix64), vectorized with numpy, so the registry is written in fixed-size chunks
and an encounter can re-derive its patient without the registry ever being held in memory.

Identifiers are unique by construction (injective in the index), and agree with sex and birth year:
- citizen ID (12 digits) = birth-province code (3) + century/sex digit + 2-digit year + 6 digits,
  where the 6 digits are an affine permutation of `index mod 10^6` and the province is offset by
  `index div 10^6`, so two indices never share an ID (up to 63 million citizens);
- social-insurance number (10 digits) = residence province (2) + permutation of the index (8);
- old 9-digit ID card number = permutation of the index, for part of the adults.

Ages are relative to a fixed REFERENCE_DATE (not the night), so a citizen is the same person in
every night generated with the same seed. Some odd indices are "twins" of the index before them:
same name, birth date, sex, province and ward, different identifiers; a record that carries only
those demographics is indistinguishable between them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.synth import vocab

REFERENCE_DATE = dt.date(2026, 1, 1)
MAX_CITIZENS = 62_000_000  # the ID construction is injective below 63 * 10^6
REGISTRY_CHUNK_ROWS = 200_000  # rows per Parquet row group; the writer never holds more
REGISTRY_FILE_ROWS = 2_000_000  # rows per part file
TWIN_RATE = 0.004  # share of odd indices that copy the demographics of the index before them


@dataclass(frozen=True)
class IdentityProfile:
    """How hard the generated night is for identity (`generate_night(..., identity_profile=)`).

    The registry side: `twin_rate` of the odd indices copy the name, birth date and sex of the
    index before them (so about that share of citizens has a namesake), and `twin_same_residence`
    of those also copy the province and ward (then a record without an identifier cannot tell
    the two apart). The patient side, for the patients with no ID and no card (`self_pay_rate` of
    the encounters): each slip of NO_ID_NOISE independently at its rate; `unique_no_id_patients`
    draws them only among citizens nobody else resembles (the mild default)."""

    twin_rate: float = TWIN_RATE
    twin_same_residence: float = 1.0
    self_pay_rate: float = 0.02
    unique_no_id_patients: bool = True
    # None: one slip at most, drawn by the generator's SELF_PAY_NOISE rule (the default night)
    no_id_noise: tuple[tuple[str, float], ...] | None = None


# the slips of a patient with no ID; movers are "moved_ward" (same province) or
# "moved_province" (another province and ward): 20% in all, 30% of them to another province
NO_ID_NOISE_HARD = (
    ("moved_ward", 0.14),
    ("moved_province", 0.06),
    ("birth_year_only", 0.10),
    ("dropped_middle_name", 0.10),
    ("name_typo", 0.10),
    ("dob_day_month_swapped", 0.06),
)
IDENTITY_PROFILES = {
    "default": IdentityProfile(),
    # the issue #18 night: ~30% of citizens share full name, birth date and sex with another,
    # 10% of patients with no ID and no card at all, 20% of them movers
    "hard": IdentityProfile(
        twin_rate=0.30,
        twin_same_residence=0.05,
        self_pay_rate=0.10,
        unique_no_id_patients=False,
        no_id_noise=NO_ID_NOISE_HARD,
    ),
}


def identity_profile(name: str) -> IdentityProfile:
    if name not in IDENTITY_PROFILES:
        raise ValueError(f"unknown identity profile {name!r} (one of {sorted(IDENTITY_PROFILES)})")
    return IDENTITY_PROFILES[name]


REGISTRY_SCHEMA = pa.schema(
    [
        ("citizen_id", pa.string()),
        ("old_id_number", pa.string()),
        ("social_insurance_number", pa.string()),
        ("full_name", pa.string()),
        ("birth_date", pa.string()),
        ("sex", pa.string()),
        ("ethnicity_code", pa.string()),
        ("nationality_code", pa.string()),
        ("province_code", pa.string()),
        ("ward_code", pa.string()),
        ("blood_group", pa.string()),
        ("death_date", pa.string()),
    ]
)

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)

# Hash streams: one per attribute so attributes are independent.
_S_SEX, _S_AGE, _S_DAY, _S_FAMILY, _S_MIDDLE, _S_GIVEN, _S_PARTIAL = 1, 2, 3, 4, 5, 6, 7
_S_ETHNIC, _S_BLOOD, _S_BLOOD_KNOWN, _S_MOVE, _S_PROVINCE, _S_WARD, _S_OLD_ID = 8, 9, 10, 11, 12, 13, 14
_S_DEATH, _S_DEATH_DAY, _S_TWIN, _S_ID_PROVINCE, _S_OCCUPATION, _S_GIVEN2 = 15, 16, 17, 18, 19, 20
_S_TWIN_HOME = 21


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash64(seed: int, index: np.ndarray, stream: int) -> np.ndarray:
    """A 64-bit hash of (seed, index, stream) for each index: the generator's only randomness."""
    key = _splitmix(np.array([seed * 1_000_003 + stream], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        return _splitmix(_splitmix(index.astype(np.uint64) ^ key) + key)


def uniform(seed: int, index: np.ndarray, stream: int) -> np.ndarray:
    """Uniform floats in [0, 1), one per index."""
    return (hash64(seed, index, stream) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def weighted_choice(u: np.ndarray, weights: list[float] | tuple[float, ...]) -> np.ndarray:
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64))
    return np.minimum(np.searchsorted(cumulative / cumulative[-1], u, side="right"), len(weights) - 1)


def _affine_params(seed: int, modulus: int, stream: int) -> tuple[int, int]:
    """Multiplier coprime to 10 and an offset: x -> (a*x + b) mod 10^k is a permutation."""
    h = int(hash64(seed, np.array([modulus], dtype=np.int64), stream)[0])
    a = (h % (modulus // 10)) * 10 + (1, 3, 7, 9)[h % 4]
    return a, (h >> 20) % modulus


# Ages 0..100: a flat-then-falling pyramid close to the 2024 census shape.
_AGE_WEIGHTS = [1.45] * 15 + [1.55] * 35 + [1.3] * 10 + [1.0] * 10 + [0.5] * 10 + [0.2] * 10 + [0.05] * 11
_BIRTH_PROVINCE_CODES = [p[0] for p in vocab.BIRTH_PROVINCES]
_BIRTH_PROVINCE_INDEX = {code: k for k, code in enumerate(_BIRTH_PROVINCE_CODES)}
_NEW_PROVINCE_OF_BIRTH = np.array([p[1] for p in vocab.BIRTH_PROVINCES])
_PROVINCE_WEIGHTS = [p[2] for p in vocab.BIRTH_PROVINCES]
_PROVINCE_CODES = np.array(sorted(vocab.PROVINCES))
_NEW_PROVINCE_INDEX = np.searchsorted(_PROVINCE_CODES, _NEW_PROVINCE_OF_BIRTH)
_WARD_TABLE = np.array([[w[0] for w in vocab.province_wards(p)] for p in _PROVINCE_CODES])


def _text(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values).astype(object), type=pa.string())


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal text of each integer (object array); faster than numpy.char.mod."""
    text = pc.utf8_lpad(pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string()), width, "0")
    return text.to_numpy(zero_copy_only=False)


def _feistel(x: np.ndarray, seed: int, half: int, stream: int, inverse: bool = False) -> np.ndarray:
    """A keyed permutation of [0, half^2): four Feistel rounds on the two base-`half` digits."""
    left, right = x // half, x % half
    rounds = range(4)
    if not inverse:
        for k in rounds:
            left, right = (
                right,
                (left + (hash64(seed, right, stream * 16 + k) % np.uint64(half)).astype(np.int64)) % half,
            )
    else:
        for k in reversed(rounds):
            left, right = (
                (right - (hash64(seed, left, stream * 16 + k) % np.uint64(half)).astype(np.int64)) % half,
                left,
            )
    return left * half + right


@dataclass
class Citizens:
    """A columnar batch of citizens, one position per requested index (numpy arrays)."""

    index: np.ndarray
    citizen_id: np.ndarray
    old_id_number: np.ndarray  # "" when none
    social_insurance_number: np.ndarray
    family: np.ndarray
    middle: np.ndarray  # "" when none
    given: np.ndarray
    birth_date: np.ndarray  # yyyymmdd, 00 for an unknown day or month
    birth_year: np.ndarray
    sex: np.ndarray  # "1" male, "2" female
    ethnicity_code: np.ndarray
    occupation_code: np.ndarray
    province_code: np.ndarray
    ward_code: np.ndarray
    blood_group: np.ndarray  # "" when unknown
    death_date: np.ndarray  # "" when alive
    is_twin: np.ndarray  # copies the demographics of index - 1

    @property
    def full_name(self) -> pa.Array:
        joined = pc.binary_join_element_wise(
            _text(self.family),
            _text(self.middle),
            _text(self.given),
            " ",
        )
        return pc.replace_substring(joined, "  ", " ")  # no middle name

    def __len__(self) -> int:
        return len(self.index)

    def row(self, k: int) -> dict[str, object]:
        """One citizen as a dict (field -> value), for building an encounter."""
        return {
            "index": int(self.index[k]),
            "citizen_id": str(self.citizen_id[k]),
            "old_id_number": str(self.old_id_number[k]),
            "social_insurance_number": str(self.social_insurance_number[k]),
            "family": str(self.family[k]),
            "middle": str(self.middle[k]),
            "given": str(self.given[k]),
            "full_name": " ".join(p for p in (self.family[k], self.middle[k], self.given[k]) if p),
            "birth_date": str(self.birth_date[k]),
            "birth_year": int(self.birth_year[k]),
            "sex": str(self.sex[k]),
            "ethnicity_code": str(self.ethnicity_code[k]),
            "occupation_code": str(self.occupation_code[k]),
            "province_code": str(self.province_code[k]),
            "ward_code": str(self.ward_code[k]),
            "blood_group": str(self.blood_group[k]),
            "death_date": str(self.death_date[k]),
            "is_twin": bool(self.is_twin[k]),
        }

    def to_arrow(self) -> pa.Table:
        """The registry snapshot rows (INTERFACES.md columns, all strings, nulls for unknowns)."""

        def nullable(values: np.ndarray) -> pa.Array:
            values = values.astype(object)
            return pa.array(values, type=pa.string(), mask=values == "")

        return pa.table(
            {
                "citizen_id": _text(self.citizen_id),
                "old_id_number": nullable(self.old_id_number),
                "social_insurance_number": _text(self.social_insurance_number),
                "full_name": self.full_name,
                "birth_date": _text(self.birth_date),
                "sex": _text(self.sex),
                "ethnicity_code": _text(self.ethnicity_code),
                "nationality_code": pa.array([vocab.NATIONALITY_VN] * len(self), type=pa.string()),
                "province_code": _text(self.province_code),
                "ward_code": _text(self.ward_code),
                "blood_group": nullable(self.blood_group),
                "death_date": nullable(self.death_date),
            },
            schema=REGISTRY_SCHEMA,
        )


def _demographics(seed: int, src: np.ndarray) -> dict[str, np.ndarray]:
    """Name, birth, sex and residence of the indices `src` (twins pass their anchor's index)."""
    n = len(src)
    sex = np.where(uniform(seed, src, _S_SEX) < 0.5, "1", "2")
    age = weighted_choice(uniform(seed, src, _S_AGE), _AGE_WEIGHTS)
    day_offset = (uniform(seed, src, _S_DAY) * 365).astype(np.int64)
    ref = np.datetime64(REFERENCE_DATE.isoformat())
    born = ref - (np.round(age * 365.25).astype(np.int64) + day_offset + 1).astype("timedelta64[D]")
    year = born.astype("datetime64[Y]").astype(np.int64) + 1970
    month_start = born.astype("datetime64[M]")
    yyyy = _digits(year, 4)
    mm = _digits(month_start.astype(np.int64) % 12 + 1, 2)
    dd = _digits((born - month_start.astype("datetime64[D]")).astype(np.int64) + 1, 2)
    # Elderly people registered from incomplete papers: unknown day (or day and month).
    partial = uniform(seed, src, _S_PARTIAL)
    old = year < 1950
    dd = np.where(old & (partial < 0.15), "00", dd)
    mm = np.where(old & (partial < 0.05), "00", mm)
    birth_date = yyyy + mm + dd

    is_male = sex == "1"
    family = np.array([f for f, _ in vocab.FAMILY_NAMES], dtype=object)[
        weighted_choice(uniform(seed, src, _S_FAMILY), [w for _, w in vocab.FAMILY_NAMES])
    ]
    u_mid = uniform(seed, src, _S_MIDDLE)
    u_giv = uniform(seed, src, _S_GIVEN)
    middle = np.where(
        is_male,
        np.array([m for m, _ in vocab.MIDDLE_NAMES_MALE], dtype=object)[
            weighted_choice(u_mid, [w for _, w in vocab.MIDDLE_NAMES_MALE])
        ],
        np.array([m for m, _ in vocab.MIDDLE_NAMES_FEMALE], dtype=object)[
            weighted_choice(u_mid, [w for _, w in vocab.MIDDLE_NAMES_FEMALE])
        ],
    )
    given_m = np.array([g for g, _ in vocab.GIVEN_NAMES_MALE], dtype=object)
    given_f = np.array([g for g, _ in vocab.GIVEN_NAMES_FEMALE], dtype=object)
    given = np.where(
        is_male,
        given_m[weighted_choice(u_giv, [w for _, w in vocab.GIVEN_NAMES_MALE])],
        given_f[weighted_choice(u_giv, [w for _, w in vocab.GIVEN_NAMES_FEMALE])],
    )
    # A share of younger people carry a two-syllable given name ("Minh Anh", "Gia Bảo").
    u_two = uniform(seed, src, _S_GIVEN2)
    second = np.where(
        is_male,
        given_m[(u_two * 1e6).astype(np.int64) % len(given_m)],
        given_f[(u_two * 1e6).astype(np.int64) % len(given_f)],
    )
    two = (u_two < 0.06) & (year >= 1990) & (second != given)
    given = np.where(two, second + " " + given, given)

    ethnicity = np.array([c for c, _ in vocab.ETHNICITIES])[
        weighted_choice(uniform(seed, src, _S_ETHNIC), [w for _, w in vocab.ETHNICITIES])
    ]
    occupation = np.array([c for c, _ in vocab.OCCUPATIONS])[
        weighted_choice(uniform(seed, src, _S_OCCUPATION), [w for _, w in vocab.OCCUPATIONS])
    ]
    occupation = np.where(
        (year >= REFERENCE_DATE.year - 15) | (year < REFERENCE_DATE.year - 75), "00", occupation
    )

    # Residence: most people live in the (merged) province where they were born; others moved,
    # weighted by population (towards Hà Nội and Hồ Chí Minh City).
    home = np.where(
        uniform(seed, src, _S_PROVINCE + 100) < 0.5,
        _id_province_index(seed, src),
        weighted_choice(uniform(seed, src, _S_PROVINCE), _PROVINCE_WEIGHTS),
    )
    moved_to = weighted_choice(uniform(seed, src, _S_MOVE), _PROVINCE_WEIGHTS)
    moved = uniform(seed, src, _S_MOVE + 100) < 0.2
    province_pick = _NEW_PROVINCE_INDEX[np.where(moved, moved_to, home)]
    province = _PROVINCE_CODES[province_pick]
    ward_pick = (hash64(seed, src, _S_WARD) % np.uint64(vocab.WARDS_PER_PROVINCE)).astype(np.int64)
    ward = _WARD_TABLE[province_pick, ward_pick]
    blood = np.where(
        uniform(seed, src, _S_BLOOD_KNOWN) < 0.3,
        np.array([b for b, _ in vocab.BLOOD_GROUPS])[
            weighted_choice(uniform(seed, src, _S_BLOOD), [w for _, w in vocab.BLOOD_GROUPS])
        ],
        "",
    )
    return {
        "sex": sex,
        "birth_date": birth_date,
        "birth_year": year,
        "age": age,
        "family": family,
        "middle": middle,
        "given": given,
        "ethnicity_code": ethnicity,
        "occupation_code": occupation,
        "province_code": province,
        "ward_code": ward,
        "blood_group": blood,
        "n": np.full(n, n),
    }


def _id_province_index(seed: int, index: np.ndarray) -> np.ndarray:
    r = index % 1_000_000
    offset = (hash64(seed, r, _S_ID_PROVINCE) % np.uint64(63)).astype(np.int64)
    return (index // 1_000_000 + offset) % 63


def derive_citizens(seed: int, index: np.ndarray, profile: str = "default") -> Citizens:
    """The citizens at the given registry indices (any order, repeats allowed), derived from the seed
    and the identity profile (IDENTITY_PROFILES: how many citizens share name, birth and sex).

    Indices at or beyond the registry size are valid too: they are people absent from the snapshot.
    """
    index = np.asarray(index, dtype=np.int64)
    if len(index) and (index.min() < 0 or index.max() >= MAX_CITIZENS):
        raise ValueError(f"citizen index out of range 0..{MAX_CITIZENS - 1}")
    shape = identity_profile(profile)
    is_twin = (index % 2 == 1) & ((uniform(seed, index, _S_TWIN) < shape.twin_rate) | (index == 1))
    src = np.where(is_twin, index - 1, index)
    d = _demographics(seed, src)
    if shape.twin_same_residence < 1.0:
        # a namesake living elsewhere: name, birth and sex copied, province and ward their own
        own_home = is_twin & (uniform(seed, index, _S_TWIN_HOME) >= shape.twin_same_residence)
        if own_home.any():
            own = _demographics(seed, index[own_home])
            for column in ("province_code", "ward_code"):
                d[column] = d[column].copy()
                d[column][own_home] = own[column]

    century_sex = np.where(d["birth_year"] >= 2000, 2, 0) + np.where(d["sex"] == "1", 0, 1)
    a6, b6 = _affine_params(seed, 1_000_000, 1)
    random6 = _feistel((a6 * (index % 1_000_000) + b6) % 1_000_000, seed, 1000, 1)
    id_province = np.array(_BIRTH_PROVINCE_CODES)[_id_province_index(seed, index)]
    citizen_id = (
        id_province.astype(object)
        + century_sex.astype(str).astype(object)
        + _digits(d["birth_year"] % 100, 2)
    ) + _digits(random6, 6)
    a8, b8 = _affine_params(seed, 100_000_000, 2)
    sin = d["province_code"].astype(object) + _digits(
        _feistel((a8 * index + b8) % 100_000_000, seed, 10_000, 2), 8
    )
    a9, b9 = _affine_params(seed, 1_000_000_000, 3)
    old = (a9 * index + b9) % 1_000_000_000
    old_id = _digits(old // 100_000_000 * 100_000_000 + _feistel(old % 100_000_000, seed, 10_000, 3), 9)
    has_old_id = (d["birth_year"] < 2005) & (uniform(seed, index, _S_OLD_ID) < 0.6)
    old_id = np.where(has_old_id, old_id, "")

    dead = (d["age"] >= 60) & (uniform(seed, index, _S_DEATH) < 0.02)
    died = np.datetime64(REFERENCE_DATE.isoformat()) - (
        (uniform(seed, index, _S_DEATH_DAY) * 700).astype(np.int64) + 1
    ).astype("timedelta64[D]")
    died_days = died.astype("datetime64[D]")
    died_month = died_days.astype("datetime64[M]")
    died_text = (
        _digits(died_month.astype("datetime64[Y]").astype(np.int64) + 1970, 4)
        + _digits(died_month.astype(np.int64) % 12 + 1, 2)
        + _digits((died_days - died_month.astype("datetime64[D]")).astype(np.int64) + 1, 2)
    )
    death_date = np.where(dead, died_text, "")
    return Citizens(
        index=index,
        citizen_id=citizen_id,
        old_id_number=old_id,
        social_insurance_number=sin,
        family=d["family"],
        middle=d["middle"],
        given=d["given"],
        birth_date=d["birth_date"],
        birth_year=d["birth_year"],
        sex=d["sex"],
        ethnicity_code=d["ethnicity_code"],
        occupation_code=d["occupation_code"],
        province_code=d["province_code"],
        ward_code=d["ward_code"],
        blood_group=d["blood_group"],
        death_date=death_date,
        is_twin=is_twin,
    )


def citizen_index_of(seed: int, citizen_id: str, citizens: int, profile: str = "default") -> int | None:
    """The registry index that holds `citizen_id`, or None when no citizen of the snapshot has it.

    Inverts the ID construction, so a typo'd ID can be checked against the registry unread."""
    if len(citizen_id) != 12 or not citizen_id.isdigit() or citizen_id[:3] not in _BIRTH_PROVINCE_INDEX:
        return None
    a6, b6 = _affine_params(seed, 1_000_000, 1)
    mixed = int(_feistel(np.array([int(citizen_id[6:])]), seed, 1000, 1, inverse=True)[0])
    r = (pow(a6, -1, 1_000_000) * (mixed - b6)) % 1_000_000
    offset = int(hash64(seed, np.array([r], dtype=np.int64), _S_ID_PROVINCE)[0] % np.uint64(63))
    q = (_BIRTH_PROVINCE_INDEX[citizen_id[:3]] - offset) % 63
    i = q * 1_000_000 + r
    if i >= citizens:
        return None
    return i if str(derive_citizens(seed, np.array([i]), profile).citizen_id[0]) == citizen_id else None


def registry_chunks(
    seed: int, citizens: int, chunk_rows: int = REGISTRY_CHUNK_ROWS, profile: str = "default"
) -> Iterator[pa.Table]:
    """The registry snapshot as Arrow tables of at most `chunk_rows` rows, in index order."""
    for start in range(0, citizens, chunk_rows):
        yield derive_citizens(seed, np.arange(start, min(start + chunk_rows, citizens)), profile).to_arrow()


def write_registry(
    out_dir: Path,
    seed: int,
    citizens: int,
    chunk_rows: int = REGISTRY_CHUNK_ROWS,
    file_rows: int = REGISTRY_FILE_ROWS,
    profile: str = "default",
) -> list[Path]:
    """Write the snapshot as `part-00000.parquet`... (zstd), streaming one chunk at a time."""
    if citizens > MAX_CITIZENS:
        raise ValueError(f"at most {MAX_CITIZENS} citizens")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    writer: pq.ParquetWriter | None = None
    rows_in_file = 0
    for table in registry_chunks(seed, citizens, chunk_rows, profile):
        if writer is None or rows_in_file >= file_rows:
            if writer is not None:
                writer.close()
            paths.append(out_dir / f"part-{len(paths):05d}.parquet")
            writer = pq.ParquetWriter(paths[-1], REGISTRY_SCHEMA, compression="zstd")
            rows_in_file = 0
        writer.write_table(table, row_group_size=chunk_rows)
        rows_in_file += table.num_rows
    if writer is not None:
        writer.close()
    return paths


def draw_no_id_noise(profile: IdentityProfile, patient: dict[str, object], rng) -> list[str]:
    """The slips of one patient with no ID and no card, each independently at its profile rate
    (a slip that cannot apply, such as dropping a middle name the patient does not have, is skipped)."""
    birth = str(patient["birth_date"])
    day, month = birth[6:8], birth[4:6]
    applies = {
        "dob_day_month_swapped": day != "00" and month != "00" and int(day) <= 12 and day != month,
        "dropped_middle_name": bool(patient["middle"]),
        "birth_year_only": month != "00",
    }
    noise = [n for n, rate in profile.no_id_noise or () if rng.random() < rate and applies.get(n, True)]
    if "moved_province" in noise and "moved_ward" in noise:
        noise.remove("moved_ward")  # one move at most
    if "birth_year_only" in noise and "dob_day_month_swapped" in noise:
        noise.remove("dob_day_month_swapped")  # nothing left to swap
    return noise
