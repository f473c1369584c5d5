"""The one HTTP client for Shepherd's REST APIs, used by the CLI and by the tests.

It keeps one connection pool (``requests.Session``), verifies the manager's certificate
against a pinned CA file (or not at all when told ``verify=False``), retries idempotent
calls on connection errors, and raises ``ShepherdError`` carrying the server's own message
whatever the API family's error shape.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

import requests
import urllib3

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


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
            parts = [f"{v}" if k == "__all__" else f"{k}: {v}" for k, v in body.items()]
            return "; ".join(parts)
    return fallback


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
        attempts = self.retries if method.upper() in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                response = self.session.request(method, url, json=json_body, params=params,
                                                data=data, headers=hdrs, verify=self.verify,
                                                timeout=self.timeout)
                break
            except requests.exceptions.SSLError as exc:
                raise ShepherdError(f"TLS verification of {self.url} failed: {exc}") from None
            except requests.exceptions.ConnectionError:
                if attempt + 1 == attempts:
                    raise ShepherdError(f"cannot connect to {self.url}") from None
                time.sleep(0.2 * 2**attempt)
            except requests.exceptions.Timeout:
                raise ShepherdError(f"{self.url} did not answer within {self.timeout:g} s") from None
        if response.status_code >= 400:
            body = _json_or_none(response)
            fallback = f"HTTP {response.status_code} {response.reason}"
            raise ShepherdError(error_message(body, fallback), response.status_code, body)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return _json_or_none(self.request("GET", path, params=params or None))

    def post(self, path: str, body: Any = None) -> Any:
        return _json_or_none(self.request("POST", path, json_body=body if body is not None else {}))

    def put(self, path: str, body: Any) -> Any:
        return _json_or_none(self.request("PUT", path, json_body=body))

    def delete(self, path: str) -> Any:
        return _json_or_none(self.request("DELETE", path))

    def iter_objects(self, path: str, page_size: int = 200, **params: Any) -> Iterator[dict]:
        """Every object of an IML list, fetched page by page through ``limit``/``offset``."""
        offset = 0
        while True:
            page = self.get(path, limit=page_size, offset=offset, **params)
            yield from page["objects"]
            offset += len(page["objects"])
            if not page["objects"] or page["meta"]["next"] is None:
                return

    # --- authentication ----------------------------------------------------------------

    def login(self, username: str, password: str) -> dict:
        """Get a bearer token (``POST /auth/token``) and use it from now on."""
        response = self.request("POST", "/auth/token", data={
            "grant_type": "password", "username": username, "password": password})
        doc = response.json()
        self.token = doc["access_token"]
        return doc

    def logout(self) -> None:
        """Revoke the current token on the server."""
        if self.token:
            self.request("DELETE", "/auth/token")
            self.token = None

    def fetch_ca(self) -> bytes:
        """The manager's CA certificate (fetch unverified, then pin it by fingerprint)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            response = self.session.get(self.url + "/certificate/", verify=False, timeout=self.timeout)
        if response.status_code != 200:
            raise ShepherdError(f"cannot fetch the CA: HTTP {response.status_code}", response.status_code)
        return response.content


def _json_or_none(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except json.JSONDecodeError:
        return None
