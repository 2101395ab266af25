"""Least-privilege roles: ``qtaskdist_service`` and ``qtaskdist_worker``.

Revision ID: 0003_roles
Revises: 0002_results
Create Date: 2026-12-07

Two NOLOGIN group roles. A deployment creates its own login roles and grants them one of
these (``CREATE ROLE qtd_worker_1 LOGIN PASSWORD '…' IN ROLE qtaskdist_worker``), so no
password ever lives in a migration. Neither role owns anything or has CREATE on the
schema, so neither can run DDL (DROP, ALTER, TRUNCATE, CREATE TABLE); each gets only the
statements the store runs for it (qtaskdist_jupyter/core/store/):

- the service (submit, list, get, update, cancel, retry, delete, arrays, health): tasks
  SELECT INSERT (and COPY) UPDATE DELETE; task_result_chunks SELECT, DELETE (a retry drops
  an earlier attempt's arrays; deleting a task cascades as the table's owner).
- the worker (claim, settle, fail, retry later, reconcile, store arrays): tasks SELECT
  UPDATE; task_result_chunks SELECT INSERT (COPY) DELETE (a settle replaces stale chunks).
- both: SELECT on alembic_version (a process that starts checks the schema is current),
  USAGE on the schema, CONNECT on the database.

The tables use no sequences (ids are UUIDs). A later migration that adds a table grants
it here too. Roles belong to the cluster, not the database: creating them is guarded, so
this runs on every database of a cluster and twice; a migrating role without CREATEROLE
gets an error that says what to do. The downgrade revokes this database's grants and
leaves the roles (other databases of the cluster may use them): ``DROP ROLE`` them by
hand. docs/least-privilege.md shows how to use them.
"""

from alembic import op

revision = "0003_roles"
down_revision = "0002_results"
branch_labels = None
depends_on = None

GRANTS: dict[str, dict[str, str]] = {
    "qtaskdist_service": {
        "tasks": "SELECT, INSERT, UPDATE, DELETE",
        "task_result_chunks": "SELECT, DELETE",
        "alembic_version": "SELECT",
    },
    "qtaskdist_worker": {
        "tasks": "SELECT, UPDATE",
        "task_result_chunks": "SELECT, INSERT, DELETE",
        "alembic_version": "SELECT",
    },
}

_CREATE_ROLE = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
    BEGIN
      CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
    EXCEPTION
      WHEN duplicate_object OR unique_violation THEN NULL;  -- another database's migration
      WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'cannot create role {role}: % ', SQLERRM
          USING HINT = 'run the migration as a role with CREATEROLE, or create the role '
                       'first (CREATE ROLE {role} NOLOGIN) and run it again';
    END;
  END IF;
END
$$
"""

_ON_DATABASE = """
DO $$
BEGIN
  EXECUTE format('{verb} CONNECT ON DATABASE %I {word} {role}', current_database());
  EXECUTE format('{verb} USAGE ON SCHEMA %I {word} {role}', current_schema());
END
$$
"""


def upgrade() -> None:
    for role, tables in GRANTS.items():
        op.execute(_CREATE_ROLE.format(role=role))
        op.execute(_ON_DATABASE.format(verb="GRANT", word="TO", role=role))
        for table, privileges in tables.items():
            op.execute(f"REVOKE ALL ON {table} FROM {role}")
            op.execute(f"GRANT {privileges} ON {table} TO {role}")


def downgrade() -> None:
    for role, tables in GRANTS.items():
        for table in tables:
            op.execute(f"REVOKE ALL ON {table} FROM {role}")
        op.execute(_ON_DATABASE.format(verb="REVOKE", word="FROM", role=role))
