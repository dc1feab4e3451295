"""What the serving schema gained between b747057 and the first release with migrations.

- encounters.main_icd10_source (issue 15: the main diagnosis may come from the discharge paper):
  backfilled 'xml1' where main_icd10 is set, which is what the load of that time published (XML1's
  MA_BENH_CHINH, a blocking check kept an invalid one out; XML7 was never a source then).
- encounters.incomplete (stays published after their grace period without XML7/XML8): null, as
  every stay published before it was complete.
- medications.physician_codes (XML2 MA_BAC_SI): null; earlier loads did not keep it (a re-load of
  those nights from the warehouse would).
- book_access and its index book_access_citizen (issue 16, the access log of `healthbook book`).
  Its grants are roles.sql's, which every PostgreSQL load applies (and `healthbook db upgrade`).

Only what is missing is added, so a database made by any release between b747057 and this one
(stamped b747057 by `healthbook db upgrade`) upgrades too, and a run interrupted during the backfill
runs again. Adding a nullable column without a default is a catalog change on both engines (no
table rewrite). On PostgreSQL the backfill commits every BACKFILL_BATCH versions (a hundred million
encounters are not rewritten in one transaction); SQLite, the embedded database, does it at once.

Revision ID: 20261207
Revises: b747057
"""

import sqlalchemy as sa
from alembic import op

revision = "20261207"
down_revision = "b747057"
branch_labels = None
depends_on = None

ADDED_COLUMNS = {
    "encounters": (("main_icd10_source", "text"), ("incomplete", "text")),
    "medications": (("physician_codes", "text"),),
}
BOOK_ACCESS = """
create table if not exists book_access (
    read_id     text not null,
    position    integer not null,
    citizen_id  text not null,
    found       boolean not null,
    read_at     timestamp not null,
    os_user     text,
    db_user     text,
    purpose     text not null,
    pdf         boolean not null,
    primary key (read_id, position)
)
"""
BOOK_ACCESS_INDEX = "create index if not exists book_access_citizen on book_access (citizen_id, read_at)"
BACKFILL = (
    "update encounters set main_icd10_source = 'xml1' "
    "where main_icd10 is not null and main_icd10_source is null"
)
BACKFILL_BATCH = 1_000_000  # encounter versions (a version_id range) per committed batch


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, columns in ADDED_COLUMNS.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        for name, sql_type in columns:
            if name not in present:
                op.execute(f"alter table {table} add column {name} {sql_type}")
    op.execute(BOOK_ACCESS)
    op.execute(BOOK_ACCESS_INDEX)
    backfill_main_icd10_source()


def backfill_main_icd10_source() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        op.execute(BACKFILL)
        return
    low, high = bind.exec_driver_sql("select min(version_id), max(version_id) from encounters").one()
    if low is None:
        return
    batch = sa.text(f"{BACKFILL} and version_id >= :low and version_id < :high")
    # the columns above are committed first; each batch then commits alone (a re-run resumes)
    with op.get_context().autocommit_block():
        for start in range(low, high + 1, BACKFILL_BATCH):
            op.execute(batch.bindparams(low=start, high=start + BACKFILL_BATCH))


def downgrade() -> None:
    # for a release rolled back: the columns it does not write go; the access log stays (a record
    # the law asks to keep; a release without it ignores the table)
    for table, columns in ADDED_COLUMNS.items():
        for name, _ in columns:
            op.execute(f"alter table {table} drop column {name}")
