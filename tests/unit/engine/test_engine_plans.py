"""The engine's plans and locks as stored, without running them: refusals, a large
command's waits, the lock rows a page reads, and the models against their migration."""

from __future__ import annotations

import peewee
import pytest

from manager.db.engine import Command, Job, JobLock, JobWait, Step
from manager.engine import commands, offers
from tests.unit.engine.harness import Harness


def test_planning_refuses_what_is_not_offered(db):
    h = Harness(db)
    h.world.states.update({("widget", 11): "off", ("supply", 1): "on"})
    for jobs, message in (
            ([{"class_name": "NoSuchJob", "args": {}}], "unknown job class"),
            ([{"class_name": "TurnOnJob", "args": {"widget_id": 11}}], "PUT the object's state"),
            ([{"class_name": "PolishJob", "args": {"widget_id": 11}}], "not available"),
            ([{"class_name": "PolishJob", "args": {"widget_id": "11"}}], "must be a positive integer id"),
            ([{"class_name": "PolishJob", "args": {"widget_id": 12}}], "does not exist"),
            (["PolishJob"], "each job is an object")):
        with pytest.raises(commands.PlanError, match=message):
            db.call(h.engine.plan_jobs, jobs, "m", "tester")
    assert db.call(lambda: Command.select().count()) == 0


def test_a_thousand_job_command_plans_with_derived_waits(db):
    h = Harness(db)
    for n in range(1, 101):
        h.world.states[("supply", n)] = "on"
        for k in range(10):
            h.world.states[("widget", n * 10 + k)] = "on"
    jobs = [{"class_name": "PolishJob", "args": {"widget_id": w}} for w in range(10, 1010)]
    command_id = db.call(h.engine.plan_jobs, jobs, "polish everything", "tester")
    assert db.call(lambda: Job.select().count()) == 1000
    assert db.call(lambda: JobLock.select().count()) == 2000  # a write and a read each
    assert db.call(lambda: JobWait.select().count()) == 0  # readers of a supply don't conflict
    assert command_id == db.call(lambda: Command.get().id)


def test_models_and_migration_agree(db):
    """The live models and migration 0004's frozen ones describe the same columns."""
    database = db.database
    for model in (Command, Job, JobLock, JobWait, Step):
        columns = {c.name for c in database.get_columns(model._meta.table_name)}
        assert columns == {f.column_name for f in model._meta.sorted_fields}, model
    assert isinstance(database, peewee.SqliteDatabase)


@pytest.mark.parametrize("page", [3, offers.SHORT_PAGE + 1])
def test_locks_of_a_page_are_only_its_objects_unreleased_locks(db, page):
    def run() -> dict:
        job = Job.create(class_name="J", description="j", args="{}", object_type="widget",
                         object_id=1)
        JobLock.insert_many([
            {"job": job.id, "object_type": "widget", "object_id": 1, "write": True},
            {"job": job.id, "object_type": "widget", "object_id": 2, "write": False},
            {"job": job.id, "object_type": "widget", "object_id": 5000, "write": True},
            {"job": job.id, "object_type": "gadget", "object_id": 1, "write": True},
            {"job": job.id, "object_type": "widget", "object_id": 3, "write": True,
             "released": True}]).execute()
        return offers.locks_of("widget", list(range(1, page + 1)))
    assert db.call(run) == {1: {"read": [], "write": [1]}, 2: {"read": [1], "write": []}}
