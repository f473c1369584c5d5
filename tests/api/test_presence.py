"""The presence pass's batched contact record (``hosts.record_contact``) on both databases."""

import datetime

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
