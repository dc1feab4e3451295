"""The `healthbook` command (INTERFACES.md "Command line")."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Electronic health book: nightly ETL.")
err = Console(stderr=True)

DEMO_DIR = Path("demo")
DEMO_NIGHT = dt.date(2026, 11, 26)


def _yesterday() -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


def _quiet_libraries() -> None:
    # GX and Airflow log at INFO through structlog/logging at import; a batch run shows warnings only.
    logging.basicConfig(level=logging.WARNING)
    for name in ("great_expectations", "splink", "airflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write extracts/, registry/ and truth/ into")],
    date: Annotated[str | None, typer.Option(help="Night (YYYY-MM-DD); default yesterday")] = None,
    facilities: Annotated[int, typer.Option(min=1)] = 10,
    encounters: Annotated[int, typer.Option(min=1)] = 1000,
    citizens: Annotated[int, typer.Option(min=1)] = 20000,
    seed: int = 42,
    batched: Annotated[
        bool, typer.Option(help="Batch most encounters 50-200 per file (older nights); default one per file")
    ] = False,
) -> None:
    """Write one synthetic night: XML 130 envelopes, FHIR NDJSON, the registry and the truth."""
    import dataclasses

    from transforms.synth.generate import generate_night
    from transforms.synth.rates import BATCHED_FILE_SHARE, SETTINGS

    night = dt.date.fromisoformat(date) if date else _yesterday()
    settings = dataclasses.replace(SETTINGS, single_file_share=BATCHED_FILE_SHARE) if batched else SETTINGS
    summary = generate_night(
        out,
        night,
        facilities=facilities,
        encounters=encounters,
        citizens=citizens,
        seed=seed,
        settings=settings,
    )
    err.print(f"generated night {night} into {out}")
    print(json.dumps(summary, ensure_ascii=False, default=str))


def _print_summary(summary, console: Console) -> None:
    table = Table(title=f"healthbook run {summary.night}")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("status")
    for s in summary.stages:
        table.add_row(s.stage, f"{s.seconds:.1f}", "skipped (unchanged)" if s.skipped else "ran")
    console.print(table)
    if summary.ledger:
        t = summary.ledger["totals"]
        ledger_table = Table(title="ledger")
        for key in ("files", "declared", "received", "loaded", "quarantined"):
            ledger_table.add_column(key, justify="right")
        ledger_table.add_row(*(str(t[k]) for k in ("files", "declared", "received", "loaded", "quarantined")))
        console.print(ledger_table)
        reasons: dict[str, int] = {}
        for f in summary.ledger["facilities"].values():
            for reason, n in f["quarantined"].items():
                reasons[reason] = reasons.get(reason, 0) + n
        if reasons:
            reason_table = Table(title="quarantined by reason")
            reason_table.add_column("reason")
            reason_table.add_column("encounters", justify="right")
            for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
                reason_table.add_row(reason, str(n))
            console.print(reason_table)
        rejected = summary.ledger["files"]["rejected"]
        if rejected:
            console.print(f"rejected files: {len(rejected)} (see quarantine/files)")


def run_and_report(ctx, force: bool = False) -> int:
    """Run one night with a progress display; return the process exit code."""
    from transforms.orchestration.ledger import LedgerImbalance
    from transforms.orchestration.pipeline import STAGES, NightLocked, run_night

    current = {"stage": None}  # the stage running, named in a failure message

    with err.status("starting") as status:

        def on_stage(name: str, event: str) -> None:
            if event == "start":
                current["stage"] = name
                status.update(f"[{list(STAGES).index(name) + 1}/{len(STAGES)}] {name} of night {ctx.night}")
            elif event == "failed":  # stages run side by side: the one that failed, not the last started
                current["stage"] = name
            elif event == "skipped":
                err.print(f"{name}: skipped (unchanged)")

        try:
            summary = run_night(ctx, on_stage=on_stage, force=force)
        except NightLocked as e:
            err.print(f"[red]refused:[/red] {e}")
            return 3
        except LedgerImbalance as e:
            err.print(f"[red]the ledger does not balance:[/red] {e}")
            return 2
        except Exception as e:  # the pipeline could not do its job: say which stage and why
            err.print(f"[red]run failed in stage {current['stage']}:[/red] {type(e).__name__}: {e}")
            return 1
    _print_summary(summary, err)
    err.print(f"ledger: {ctx.warehouse.ledger(ctx.night)}")
    return 0


@app.command()
def run(
    date: Annotated[str, typer.Option(help="Night to process (YYYY-MM-DD)")],
    extracts: Annotated[Path, typer.Option(help="Extracts root; the night is <extracts>/<date>/")],
    registry: Annotated[Path, typer.Option(help="Registry snapshot: a Parquet file or folder")],
    warehouse: Annotated[Path, typer.Option(help="Warehouse root")] = Path("warehouse"),
    serving_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite in the warehouse")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Run every stage, even those unchanged since they last finished")
    ] = False,
) -> None:
    """Process one night end to end; exit 0 when the run worked, even if some input was bad.

    A stage whose inputs, code and outputs are unchanged since it last finished is skipped."""
    from transforms.core.context import make_context

    _quiet_libraries()
    ctx = make_context(dt.date.fromisoformat(date), extracts, registry, warehouse, serving_url)
    raise typer.Exit(run_and_report(ctx, force=force))


@app.command(context_settings={"allow_extra_args": True})
def book(
    context: typer.Context,
    warehouse: Annotated[Path, typer.Option(help="Warehouse root")] = Path("warehouse"),
    serving_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite in the warehouse")
    ] = None,
    citizen: Annotated[list[str] | None, typer.Option("--citizen", help="Citizen ID (repeatable)")] = None,
    citizens_file: Annotated[Path | None, typer.Option(help="File with one citizen ID per line")] = None,
    pdf: Annotated[
        Path | None,
        typer.Option(
            help="Also write per citizen the book document and one PDF per encounter into this folder"
        ),
    ] = None,
    purpose: Annotated[
        str | None,
        typer.Option(help="Why the books are read (written to the access log; default 'unstated')"),
    ] = None,
) -> None:
    """Print one JSON health book per citizen ID (NDJSON), in the order asked.

    IDs: `--citizen A B C` (as INTERFACES.md writes it) or `--citizen A --citizen B`. Every read is
    written to the access log `book_access` of the serving database before anything is printed.
    """
    from transforms.core.warehouse import Warehouse
    from transforms.serving.access_log import record_book_reads
    from transforms.serving.book import books_for
    from transforms.serving.db import ServingSchemaOutdated

    _quiet_libraries()
    ids = list(citizen or []) + list(context.args)
    if citizens_file:
        ids += [line.strip() for line in citizens_file.read_text().splitlines() if line.strip()]
    if not ids:
        err.print("give --citizen ID (repeatable) or --citizens-file FILE")
        raise typer.Exit(2)
    url = serving_url or Warehouse(warehouse.resolve()).default_serving_url
    try:
        books = books_for(url, ids)
        record_book_reads(url, books, purpose, pdf=pdf is not None)  # logged before anything is shown
    except ServingSchemaOutdated as e:
        err.print(f"[red]refused:[/red] {e}")
        raise typer.Exit(1) from e
    for b in books:
        sys.stdout.write(strict_json(b) + "\n")
    if pdf:
        raise typer.Exit(_write_pdfs(books, pdf))


def _write_pdfs(books: list[dict], out: Path) -> int:
    """The book document and the encounter PDFs of every book found; 1 when any PDF failed (the
    others are still written), each failure and each character missing from the font on stderr."""
    from transforms.serving.pdf import PdfReport, write_book_pdf, write_encounter_pdfs
    from transforms.serving.signing import signing_key

    key, issued_at, report = signing_key(), dt.datetime.now(dt.UTC), PdfReport()
    for b in books:
        write_book_pdf(b, out, issued_at=issued_at, key=key, report=report)
        write_encounter_pdfs(b, out, issued_at=issued_at, key=key, report=report)
    for name, chars in sorted(report.missing.items()):
        shown = ", ".join(f"U+{ord(c):04X}" for c in sorted(chars))
        err.print(f"[yellow]{name}: characters not in the font, printed as [U+XXXX]:[/yellow] {shown}")
    for name, error in report.failed:
        err.print(f"[red]{name} was not written:[/red] {error}")
    err.print(f"wrote {len(report.written)} PDF(s) into {out}")
    return 1 if report.failed else 0


@app.command()
def verify(
    document: Annotated[Path | None, typer.Argument(help="A book or encounter PDF")] = None,
    warehouse: Annotated[Path, typer.Option(help="Warehouse root")] = Path("warehouse"),
    serving_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite in the warehouse")
    ] = None,
    token: Annotated[str | None, typer.Option(help="Check a token read from the QR code instead")] = None,
) -> None:
    """Check a document against the serving database.

    Exit 0 genuine and current; 3 superseded (the record changed since issue); 4 tampered (the
    file differs from what its signed token vouches for); 5 invalid (no token or a bad signature);
    6 the citizen or encounter is no longer served; 1 the check could not be made; 2 usage."""
    from transforms.core.warehouse import Warehouse
    from transforms.serving.db import ServingDatabaseUnreachable
    from transforms.serving.signing import verify_key
    from transforms.serving.verify import verify_pdf, verify_token

    if (document is None) == (token is None):
        err.print("give a PDF file or --token TOKEN")
        raise typer.Exit(2)
    url = serving_url or Warehouse(warehouse.resolve()).default_serving_url
    try:
        key = verify_key()
        result = verify_pdf(document, url, key) if document else verify_token(token, url, key)[0]
    except (ServingDatabaseUnreachable, OSError) as e:
        err.print(f"[red]could not verify:[/red] {e}")
        raise typer.Exit(1) from e
    print(f"{result.verdict.name}: {result.message}")
    raise typer.Exit(int(result.verdict))


db_app = typer.Typer(
    no_args_is_help=True, help="The serving database's schema: upgrade it before deploying a release."
)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    warehouse: Annotated[Path, typer.Option(help="Warehouse root")] = Path("warehouse"),
    serving_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite in the warehouse")
    ] = None,
) -> None:
    """Migrate the serving database to this release's schema (the load refuses it until then).

    One made by a release before migrations (serving tables, no alembic_version) is stamped with
    the baseline b747057 first; an empty one gets this release's schema. Exit 0 done (or nothing
    to do), 1 the database could not be upgraded (unreachable, or older than b747057)."""
    from transforms.core.warehouse import Warehouse
    from transforms.serving import db, migrations

    url = serving_url or Warehouse(warehouse.resolve()).default_serving_url
    engine = db.serving_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        db.check_reachable(engine)
        done = migrations.upgrade(engine)
        if done.after is None:
            db.ensure_schema(engine)  # nothing to migrate: this release's schema, at the head
            err.print(f"{where}: no serving tables; created this release's schema at {migrations.head()}")
        elif done.before == done.after:
            err.print(f"{where}: already at {done.after}")
        else:
            made = " (made before migrations: stamped the baseline first)" if done.stamped_baseline else ""
            err.print(f"{where}: upgraded from {done.before or migrations.BASELINE} to {done.after}{made}")
        if engine.dialect.name == "postgresql":
            db.apply_roles(engine)  # the grants of tables a revision added (as every load does)
    except (db.ServingDatabaseUnreachable, migrations.SchemaNotMigratable) as e:
        err.print(f"[red]not upgraded:[/red] {e}")
        raise typer.Exit(1) from e


@db_app.command("current")
def db_current(
    warehouse: Annotated[Path, typer.Option(help="Warehouse root")] = Path("warehouse"),
    serving_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite in the warehouse")
    ] = None,
) -> None:
    """Print the serving database's revision and this release's.

    Exit 0 when the load may write into it (at the head, or empty), 1 when `healthbook db upgrade`
    is needed or the database is unreachable."""
    from transforms.core.warehouse import Warehouse
    from transforms.serving import db, migrations

    url = serving_url or Warehouse(warehouse.resolve()).default_serving_url
    engine = db.serving_engine(url)
    try:
        db.check_reachable(engine)
    except db.ServingDatabaseUnreachable as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from e
    with engine.connect() as conn:
        current, refusal = migrations.current_revision(conn), migrations.behind_head(conn)
    print(f"revision {current or 'none'}; this release {migrations.head()}")
    if refusal:
        err.print(refusal)
        raise typer.Exit(1)


def strict_json(value) -> str:
    """JSON that every parser reads: a non-finite float (NaN, Infinity, which Python's json would
    print as bare words) becomes null; anything else non-finite fails loudly (allow_nan=False).
    Ingest already nulls non-finite measurements; this covers rows loaded before it did."""

    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(value), ensure_ascii=False, allow_nan=False)


def _demo_serving(url: str) -> None:
    """The demo's own SQLite serving database, made by an earlier release, is upgraded as an
    operator would (`healthbook db upgrade`), keeping its books; only one older than any migration
    (before the baseline b747057: no revision reaches it) is started afresh. A production database
    is never touched this way: its load refuses an outdated schema and names the upgrade."""
    from transforms.serving import db, migrations

    path = Path(url.split("///", 1)[-1]) if url.startswith("sqlite:///") else None
    if path is None or not path.exists():
        return
    engine = db.serving_engine(url)
    try:
        db.ensure_schema(engine)
    except db.ServingSchemaOutdated:
        try:
            done = migrations.upgrade(engine)
        except migrations.SchemaNotMigratable as e:
            engine.dispose()
            path.unlink()
            err.print(
                f"the demo's serving database {path} is older than any migration ({e}): starting it afresh"
            )
        else:
            err.print(
                f"the demo's serving database {path} was made by an earlier release: "
                f"upgraded from {done.before or migrations.BASELINE} to {done.after}"
            )
    finally:
        engine.dispose()


@app.command()
def demo(
    encounters: int = 600,
    facilities: int = 4,
    citizens: int = 5000,
) -> None:
    """Generate a small night into ./demo and run it end to end on the embedded defaults."""
    from transforms.core.context import make_context
    from transforms.synth.generate import generate_night

    _quiet_libraries()
    err.print(
        f"generating night {DEMO_NIGHT}: {encounters} encounters, {facilities} facilities, {citizens} citizens"
    )
    generate_night(
        DEMO_DIR, DEMO_NIGHT, facilities=facilities, encounters=encounters, citizens=citizens, seed=42
    )
    ctx = make_context(DEMO_NIGHT, DEMO_DIR / "extracts", DEMO_DIR / "registry", DEMO_DIR / "warehouse")
    _demo_serving(ctx.serving_url)
    code = run_and_report(ctx)
    if code == 0:
        err.print(
            f"done: ledger {ctx.warehouse.ledger(ctx.night)}, quality report {ctx.warehouse.quality / 'index.html'}, "
            f"snapshot {ctx.warehouse.snapshot(ctx.night)}, serving database {ctx.serving_url}"
        )
        err.print(
            f"read a book: healthbook book --warehouse {DEMO_DIR / 'warehouse'} --citizen <ID> [--pdf DIR]"
        )
    raise typer.Exit(code)


@app.command("dags-folder")
def dags_folder() -> None:
    """Print the folder holding the installed Airflow DAG file (for AIRFLOW__CORE__DAGS_FOLDER)."""
    from transforms.core.resources import dags_folder as folder

    print(folder())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
