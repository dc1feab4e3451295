"""The report's memory: each facility's last 30 nights, its rank in its province, and the silence
and volume alerts.

Figures of a night come from its ledger (`runs/<D>/ledger.json`: received, loaded, quarantined by
reason, the same numbers the conservation check proved), check failures and warnings from its
findings (`quarantine/findings/night=<D>/{ingest,quality}.parquet`), and "waiting" (versions
quarantined and kept in `state/pending.parquet` for a later night) from what the report of that
night recorded in `quality/<D>/data/facilities.parquet` (the pending list is state: last month's
cannot be rebuilt). A night without a ledger (the report of a night whose load has not run) takes
tonight's figures from the caller.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from transforms.core.safe_io import write_json_atomic
from transforms.core.warehouse import Warehouse

HISTORY_NIGHTS = 30
# alerts: tonight against the same weekday of the last 28 nights (4 earlier nights), so a quiet
# Sunday is compared with earlier Sundays and a normal weekend drop raises nothing
ALERT_WINDOW_NIGHTS = 28
VOLUME_DROP_SHARE = 0.5
VOLUME_COLUMNS = ["night", "facility_code", "received", "loaded", "quarantined", "warned", "waiting"]
FINDING_KEY = ["facility_code", "encounter_id", "version"]


def province_of(facility_code: str) -> str:
    """XML130.md: a facility code's first 2 characters are its province."""
    return str(facility_code)[:2]


@dataclass
class History:
    """Long frames over the nights that have data, oldest first."""

    nights: list[dt.date]
    volumes: pd.DataFrame  # VOLUME_COLUMNS; waiting is NA where unknown
    reasons: pd.DataFrame  # night, facility_code, reason, n (quarantined versions)
    checks: pd.DataFrame  # night, facility_code, check_id, rows (failing rows)
    sources: dict[dt.date, str] = field(default_factory=dict)  # night -> "ledger" | "tonight"


def read_ledger(warehouse: Warehouse, night: dt.date) -> dict | None:
    path = warehouse.ledger(night)
    return json.loads(path.read_text()) if path.exists() else None


