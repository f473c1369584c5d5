"""The SQLite database: commits through the connection rather than a cursor.

The database thread hands the interpreter lock away around each call into SQLite, and under
load every hand-off costs it a wait for the event loop to give the lock back. peewee
commits by running ``COMMIT`` as a cursor's statement, which hands the lock away twice (its
step, then its reset); the connection's own ``commit()`` runs the same COMMIT in one. Every
transaction on SQLite commits once, so each saves a hand-off.
"""

from __future__ import annotations

import peewee


class SqliteDatabase(peewee.SqliteDatabase):
    def commit(self) -> None:
        if self.is_closed():
            raise peewee.InterfaceError("Cannot commit, database connection not open.")
        with peewee.__exception_wrapper__:
            self.connection().commit()
