"""The engine's prepared statements (each step's, each finished job's) keep index plans as a new PostgreSQL
database grows: a statement prepared while its tables are tiny (and unanalysed) gets a
generic plan that PostgreSQL reuses until statistics change, so a plan that scans a
table would scan it for every step, ever longer."""

from __future__ import annotations

import datetime

import pytest

from manager.db import base as dbbase
from manager.db import fastsql
from manager.db.engine import Command, CommandJob, Job, JobLock, Step
from manager.db.migrations import migrate
from manager.engine import progress

NOW = datetime.datetime(2026, 1, 1)
UPDATE_STEP = ("UPDATE step SET state = %s, result = %s, log = %s, console = %s, "
               "backtrace = %s, modified_at = %s WHERE id = %s")


@pytest.fixture
def fresh_pg(pg_server):
    database = dbbase.open_database(pg_server.fresh_database("latest_step"))
    dbbase.bind(database)
    migrate(database)
    yield database
    database.close()


def _jobs_with_steps(jobs: int, steps: int) -> list[Job]:
    made = [Job.create(class_name="J", description="j", args="{}", object_type="host",
                       object_id=1) for _ in range(jobs)]
    rows = [{"job": j.id, "class_name": "S", "step_index": n, "step_count": steps}
            for n in range(steps) for j in made]
    for start in range(0, len(rows), 1000):
        Step.insert_many(rows[start:start + 1000]).execute()
    return made


def _commands_of(jobs: list[Job]) -> None:
    """Commands of 10 jobs each, with locks (the tables a job's completion reads)."""
    for start in range(0, len(jobs), 10):
        command = Command.create(message="c")
        CommandJob.insert_many([{"command": command.id, "job": j.id}
                                for j in jobs[start:start + 10]]).execute()
    JobLock.insert_many([{"job": j.id, "object_type": "host", "object_id": 1, "write": True}
                         for j in jobs]).execute()


def _plan(database, text: str, params: tuple) -> str:
    return "\n".join(r for (r,) in database.execute_sql(f"EXPLAIN {text}", params))


JOB_COMPLETION = ("UPDATE job SET state = %s, errored = %s, cancelled = %s, modified_at = %s, "
                  "claimed_by = NULL, lease_until = NULL WHERE id = %s AND state <> %s")
#: name: (SQL, its parameters for a job id, the index its plan must use)
STATEMENTS = {
    "job and latest step": (progress._job_and_step_sql("%s", True), lambda j: (j,),
                            "step_job_id_id"),
    "step update": (UPDATE_STEP, lambda j: ("success", None, "", "", "", NOW, j), "step_pkey"),
    "job completion": (JOB_COMPLETION, lambda j: ("complete", False, False, NOW, j, "complete"),
                       "job_pkey"),
    "lock release": ("UPDATE job_lock SET released = %s WHERE job_id = %s",
                     lambda j: (True, j), "job_lock_job_id"),
}


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_statements_prepared_on_tiny_tables_still_probe_indexes_once_grown(fresh_pg, name):
    text, params, index = STATEMENTS[name]
    small = _jobs_with_steps(3, 1)
    _commands_of(small)
    statement = fastsql.prepared(fresh_pg, text)
    for _ in range(8):  # past the five custom plans: PostgreSQL now caches a generic one
        fresh_pg.execute_sql(statement, params(small[0].id))
    grown = _jobs_with_steps(200, 25)
    _commands_of(grown)
    plan = _plan(fresh_pg, statement, params(grown[7].id))
    assert "Seq Scan" not in plan, plan
    assert index in plan, plan


def test_the_job_and_its_latest_step_are_read_in_one_query(fresh_pg):
    jobs = _jobs_with_steps(20, 25)
    job, last, host_state = progress._job_and_last_step(jobs[7].id)
    assert job.id == jobs[7].id and last.step_index == 24 and host_state is None


def test_migrations_leave_one_index_leading_with_the_steps_job(fresh_pg):
    indexes = {r[0]: r[1] for r in fresh_pg.execute_sql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'step'")}
    assert "step_job_id" not in indexes
    assert indexes["step_job_id_id"].endswith("(job_id, id)")
