"""Readiness checks, shared by ``GET /readyz`` and ``shepherd-manager check``: the database
answers, its schema is current, the agent server listens."""

from __future__ import annotations

import dataclasses
import socket

import peewee

from manager.db.migrations import pending


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def database_checks(database: peewee.Database) -> list[Check]:
    """Run on a DB thread (with a connection): reachable, and no migration pending."""
    try:
        database.execute_sql("SELECT 1").fetchone()
    except peewee.PeeweeException as exc:
        return [Check("database", False, _first_line(exc)),
                Check("migrations", False, "database unreachable")]
    todo = pending(database)
    return [Check("database", True),
            Check("migrations", not todo, f"pending: {', '.join(todo)}" if todo else "")]


def port_check(name: str, host: str, port: int, timeout: float = 2.0) -> Check:
    if not port:
        return Check(name, False, "not listening")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Check(name, True)
    except OSError as exc:
        return Check(name, False, f"{host}:{port}: {exc.strerror or exc}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
