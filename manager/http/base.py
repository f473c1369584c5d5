"""The base handler: request ids, JSON in and out, authentication, CSRF, error rendering.

Subclasses declare ``anonymous_methods`` (methods allowed without credentials) and
implement HTTP methods that parse, authorise, call the domain through ``self.db`` and
render with ``write_json``. Every error leaves through ``write_error``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import traceback
import uuid
from typing import Any
from urllib.parse import parse_qs

import tornado.web

from manager import logs
from manager.domain import accounts
from manager.domain.accounts import Principal
from manager.domain.errors import AuthenticationFailed
from manager.http import encoding, errors
from manager.http.context import AppContext
from manager.ops import audit
from manager.ops.writes import Write

log = logging.getLogger("shepherd.http")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class BaseHandler(tornado.web.RequestHandler):
    anonymous_methods: frozenset[str] = frozenset()
    route = "other"  # the route template metrics are labelled with (never the raw path)

    def initialize(self, ctx: AppContext, **kwargs: Any) -> None:
        self.ctx = ctx
        self.principal: Principal | None = None
        self.csrf_token: str | None = None
        self.audited = False  # set once the change and its audit row committed together
        self.audit_username = ""  # who a failed login claimed to be
        self.family = errors.family_of(self.request.path)
        incoming = self.request.headers.get("X-Request-Id", "")
        self.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex[:16]

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def prepare(self) -> None:
        self._request_id_token = logs.request_id.set(self.request_id)
        self.set_header("X-Request-Id", self.request_id)
        fmt = self.get_query_argument("format", "json")
        if fmt != "json":
            raise errors.ApiError(400, {"format": f"Unsupported format {fmt!r}; only 'json' is served."})
        await self.authenticate()
        if self.principal is None and self.request.method not in self.anonymous_methods:
            raise errors.ApiError(401, "Authentication credentials were not provided.",
                                  {"WWW-Authenticate": 'Bearer realm="shepherd"'})

    # --- credentials -------------------------------------------------------------------

    async def authenticate(self) -> None:
        token = self.bearer_token()
        if token is not None:
            try:
                self.principal = await self.ctx.authenticator.from_token(token)
            except AuthenticationFailed as exc:
                raise errors.ApiError(401, exc.message,
                                      {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
            return
        key = self.get_cookie("sessionid")
        if key:
            found = await self.ctx.authenticator.from_session(key)
            if found is not None:
                self.principal, self.csrf_token = found
                if self.request.method in UNSAFE_METHODS:
                    self.check_csrf(self.csrf_token)

    def bearer_token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        return self.request.headers.get("X-Auth-Token") or None

    def check_csrf(self, expected: str | None) -> None:
        """Cookie-authenticated writes must echo the CSRF token in ``X-CSRFToken``."""
        sent = self.request.headers.get("X-CSRFToken", "")
        if not expected or not sent or not hmac.compare_digest(sent, expected):
            raise errors.ApiError(401, "CSRF token missing or incorrect.")

    # --- audit and metrics ---------------------------------------------------------------

    def actor(self) -> audit.Actor:
        p = self.principal
        return audit.Actor(p.username if p else self.audit_username, p.user_id if p else None,
                           p.via if p else "", self.request.remote_ip or "", self.request.method,
                           self.request.path, self.request_id)

    async def audited_write(self, kind: str, object_type: str, object_id: Any, body: Any,
                            fn: Any, *args: Any) -> Any:
        """Run a write on a DB thread as one transaction (``RestWrites``); with auditing
        on, its audit row commits with it."""
        actor = self.actor() if self.ctx.config.audit else None
        result = await self.ctx.writes.run(Write(fn, args, actor, kind, object_type,
                                                 object_id, body))
        self.audited = actor is not None
        return result

    def on_finish(self) -> None:
        status = self.get_status()
        if self.ctx.metrics is not None:
            self.ctx.metrics.request_answered(self.family, self.route_label(),
                                              self.request.method, status,
                                              self.request.request_time())
        if self.ctx.config.audit and self.request.method in UNSAFE_METHODS and not self.audited:
            self._audit_refusal(status)
        if hasattr(self, "_request_id_token"):
            logs.request_id.reset(self._request_id_token)

    def route_label(self) -> str:
        return self.route

    def audit_object(self) -> tuple[str, str]:
        """The (type, id) a refused write aimed at, for its audit row."""
        return "", ""

    def _audit_refusal(self, status: int) -> None:
        kind = "login" if self.route in ("/auth/token", "/api/session/") else "request"
        object_type, object_id = self.audit_object()
        body = _parse_quietly(self.request.body)
        task = self.ctx.db.run(audit.record, self.actor(), kind, object_type, object_id, body,
                               status, "refused" if status >= 400 else "ok")
        future = asyncio.ensure_future(task)
        future.add_done_callback(_log_audit_failure)

    async def login(self, username: str, password: str) -> Any:
        """Check a password under the failed-login throttle; the User, or raises
        AuthenticationFailed / Throttled."""
        address = self.request.remote_ip or ""
        self.ctx.throttle.check(username, address)
        try:
            user = await self.ctx.db.run(accounts.authenticate, username, password)
        except AuthenticationFailed:
            self.ctx.throttle.failed(username, address)
            raise
        self.ctx.throttle.succeeded(username)
        return user

    # --- JSON in and out ---------------------------------------------------------------

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object; a 400 in the family's shape otherwise."""
        if not self.request.body:
            return {}
        try:
            text = self.request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.ApiError(400, "The request body is not valid UTF-8.") from None
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise errors.ApiError(400, f"Malformed JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise errors.ApiError(400, "The request body must be a JSON object.")
        return doc

    def query_args(self) -> dict[str, list[str]]:
        """Query arguments decoded as UTF-8 (a 400 otherwise)."""
        try:
            return {k: [v.decode() for v in vs] for k, vs in self.request.query_arguments.items()}
        except UnicodeDecodeError:
            raise errors.ApiError(400, "The query string is not valid UTF-8.") from None

    def write_json(self, doc: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(encoding.dumps(doc))

    def allowed_methods(self) -> list[str]:
        """Methods this handler implements (the ``Allow`` header of a 405)."""
        base = tornado.web.RequestHandler
        return [m for m in ALL_METHODS
                if getattr(type(self), m.lower()) is not getattr(base, m.lower())]

    # --- errors --------------------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        api = errors.from_exception(exc) if exc is not None else None
        if api is None and isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500:
            api = errors.ApiError(exc.status_code, exc.log_message or self._reason)
            if exc.status_code == 405:
                api.headers["Allow"] = ", ".join(self.allowed_methods())
        self.clear_header("Content-Type")
        self.set_header("X-Request-Id", self.request_id)
        if api is not None:
            self.set_status(api.status)
            for name, value in api.headers.items():
                self.set_header(name, value)
            content_type, body = errors.render(self.family, api, self.request_id, self.request.path)
        else:
            tb = "".join(traceback.format_exception(*kwargs["exc_info"])) if (
                self.ctx.config.dev and "exc_info" in kwargs) else None
            content_type, body = errors.render_server_error(self.family, self.request_id,
                                                            self.request.path, tb)
        self.set_header("Content-Type", content_type)
        self.finish(body)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        api = errors.from_exception(value) if value is not None else None
        if api is not None or (isinstance(value, tornado.web.HTTPError) and value.status_code < 500):
            if api is not None and api.status >= 500:
                log.warning("request %s: %s", self.request_id, api.message)
            return
        log.error("request %s: unhandled error in %s %s", self.request_id, self.request.method,
                  self.request.path, exc_info=(typ, value, tb))


def _parse_quietly(body: bytes) -> Any:
    """The request body for an audit summary: JSON if it is, else a form, else its size
    (a large refused body is not parsed at all: this runs on the event loop)."""
    if len(body) > 65536:
        return {"body_bytes": len(body)}
    try:
        return json.loads(body) if body else {}
    except (ValueError, RecursionError):
        pass
    try:
        return {k: v[-1] for k, v in parse_qs(body.decode()).items()}
    except UnicodeDecodeError:
        return {"body_bytes": len(body)}


def _log_audit_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not write an audit record: %s", future.exception())


class NotFoundHandler(BaseHandler):
    """Answers every unmatched path with a 404 in the family's shape."""

    route = "unmatched"

    async def prepare(self) -> None:
        self._request_id_token = logs.request_id.set(self.request_id)
        self.set_header("X-Request-Id", self.request_id)
        raise errors.ApiError(404, f"No such resource: {self.request.path}")
