"""A write the API has answered is committed and durable (issue 14, durability).

Another connection — not the manager's — sees each answered write at once, and on
PostgreSQL the manager's sessions commit synchronously (the COMMIT waits for the WAL
flush) even when the server's default says otherwise.
"""

from __future__ import annotations

import sqlite3
from urllib.parse import unquote

import psycopg2

from manager.db.base import database_proxy


def _outside_connection(url: str):
    if url.startswith("sqlite:///"):
        return sqlite3.connect(unquote(url[len("sqlite:///"):].split("?", 1)[0]))
    connection = psycopg2.connect(url)
    connection.autocommit = True  # each read sees what is committed by then
    return connection


def test_each_answered_write_is_visible_to_another_connection_at_once(accounts_reset, admin):
    m = accounts_reset
    outside = _outside_connection(m.config.resolved_database_url)
    try:
        for i in range(30):
            token = admin.post("/api/registration_token/", {"profile": "compute_node"})
            admin.patch(f"/api/registration_token/{token['id']}/", {"cancelled": True})
            cursor = outside.cursor()
            cursor.execute(f"SELECT cancelled FROM registration_token WHERE id = {token['id']:d}")
            assert [bool(c) for (c,) in cursor.fetchall()] == [True], i
    finally:
        outside.close()


def test_postgresql_sessions_commit_synchronously(accounts_reset, pg_server):
    m = accounts_reset
    if m.config.resolved_database_url.startswith("sqlite"):
        return  # SQLite's synchronous=FULL is tests/unit/test_durability.py's
    # the server-wide default turned off, as a tuning guide might suggest
    admin_db = psycopg2.connect(m.config.resolved_database_url)
    admin_db.autocommit = True
    name = m.config.resolved_database_url.rsplit("/", 1)[1].split("?")[0]
    admin_db.cursor().execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        def setting() -> str:
            database = database_proxy.obj
            database.close()  # a new session, which reads the database's defaults
            database.connect()
            return database.execute_sql("SHOW synchronous_commit").fetchone()[0]
        assert m.db(setting) == "on"
    finally:
        admin_db.cursor().execute(f'ALTER DATABASE "{name}" RESET synchronous_commit')
        admin_db.close()
