"""``api.client.Client`` behaviours the CLI relies on, against a raw socket peer: idempotent
calls are retried after a dropped connection, others are not; the CA fingerprint."""

import socket
import threading

import pytest

from api.client import Client, ShepherdError, ca_fingerprint

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class DropFirst:
    """Accepts connections on loopback; closes the first without a word, answers the rest."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.accepted += 1
                conn.recv(65536)
                if self.accepted > 1:
                    conn.sendall(ANSWER)


@pytest.fixture
def peer():
    server = DropFirst()
    yield server
    server.sock.close()


def test_an_idempotent_call_is_retried_after_a_dropped_connection(peer):
    assert Client(peer.url, retries=2).get("/api/host/") == {}
    assert peer.accepted == 2


def test_a_post_is_not_retried(peer):
    with pytest.raises(ShepherdError) as err:
        Client(peer.url, retries=2).post("/api/registration_token/", {})
    assert err.value.status is None and "the connection was closed" in err.value.message
    assert peer.accepted == 1


def test_the_fingerprint_is_the_managers_ca_sha256(accounts_reset, ca_sha256):
    assert ca_fingerprint(accounts_reset.ca_pem()) == ca_sha256
    assert Client(accounts_reset.url).fetch_ca() == accounts_reset.ca_pem()