def ledger_frames(ledger: dict, night: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(volumes, reasons) of one night's ledger."""
    rows, reasons = [], []
    for code, f in ledger.get("facilities", {}).items():
        by_reason = f.get("quarantined", {}) or {}
        rows.append(
            {
                "night": night,
                "facility_code": str(code),
                "received": int(f.get("received", 0)),
                "loaded": int(f.get("loaded", 0)),
                "quarantined": int(sum(by_reason.values())),
            }
        )
        reasons += [
            {"night": night, "facility_code": str(code), "reason": str(r), "n": int(n)}
            for r, n in by_reason.items()
        ]
    return (
        pd.DataFrame(rows, columns=["night", "facility_code", "received", "loaded", "quarantined"]),
        pd.DataFrame(reasons, columns=["night", "facility_code", "reason", "n"]),
    )


def read_findings(warehouse: Warehouse, night: dt.date) -> pd.DataFrame:
    """The night's ingest and quality findings, only the columns the history needs."""
    columns = [*FINDING_KEY, "check_id", "severity"]
    folder = warehouse.quarantine("findings", night)
    parts = [
        pd.read_parquet(folder / name, columns=columns)
        for name in ("ingest.parquet", "quality.parquet")
        if (folder / name).exists()
    ]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def findings_frames(findings: pd.DataFrame, night: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(checks: failing rows per facility and check, warned: versions with a warning per facility)."""
    if findings.empty:
        return (
            pd.DataFrame(columns=["night", "facility_code", "check_id", "rows"]),
            pd.DataFrame(columns=["facility_code", "warned"]),
        )
    checks = findings.groupby(["facility_code", "check_id"]).size().rename("rows").reset_index()
    checks.insert(0, "night", night)
    warned = (
        findings[findings["severity"] == "warning"][FINDING_KEY]
        .drop_duplicates()
        .groupby("facility_code")
        .size()
        .rename("warned")
        .reset_index()
    )
    return checks, warned


def data_dir(warehouse: Warehouse, night: dt.date) -> Path:
    return warehouse.quality / night.isoformat() / "data"


def recorded_waiting(warehouse: Warehouse, night: dt.date) -> pd.DataFrame | None:
    path = data_dir(warehouse, night) / "facilities.parquet"
    if not path.exists():
        return None
    return pd.read_parquet(path, columns=["facility_code", "waiting"])


def load_history(
    warehouse: Warehouse,
    night: dt.date,
    tonight: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    nights: int = HISTORY_NIGHTS,
    tonight_findings: pd.DataFrame | None = None,
) -> History:
    """The last `nights` nights up to `night` (inclusive). `tonight`: (volumes, reasons) of `night`
    when its ledger does not exist yet. Nights with neither a ledger nor findings are left out."""
    volumes, reasons, checks, seen, sources = [], [], [], [], {}
    for back in range(nights - 1, -1, -1):
        day = night - dt.timedelta(days=back)
        ledger = read_ledger(warehouse, day)
        if ledger is not None:
            v, r = ledger_frames(ledger, day)
            sources[day] = "ledger"
        elif day == night and tonight is not None:
            v, r = tonight
            sources[day] = "tonight"
        else:
            continue
        findings = (
            tonight_findings
            if day == night and tonight_findings is not None
            else read_findings(warehouse, day)
        )
        c, warned = findings_frames(findings, day)
        v = v.merge(warned, on="facility_code", how="left")
        v["warned"] = v["warned"].fillna(0).astype("int64")
        if day == night and tonight is not None and "waiting" in tonight[0].columns:
            waiting = tonight[0][["facility_code", "waiting"]]  # the pending list as load left it tonight
        else:
            waiting = recorded_waiting(warehouse, day)
        if "waiting" in v.columns and waiting is not None:
            v = v.drop(columns="waiting")
        if waiting is not None:
            v = v.merge(waiting, on="facility_code", how="left")
        elif "waiting" not in v.columns:
            v["waiting"] = pd.NA
        v["waiting"] = v["waiting"].astype("Int64")
        volumes.append(v[VOLUME_COLUMNS])
        reasons.append(r)
        checks.append(c)
        seen.append(day)

    def cat(frames, columns):
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    return History(
        seen,
        cat(volumes, VOLUME_COLUMNS),
        cat(reasons, ["night", "facility_code", "reason", "n"]),
        cat(checks, ["night", "facility_code", "check_id", "rows"]),
        sources,
    )


def province_ranks(tonight: pd.DataFrame) -> pd.DataFrame:
    """Rank of each facility in its province tonight: 1 = the highest share of received versions
    loaded, ties broken by the lower warning rate then the code (a facility that received nothing
    is ranked last). Returns facility_code, province, rank, of."""
    frame = tonight[["facility_code", "received", "loaded", "warned"]].copy()
    frame["province"] = frame["facility_code"].map(province_of)
    got = frame["received"].where(frame["received"] > 0)
    frame["_loaded_share"] = (frame["loaded"] / got).fillna(-1.0)
    frame["_warning_rate"] = (frame["warned"] / got).fillna(1.0)
    frame = frame.sort_values(
        ["province", "_loaded_share", "_warning_rate", "facility_code"], ascending=[True, False, True, True]
    )
    frame["rank"] = frame.groupby("province").cumcount() + 1
    frame["of"] = frame.groupby("province")["facility_code"].transform("size")
    return frame[["facility_code", "province", "rank", "of"]].reset_index(drop=True)


def volume_alerts(history: History, night: dt.date) -> list[dict]:
    """Facilities silent tonight, or under half their median of the same weekday in the last 28
    nights (nights D-7, D-14, D-21, D-28 that have data; a facility absent from such a night's
    ledger sent 0 that night). A facility whose same-weekday median is 0 raises nothing: it does
    not send on that weekday (a commune station closed on Sundays is not silent)."""
    known = set(history.nights)
    earlier = [
        night - dt.timedelta(days=7 * k)
        for k in range(1, ALERT_WINDOW_NIGHTS // 7 + 1)
        if night - dt.timedelta(days=7 * k) in known
    ]
    if not earlier:
        return []
    v = history.volumes
    window = v[v["night"].isin(earlier)]
    tonight = v[v["night"] == night].groupby("facility_code")["received"].sum()
    facilities = sorted(set(window["facility_code"]) | set(tonight.index))
    # facility x earlier night, 0 where a night's ledger does not list the facility
    counts = (
        window.pivot_table(index="facility_code", columns="night", values="received", aggfunc="sum")
        .reindex(index=facilities, columns=earlier)
        .fillna(0)
    )
    medians = counts.median(axis=1)
    got = tonight.reindex(facilities).fillna(0).astype("int64")
    alerts = []
    for facility in facilities:
        median, received = float(medians[facility]), int(got[facility])
        if median <= 0:
            continue
        if received == 0:
            kind = "silent"
        elif received < VOLUME_DROP_SHARE * median:
            kind = "volume_drop"
        else:
            continue
        alerts.append(
            {
                "facility_code": facility,
                "province": province_of(facility),
                "kind": kind,
                "received": received,
                "median_same_weekday": median,
                "compared_nights": [d.isoformat() for d in earlier],
            }
        )
    return alerts


def write_alerts(warehouse: Warehouse, night: dt.date, alerts: list[dict]) -> Path:
    """`runs/<D>/alerts.json` (written whole through a temp file, also when empty: "no alert" is
    an answer, a missing file is not)."""
    return write_json_atomic(
        warehouse.alerts(night), {"night": night.isoformat(), "alerts": alerts}, ensure_ascii=False
    )
