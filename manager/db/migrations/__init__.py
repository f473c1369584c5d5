"""Versioned schema migrations, applied in order by ``shepherd-manager migrate`` and at start.

Each migration is a module with ``VERSION``, ``NAME`` and ``apply(database)``, listed in
``MIGRATIONS``. A migration defines the tables as they were at its version (frozen models),
never the live models, so old migrations keep meaning the same thing as the code moves on.
"""

from __future__ import annotations

import peewee

from manager.db.base import utcnow
from manager.db.migrations import (
    m0001_accounts,
    m0002_hosts,
    m0003_audit,
    m0004_engine,
    m0005_inventory,
    m0006_step_order,
    m0007_audit_action_index,
)

MIGRATIONS = (m0001_accounts, m0002_hosts, m0003_audit, m0004_engine, m0005_inventory,
              m0006_step_order, m0007_audit_action_index)

#: PostgreSQL advisory lock key held while migrating, so two managers never migrate at once.
_LOCK_KEY = 0x5E9E_0001


class SchemaMigration(peewee.Model):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=120)
    applied_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_migration"


def latest_version() -> int:
    return MIGRATIONS[-1].VERSION


def applied_versions(database: peewee.Database) -> set[int]:
    with database.bind_ctx([SchemaMigration]):
        if not database.table_exists("schema_migration"):
            return set()
        return {row.version for row in SchemaMigration.select(SchemaMigration.version)}


def pending(database: peewee.Database) -> list[str]:
    """Names of the migrations not yet applied (empty when the schema is current)."""
    done = applied_versions(database)
    return [f"{m.VERSION:04d}_{m.NAME}" for m in MIGRATIONS if m.VERSION not in done]


def migrate(database: peewee.Database) -> list[str]:
    """Apply every pending migration, each in its own transaction; return what was applied."""
    with database.bind_ctx([SchemaMigration]):
        database.create_tables([SchemaMigration], safe=True)
        applied = []
        for module in MIGRATIONS:
            with database.atomic():
                if isinstance(database, peewee.PostgresqlDatabase):
                    database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if SchemaMigration.get_or_none(SchemaMigration.version == module.VERSION):
                    continue
                module.apply(database)
                SchemaMigration.create(version=module.VERSION, name=module.NAME)
                applied.append(f"{module.VERSION:04d}_{module.NAME}")
        return applied
