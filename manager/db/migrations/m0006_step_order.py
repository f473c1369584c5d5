"""Steps indexed by (job, id): a job's latest step is one index probe, whatever the
planner's statistics say (the engine reads it for every step it advances)."""

import peewee

VERSION = 6
NAME = "step_order"


def apply(database: peewee.Database) -> None:
    database.execute_sql('CREATE INDEX "step_job_id_id" ON "step" ("job_id", "id")')
    database.execute_sql('DROP INDEX "step_job_id"')  # its leading column serves the same
