"""PostgreSQL stopped for 20 s under load: requests fail fast with 503 in IML's error shape,
``/readyz`` says why, and the manager recovers by itself when the database returns, with
every write it acknowledged still there."""

from __future__ import annotations

import threading
import time
from typing import Self

import requests

from api.client import ShepherdError
from tests.bench.harness import admin_client
from tests.manager_process import RunningManager
from tests.pgcluster import ThrowawayPostgres, free_port

OUTAGE_SECONDS = 20
FAST = 5.0  # a request while the database is down answers within this (connect timeout 3 s)


class Load:
    """Four clients creating registration tokens back to back; every answer is kept."""

    def __init__(self, client_factory) -> None:
        self.client_factory = client_factory
        self.answers: list[tuple[float, float, int | None, str | None]] = []  # start, s, status, id
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(4)]

    def _run(self) -> None:
        client = self.client_factory()
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                token = client.post("/api/registration_token/", {"profile": "compute_node"})
                status, token_id = 201, str(token["id"])
            except ShepherdError as exc:
                status, token_id = exc.status, None
                assert exc.status != 503 or isinstance(exc.body, dict), exc.body
            self.answers.append((start, time.monotonic() - start, status, token_id))
            time.sleep(0.05)

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def test_postgresql_outage_answers_503_fast_and_recovers_without_losing_writes(tmp_path):
    pg = ThrowawayPostgres(port=free_port())
    pg.start()
    try:
        url = pg.create_database("outage")
        m = RunningManager(str(tmp_path / "state"), url).start()
        try:
            _outage(m, pg)
        finally:
            m.stop()
    finally:
        pg.destroy()


def _outage(m: RunningManager, pg: ThrowawayPostgres) -> None:
    state_dir = m.config.state_dir
    clients = [admin_client(m.url, state_dir) for _ in range(5)]  # signed in while it is up
    probe = clients.pop()
    ready = f"{m.url}/readyz"
    ca = m.ca_path

    with Load(clients.pop) as load:
        time.sleep(2)
        pg.stop("immediate")  # as a crash: no goodbye to the manager's connections
        down_at = time.monotonic()
        time.sleep(2)
        answer = requests.get(ready, verify=ca, timeout=10)
        assert answer.status_code == 503
        assert "database" in answer.text
        time.sleep(OUTAGE_SECONDS - 2)
        pg.start()
        up_at = time.monotonic()
        deadline = up_at + 30
        while time.monotonic() < deadline:  # it recovers by itself: no restart, no command
            if requests.get(ready, verify=ca, timeout=10).status_code == 200:
                break
            time.sleep(0.5)
        recovered = time.monotonic() - up_at
        time.sleep(2)

    during = [a for a in load.answers if down_at + 1 < a[0] < up_at - 1]
    after = [a for a in load.answers if a[0] > up_at + recovered + 1]
    print(f"outage {OUTAGE_SECONDS} s: {len(during)} requests answered "
          f"{sorted({s for _, _, s, _ in during})} in at most "
          f"{max((s for _, s, _, _ in during), default=0):.2f} s; ready again "
          f"{recovered:.1f} s after the database returned; {len(after)} requests after")
    assert during and after
    assert {status for _, _, status, _ in during} == {503}, during[:5]
    assert max(seconds for _, seconds, _, _ in during) < FAST
    assert {status for _, _, status, _ in after} == {201}
    assert recovered < 30

    acknowledged = {token_id for _, _, status, token_id in load.answers if status == 201}
    stored = {str(t["id"]) for t in probe.get("/api/registration_token/", limit=0)["objects"]}
    assert acknowledged <= stored, f"lost: {sorted(acknowledged - stored)[:10]}"
    assert all(status in (201, 503) for _, _, status, _ in load.answers)
