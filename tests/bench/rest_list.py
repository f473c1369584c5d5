"""REST list benchmark: 10,000 users, ``GET /api/user/?limit=20`` and ``?limit=0``.

Prints p50/p90/p99 latency for one client and for 32 concurrent clients, and requests/s,
on SQLite and on PostgreSQL. Goal (issue 2): p99 < 20 ms for limit=20 at 32 clients on
PostgreSQL.

    .venv/bin/python -m tests.bench.rest_list [--seconds 10] [--users 10000] [--only sqlite]
"""

from __future__ import annotations

import argparse
import tempfile

from manager.db import base as dbbase
from manager.db.accounts import Group, User, UserGroup
from manager.db.migrations import migrate
from manager.domain import passwords
from tests.bench.harness import admin_client, manager_process, wrk
from tests.pgcluster import ThrowawayPostgres

CASES = (("limit=20", 1), ("limit=20", 32), ("limit=0", 1), ("limit=0", 32))


def seed(database_url: str, count: int) -> None:
    """Create ``count`` users (one shared password hash: hashing 10,000 would take minutes)."""
    database = dbbase.open_database(database_url)
    dbbase.bind(database)
    with database.connection_context():
        migrate(database)
        shared = passwords.hash_password("bench-password")
        users_group = Group.get(Group.name == "filesystem_users")
        with database.atomic():
            admin = User.create(username="admin", password_hash=shared)
            UserGroup.create(user=admin, group=Group.get(Group.name == "superusers"))
            rows = [{"username": f"user{i:05d}", "email": f"user{i:05d}@example.com",
                     "first_name": "Bench", "last_name": f"User {i}", "password_hash": shared}
                    for i in range(count)]
            for start in range(0, count, 1000):
                User.insert_many(rows[start:start + 1000]).execute()
            ids = [u.id for u in User.select(User.id).where(User.username.startswith("user"))]
            for start in range(0, len(ids), 1000):
                UserGroup.insert_many([{"user": i, "group": users_group.id}
                                       for i in ids[start:start + 1000]]).execute()
    database.close()


def run(name: str, database_url: str, state_dir: str, seconds: int, users: int) -> None:
    seed(database_url, users)
    with manager_process(state_dir, database_url) as url:
        client = admin_client(url, state_dir, "bench-password")
        client.get("/api/user/", limit=0)  # warm caches
        print(f"\n{name}: {users} users, manager at {url}")
        print(f"  {'request':<28}{'clients':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'req/s':>9}")
        for query, clients in CASES:
            r = wrk(f"{url}/api/user/?{query}", client.token, clients, seconds)
            note = f"  ({r['errors']} errors)" if r["errors"] else ""
            print(f"  GET /api/user/?{query:<14}{clients:>8}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}"
                  f"{r['p99_ms']:>9.2f}{r['rps']:>9.1f}{note}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as state:
            run("SQLite", f"sqlite:///{state}/shepherd.db", state, args.seconds, args.users)
    if args.only != "sqlite":
        with ThrowawayPostgres() as pg, tempfile.TemporaryDirectory() as state:
            run("PostgreSQL", pg.create_database("bench"), state, args.seconds, args.users)


if __name__ == "__main__":
    main()
