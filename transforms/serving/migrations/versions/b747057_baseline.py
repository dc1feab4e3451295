"""The baseline: the serving schema as of commit b747057 (the last release before migrations).

Its DDL is kept verbatim in `transforms/serving/migrations/b747057/*.sql` (the numbered files of
sql/serving/ at that commit; load_fingerprints is the fingerprint's own table, made on demand, and
stays out). A database made by that release has the schema already and is only stamped with this
revision (`healthbook db upgrade` does it when it finds serving tables and no alembic_version);
upgrading an empty database through it creates the old schema (the migration test does).

Revision ID: b747057
Revises: (none)
"""

from alembic import op

from transforms.serving.migrations import baseline_statements

revision = "b747057"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in baseline_statements():
        op.execute(statement)


def downgrade() -> None:
    raise RuntimeError("nothing is below the baseline: a serving database is not emptied by a migration")
