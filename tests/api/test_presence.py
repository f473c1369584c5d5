"""The presence pass's batched contact record (``hosts.record_contact``) on both databases."""

import datetime
import time

import psycopg2
import pytest

from manager.db.base import is_postgres
from manager.db.hosts import Host
from manager.domain import hosts
from tests.api.test_power_jobs import registered


def test_contact_is_recorded_in_one_statement(admin, accounts_reset):
    ids = [registered(accounts_reset, admin, f"seen{n}.example") for n in range(3)]
    when = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=datetime.UTC)
    accounts_reset.db(lambda: hosts.record_contact(ids[:2], when))
    seen = accounts_reset.db(lambda: {h.id: h.last_contact for h in Host.select()})
    assert [seen[i] is not None and seen[i].replace(tzinfo=datetime.UTC) == when
            for i in ids] == [True, True, False]


def test_a_host_row_another_transaction_holds_is_left_for_the_next_pass(admin, accounts_reset):
    """On PostgreSQL the pass skips a row the engine holds instead of waiting (and
    deadlocking) on it; SQLite has one writer, so there is nothing to hold it there.
    (Job lease renewal goes through the same ``update_unlocked``.)"""
    m = accounts_reset
    if not is_postgres(m.manager.ctx.db.database):
        pytest.skip("row locks are PostgreSQL's")
    ids = [registered(m, admin, f"held{n}.example") for n in range(3)]
    when = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=datetime.UTC)
    other = psycopg2.connect(m.config.database_url)
    try:
        other.cursor().execute("UPDATE host SET inventory = '{}' WHERE id = %s", (ids[1],))
        start = time.monotonic()
        m.db(lambda: hosts.record_contact(ids, when))
        assert time.monotonic() - start < 5
    finally:
        other.rollback()
        other.close()
    seen = m.db(lambda: {h.id: h.last_contact for h in Host.select()})
    assert [seen[i] is not None for i in ids] == [True, False, True]
