"""The audit log's index on action_id holds action rows only: requests and logins (most of
the log) have none, and leaving them out spares each audited write one index insert."""

import peewee

VERSION = 7
NAME = "audit_action_index"


def apply(database: peewee.Database) -> None:
    database.execute_sql('DROP INDEX "audit_record_action_id"')
    database.execute_sql('CREATE INDEX "audit_record_action_id" ON "audit_record" ("action_id")'
                         ' WHERE "action_id" IS NOT NULL')
