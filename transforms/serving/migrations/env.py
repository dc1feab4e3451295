"""The Alembic environment of the serving database, run by `transforms.serving.migrations.upgrade`
(no alembic.ini): the caller hands over an open connection in config.attributes["connection"].

Each revision runs in its own transaction, DDL included (SQLite too: the load's engine gives it
real transactions), and records its revision in it; a revision may commit part of its work early
(`autocommit_block`, e.g. a backfill in batches on PostgreSQL). No offline (--sql) mode: the
revisions read the database they upgrade.
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "the serving migrations run through transforms.serving.migrations.upgrade "
        "(`healthbook db upgrade`), on a live connection"
    )
context.configure(connection=connection, transaction_per_migration=True, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
