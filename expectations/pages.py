"""Rendering of the night's pages and charts (the data comes from expectations/report.py).

Layout under `quality/`: `assets/` (one CSS, one small script), and per night `<D>/index.html`
(national), `<D>/province/<PP>.html`, `<D>/facility/<code>.html`, `<D>/review.html`,
`<D>/charts/*.svg`, `<D>/facility_index.js` (the search index, loaded on demand).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import jinja2
import pandas as pd
from babel.numbers import format_decimal, format_percent
from markupsafe import Markup, escape

from expectations import charts, history
from expectations.feedback import safe_facility_name, standard_names
from expectations.masking import mask_value
from transforms.core.reference import province_names
from transforms.core.resources import package_path
from transforms.core.warehouse import Warehouse

TEMPLATES = package_path("expectations", "templates")
STATIC = package_path("expectations", "static")
TOP_CHECKS = 6  # lines of a check-failure chart (the checks with the most failing rows in 30 nights)
FAILING_ROWS_SHOWN = 200
# msgids the templates translate from data (statuses, categories, severities, trends, decisions,
# review field labels): extraction cannot see them, tests/test_report_i18n.py checks them
DYNAMIC_MSGIDS = (
    "passed",
    "failed",
    "not_applicable",
    "error",
    "conformance",
    "completeness",
    "plausibility",
    "integrity",
    "blocking",
    "warning",
    "new failures",
    "persisting failures",
    "resolved failures",
    "new",
    "worse",
    "better",
    "same",
    "resolved",
    "link",
    "reject",
    "Name",
    "Citizen ID",
    "Birth date",
    "Sex",
    "Province",
    "Ward",
    "Insurance / social-insurance number",
)


class _MemoryBytecodeCache(jinja2.BytecodeCache):
    """The compiled templates, kept in this process: each night's report builds its environments
    afresh (one per language), and compiling the five templates cost ~0.3 s a night. Jinja checks
    each entry against the template's source, so an edited template is compiled again."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self._code:
            bucket.bytecode_from_string(self._code[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED = _MemoryBytecodeCache()


def warm_up_report() -> None:
    """The report stage's declared warm-up (`healthbook run` calls it while an earlier stage runs):
    compile the page templates, so the stage, forked later, starts with them."""
    from expectations.i18n import Texts

    env = _env(Texts("vi"))
    for template in env.list_templates(extensions=["j2"]):
        env.get_template(template)


def _env(t) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        bytecode_cache=_COMPILED,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    from expectations.i18n import translations

    env.install_gettext_translations(translations(t.language, "report"), newstyle=True)
    locale = "vi_VN" if t.language == "vi" else "en_US"
    env.filters["num"] = lambda n: "" if n is None or pd.isna(n) else format_decimal(n, locale=locale)
    env.filters["pct"] = lambda x: (
        "" if x is None or pd.isna(x) else format_percent(x, "#,##0.0%", locale=locale)
    )
    env.filters["codify"] = codify
    env.globals.update(
        check_name=t.check,
        reason=t.reason,
        province_name=province_name,
        province_file=province_file,
        standard=standard_names,  # (XML2, THANH_TIEN_BV) of a staged dataset and column
    )
    return env


def codify(text: str) -> Markup:
    """`FIELD` in a catalogue text -> <code>FIELD</code>, everything else escaped."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text or ""))))


def province_file(code: str) -> str:
    """A province code as a file name (a hostile facility code's first 2 characters may be anything)."""
    return code if re.fullmatch(r"[A-Za-z0-9]{1,8}", code) else "unknown"


def province_name(code: str) -> str:
    return province_names().get(code, code)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


VOLUME_COLUMNS = ["received", "loaded", "quarantined"]


def _night_sums(frame: pd.DataFrame, nights: list[dt.date], by: list[str], columns: list[str]) -> dict:
    """(*values of `by`, column) -> the column's sum per night in `nights` (0 on a night without a
    row): one groupby for every group and column."""
    if not len(frame):
        return {}
    sums = frame.groupby([*by, "night"] if by else "night")[columns].sum()
    out: dict[tuple, list[int]] = {}
    for column in columns:
        found = sums[column].to_dict()  # keys: night, or (*group, night)
        groups = dict.fromkeys(k[:-1] for k in found) if by else {(): None}
        for group in groups:
            out[(*group, column)] = [int(found.get((*group, n) if by else n, 0)) for n in nights]
    return out


def volume_series(volumes: pd.DataFrame, nights: list[dt.date]) -> dict[str, list[int]]:
    """received / loaded / quarantined per night (0 on a night the facility sent nothing)."""
    sums = _night_sums(volumes, nights, [], VOLUME_COLUMNS)
    return {c: sums.get((c,), [0] * len(nights)) for c in VOLUME_COLUMNS}


def volume_series_by(
    volumes: pd.DataFrame, nights: list[dt.date], by: str
) -> dict[str, dict[str, list[int]]]:
    """`volume_series` of every value of the column `by` (a facility code), in one groupby."""
    sums = _night_sums(volumes, nights, [by], VOLUME_COLUMNS)
    groups = dict.fromkeys(k[0] for k in sums)
    return {g: {c: sums.get((g, c), [0] * len(nights)) for c in VOLUME_COLUMNS} for g in groups}


def check_series(checks: pd.DataFrame, nights: list[dt.date], top: int = TOP_CHECKS) -> dict[str, list[int]]:
    """Failing rows per night of the `top` checks with the most failing rows over the nights."""
    if checks.empty:
        return {}
    totals = checks.groupby("check_id")["rows"].sum().sort_values(ascending=False, kind="stable")
    chosen = list(totals.index[:top])
    sums = _night_sums(checks[checks["check_id"].isin(chosen)], nights, ["check_id"], ["rows"])
    return {str(c): sums.get((c, "rows"), [0] * len(nights)) for c in chosen}


def check_series_by(
    checks: pd.DataFrame, nights: list[dt.date], by: str, top: int = TOP_CHECKS
) -> dict[str, dict[str, list[int]]]:
    """`check_series` of every value of the column `by` (a facility code), in two groupbys (two
    per facility cost ~10 ms each time)."""
    if checks.empty:
        return {}
    totals: dict = {}
    for (group, check_id), total in checks.groupby([by, "check_id"])["rows"].sum().items():
        totals.setdefault(group, []).append((check_id, total))  # check ids in order, as check_series
    sums = _night_sums(checks, nights, [by, "check_id"], ["rows"])
    out = {}
    for group, ranked in totals.items():
        chosen = [c for c, _ in sorted(ranked, key=lambda ct: -ct[1])[:top]]  # stable: ties by check id
        out[group] = {str(c): sums.get((group, c, "rows"), [0] * len(nights)) for c in chosen}
    return out


def _short(text: str, n: int = 32) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def write_night(
    warehouse: Warehouse,
    night: dt.date,
    t,
    context: dict,
    past: history.History,
    trends: pd.DataFrame,
    findings: pd.DataFrame,
    descriptions: dict[str, str],
    only_facilities: tuple[str, ...] | None = None,
) -> None:
    env = _env(t)
    _ = t.gettext
    root = warehouse.quality
    page_dir = root / night.isoformat()
    chart_dir = page_dir / "charts"
    assets = root / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    for f in STATIC.iterdir():
        shutil.copyfile(f, assets / f.name)
    nights = past.nights
    labels = [n.isoformat() for n in nights]
    volume_labels = {"received": _("received"), "loaded": _("loaded"), "quarantined": _("quarantined")}

    def check_labels(series):
        return {c: _short(t.check(c, "name", descriptions.get(c, ""))) for c in series}

    # --- tonight, ranks, alerts by facility -------------------------------------------------------
    v = past.volumes
    tonight = v[v["night"] == night].copy()
    ranks = history.province_ranks(tonight)
    tonight = tonight.merge(ranks, on="facility_code", how="left")
    tonight["warning_rate"] = (tonight["warned"] / tonight["received"].where(tonight["received"] > 0)).fillna(
        0.0
    )
    alerts = {a["facility_code"]: a for a in context["alerts"]}
    reasons_tonight = past.reasons[past.reasons["night"] == night]
    facilities = sorted(set(v["facility_code"]) | set(alerts))
    safe = {}
    for code in facilities:
        try:
            safe[code] = safe_facility_name(code)
        except ValueError:
            continue  # cannot name a file: still counted in its province's and the national totals

    # --- national charts ------------------------------------------------------------------------
    national_volume = volume_series(v, nights)
    national_checks = check_series(past.checks, nights)
    charts.write_svg(
        chart_dir / "national_volume.svg",
        charts.trend_svg(
            labels, national_volume, volume_labels, _("Encounter versions per night"), _("versions")
        ),
    )
    charts.write_svg(
        chart_dir / "national_checks.svg",
        charts.trend_svg(
            labels, national_checks, check_labels(national_checks), _("Failing rows per check"), _("rows")
        ),
    )
    # heat map: tonight's failing rows per 100 versions received, provinces x checks
    tonight_checks = past.checks[past.checks["night"] == night].copy()
    tonight_checks["province"] = tonight_checks["facility_code"].map(history.province_of)
    provinces = sorted(set(tonight["province"].dropna()) | set(tonight_checks["province"]))
    check_ids = sorted(set(tonight_checks["check_id"]))
    got = tonight.groupby("province")["received"].sum()
    cells = tonight_checks.groupby(["province", "check_id"])["rows"].sum()
    heat = [
        [100.0 * float(cells.get((p, c), 0)) / max(int(got.get(p, 0)), 1) for c in check_ids]
        for p in provinces
    ]
    charts.write_svg(
        chart_dir / "heatmap.svg",
        charts.heatmap_svg(
            [f"{p} {_short(province_name(p), 22)}" for p in provinces],
            [_short(t.check(c, "name", descriptions.get(c, "")), 30) for c in check_ids],
            heat,
            _("Failing rows per 100 versions received, by province and check"),
            _("per 100 versions"),
        ),
    )

    # --- provinces --------------------------------------------------------------------------------
    province_rows = []
    for p in provinces:
        mine = tonight[tonight["province"] == p]
        province_rows.append(
            {
                "code": p,
                "name": province_name(p),
                "facilities": int(len(mine)),
                "received": int(mine["received"].sum()),
                "loaded": int(mine["loaded"].sum()),
                "waiting": int(mine["waiting"].fillna(0).sum()),
                "quarantined": int(mine["quarantined"].sum()),
                "warning_rate": float(mine["warned"].sum()) / max(int(mine["received"].sum()), 1),
                "alerts": sum(1 for a in alerts.values() if a["province"] == p),
            }
        )
    for a in alerts.values():
        if a["province"] not in provinces:
            province_rows.append(
                {
                    "code": a["province"],
                    "name": province_name(a["province"]),
                    **dict.fromkeys(("facilities", "received", "loaded", "waiting", "quarantined"), 0),
                    "warning_rate": 0.0,
                    "alerts": sum(1 for b in alerts.values() if b["province"] == a["province"]),
                }
            )
            provinces.append(a["province"])
    nav = _night_links(warehouse, night)
    common = {**context, "nights_nav": nav, "alerts_by_facility": alerts, "safe": safe}

    # --- national page ----------------------------------------------------------------------------
    index = [[code, province_name(history.province_of(code))] for code in facilities if code in safe]
    _write(
        page_dir / "facility_index.js",
        "window.HB_FACILITIES = " + json.dumps(index, ensure_ascii=False, separators=(",", ":")) + ";\n",
    )
    national = env.get_template("national.html.j2")
    has_review = (warehouse.review(night) / "review_queue.parquet").exists()
    kwargs = {"provinces": province_rows, "has_review": has_review, "check_series": list(national_checks)}
    _write(page_dir / "index.html", national.render(**common, **kwargs, here="", up="../"))
    from expectations.report import report_nights

    latest = max([n for n in report_nights(warehouse) if n != night] + [night])
    if latest == night:
        _write(root / "index.html", national.render(**common, **kwargs, here=f"{night.isoformat()}/", up=""))

    # --- province pages ---------------------------------------------------------------------------
    province_template = env.get_template("province.html.j2")
    volume_province = v["facility_code"].str.slice(0, 2)  # once, not once per province
    reasons_province = reasons_tonight["facility_code"].str.slice(0, 2)
    for p in provinces:
        mine = tonight[tonight["province"] == p].sort_values("rank")
        silent = [
            a
            for a in alerts.values()
            if a["province"] == p and a["facility_code"] not in set(mine["facility_code"])
        ]
        p_volume = volume_series(v[volume_province == p], nights)
        pfile = province_file(p)
        chart = f"province_{pfile}_volume.svg"
        charts.write_svg(
            chart_dir / chart,
            charts.trend_svg(
                labels, p_volume, volume_labels, _("Encounter versions per night"), _("versions")
            ),
        )
        rows = mine.to_dict("records")
        _write(
            page_dir / "province" / f"{pfile}.html",
            province_template.render(
                **common,
                province={"code": p, "name": province_name(p)},
                facilities=rows,
                silent=silent,
                chart=chart,
                reasons_by_facility={
                    f: dict(zip(g["reason"], g["n"], strict=True))
                    for f, g in reasons_tonight[reasons_province == p].groupby("facility_code")
                },
                here="../",
                up="../../",
            ),
        )

    # --- facility pages ---------------------------------------------------------------------------
    facility_template = env.get_template("facility.html.j2")
    built = [c for c in safe if only_facilities is None or c in only_facilities]
    all_ranks = {}
    for n in nights if built else []:
        ranks_n = history.province_ranks(v[v["night"] == n])
        ranks_n = ranks_n[ranks_n["facility_code"].isin(built)]
        for r in ranks_n.itertuples(index=False):
            all_ranks[(n, r.facility_code)] = (int(r.rank), int(r.of))

    def of_built(frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of the facilities built only."""
        if frame.empty or len(built) == len(safe):
            return frame
        return frame[frame["facility_code"].isin(built)]

    def by_facility(frame: pd.DataFrame) -> dict:
        """facility -> its rows, for the facilities built only (13,000 groups cost ~15 s)."""
        if frame.empty or not built:
            return {}
        return dict(tuple(of_built(frame).groupby("facility_code")))

    volume_series_of = volume_series_by(of_built(v), nights, "facility_code") if built else {}
    check_series_of = check_series_by(of_built(past.checks), nights, "facility_code") if built else {}
    volumes_by_facility = by_facility(v)
    reasons_by_facility = by_facility(past.reasons)
    trends_by_facility = by_facility(trends)
    findings_by_facility = by_facility(findings)
    empty_v = v.iloc[0:0]
    for code in built:
        name = safe[code]
        mine = volumes_by_facility.get(code, empty_v)
        f_volume = volume_series_of.get(code) or volume_series(empty_v, nights)
        f_checks = check_series_of.get(code, {})
        charts.write_svg(
            chart_dir / f"facility_{name}_volume.svg",
            charts.trend_svg(
                labels, f_volume, volume_labels, _("Encounter versions per night"), _("versions")
            ),
        )
        # the numbers drawn, next to the chart: the chart's accessible table and what tests read
        _write(
            chart_dir / f"facility_{name}_volume.json",
            json.dumps({"nights": labels, "series": f_volume}, separators=(",", ":")),
        )
        checks_chart = None
        if f_checks:
            checks_chart = f"facility_{name}_checks.svg"
            charts.write_svg(
                chart_dir / checks_chart,
                charts.trend_svg(
                    labels, f_checks, check_labels(f_checks), _("Failing rows per check"), _("rows")
                ),
            )
        # the 30 nights' rows and reasons as dicts once: a pandas lookup per night cost ~1 ms each
        by_night = {r["night"]: r for r in mine.to_dict("records")}
        reasons_by_night: dict[dt.date, dict] = {}
        my_reasons = reasons_by_facility.get(code)
        if my_reasons is not None:
            for n, reason, count in zip(
                my_reasons["night"], my_reasons["reason"], my_reasons["n"], strict=True
            ):
                reasons_by_night.setdefault(n, {})[reason] = count
        history_rows = []
        for n in reversed(nights):
            row = by_night.get(n)
            got_n = int(row["received"]) if row is not None else 0
            history_rows.append(
                {
                    "night": n.isoformat(),
                    "received": got_n,
                    "loaded": int(row["loaded"]) if row is not None else 0,
                    "waiting": None if row is None or pd.isna(row["waiting"]) else int(row["waiting"]),
                    "quarantined": int(row["quarantined"]) if row is not None else 0,
                    "by_reason": reasons_by_night.get(n, {}),
                    "warning_rate": (int(row["warned"]) / got_n) if row is not None and got_n else None,
                    "rank": all_ranks.get((n, code)),
                }
            )
        my_trends = trends_by_facility.get(code)
        check_rows = []
        if my_trends is not None:
            for r in my_trends.to_dict("records"):
                desc = descriptions.get(r["check_id"], "")
                check_rows.append(
                    {
                        **r,
                        "name": t.check(r["check_id"], "name", desc),
                        "explain": t.check(r["check_id"], "explain", desc),
                        "fix": t.check(r["check_id"], "fix", ""),
                    }
                )
        my_findings = findings_by_facility.get(code)
        failing = []
        if my_findings is not None:
            for f in my_findings.head(FAILING_ROWS_SHOWN).to_dict("records"):
                failing.append(
                    {
                        **f,
                        "value": mask_value(
                            f.get("column"), None if pd.isna(f.get("value")) else f.get("value")
                        ),
                        "name": t.check(str(f["check_id"]), "name", descriptions.get(str(f["check_id"]), "")),
                    }
                )
        _write(
            page_dir / "facility" / f"{name}.html",
            facility_template.render(
                **common,
                facility={
                    "code": code,
                    "file": name,
                    "province": history.province_of(code),
                    "rank": all_ranks.get((night, code)),
                    "alert": alerts.get(code),
                    "failing_total": 0 if my_findings is None else len(my_findings),
                },
                volume_chart=f"facility_{name}_volume.svg",
                checks_chart=checks_chart,
                history_rows=history_rows,
                check_rows=check_rows,
                failing=failing,
                here="../",
                up="../../",
            ),
        )

    # --- review queue -----------------------------------------------------------------------------
    from expectations.review import review_page_context

    _write(
        page_dir / "review.html",
        env.get_template("review.html.j2").render(
            **common, **review_page_context(warehouse, night), here="", up="../"
        ),
    )


def _night_links(warehouse: Warehouse, current: dt.date) -> list[dict]:
    from expectations.report import report_nights

    nights = sorted(set(report_nights(warehouse)) | {current}, reverse=True)
    return [{"night": n.isoformat(), "current": n == current} for n in nights[:30]]
