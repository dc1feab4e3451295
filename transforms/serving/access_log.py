"""The access log of health books (issue #16, Law on Personal Data Protection: access to health
data must be traceable). Every book read through `healthbook book` writes one row per citizen asked
for into `book_access` of the serving database: which citizen, whether a book was found, when
(UTC), by whom (the OS user and the database user) and why (`--purpose`). The rows are committed
before any book is printed: a read that cannot be logged discloses nothing.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import uuid

import sqlalchemy as sa

from transforms.serving.db import ServingSchemaOutdated, serving_engine, sql_file
from transforms.serving.schema import BOOK_ACCESS

UNSTATED_PURPOSE = "unstated"
# hostile input bound: a citizen ID is 12 digits and a purpose a sentence; longer text is cut
MAX_CITIZEN_ID = 64
MAX_PURPOSE = 500


def os_user() -> str:
    """The operating-system user running the command (the uid when it has no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def record_book_reads(serving_url: str, books: list[dict], purpose: str | None, pdf: bool) -> str | None:
    """Log one row per book asked for (in the order asked); returns the read's id.

    A database with no serving tables at all holds no book, so nothing was read: None, no row.
    One with books but no `book_access` table (made by an earlier release and not loaded since)
    is refused with ServingSchemaOutdated, as the load refuses outdated tables."""
    engine = serving_engine(serving_url)
    read_id = uuid.uuid4().hex
    read_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    who = os_user()
    why = (purpose or UNSTATED_PURPOSE).strip()[:MAX_PURPOSE] or UNSTATED_PURPOSE
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table(BOOK_ACCESS.name):
            if not inspector.has_table("citizens"):
                return None
            raise ServingSchemaOutdated(
                f"the serving database {engine.url.render_as_string(hide_password=True)} has no "
                f"{BOOK_ACCESS.name} table (an earlier release made it): books are not read without "
                "an access log; run `healthbook db upgrade` first"
            )
        db_user = (
            conn.exec_driver_sql("select current_user").scalar_one()
            if engine.dialect.name == "postgresql"
            else None  # SQLite has no users: the OS user is who read it
        )
        rows = [
            {
                "read_id": read_id,
                "position": position,
                "citizen_id": str((book.get("citizen") or {}).get("citizen_id", ""))[:MAX_CITIZEN_ID],
                "found": bool(book.get("found")),
                "read_at": read_at,
                "os_user": who,
                "db_user": db_user,
                "purpose": why,
                "pdf": pdf,
            }
            for position, book in enumerate(books)
        ]
        if rows:
            conn.execute(sa.text(sql_file("queries/insert_book_access.sql", engine.dialect.name)), rows)
    return read_id
