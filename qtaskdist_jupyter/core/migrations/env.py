"""Alembic environment: synchronous psycopg 3 engine, one advisory lock per upgrade."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from qtaskdist_jupyter.core.models import Base

config = context.config
target_metadata = Base.metadata
# Several processes (server + workers) may start at once and all run `upgrade`.
_LOCK_KEY = 0x71746473  # "qtds"


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "migrate.upgrade sets sqlalchemy.url"
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        connection.commit()
        try:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `qtaskdist db upgrade`")
run_migrations_online()
