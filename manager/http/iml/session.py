"""``/api/session/``: IML's cookie login with CSRF protection (iml-api.md "Access Control").

GET hands out ``csrftoken`` and ``sessionid`` cookies (an anonymous session is never
stored); POST with ``X-CSRFToken`` and credentials logs in and stores the session under a
fresh key; DELETE logs out.
"""

from __future__ import annotations

import secrets

from manager.domain import accounts
from manager.domain.errors import AuthenticationFailed
from manager.domain.throttle import Throttled
from manager.http.base import BaseHandler
from manager.http.errors import ApiError
from manager.http.iml.accounts import UserResource


class SessionHandler(BaseHandler):
    anonymous_methods = frozenset({"GET", "POST", "DELETE"})
    route = "/api/session/"

    async def get(self) -> None:
        if not self.get_cookie("csrftoken"):
            self._set_cookie("csrftoken", secrets.token_hex(16), httponly=False)
        if not self.get_cookie("sessionid"):
            self._set_cookie("sessionid", secrets.token_urlsafe(32))
        await self._write_session(200)

    async def post(self) -> None:
        if self.principal is None:  # a logged-in session was already CSRF-checked in prepare
            self.check_csrf(self.get_cookie("csrftoken"))
        body = self.json_body()
        self.audit_username = str(body.get("username") or "")[:150]
        missing = {f: "This field is required." for f in ("username", "password") if not body.get(f)}
        if missing:
            raise ApiError(400, missing)
        wrong = {f: "Must be a string." for f in ("username", "password")
                 if not isinstance(body[f], str)}
        if wrong:
            raise ApiError(400, wrong)
        try:
            user = await self.login(body["username"], body["password"])
        except AuthenticationFailed:
            raise ApiError(403, "Authentication Failed.") from None
        except Throttled as exc:
            raise ApiError(429, str(exc), {"Retry-After": str(int(exc.retry_after) + 1)}) from None
        csrf = self.get_cookie("csrftoken") or secrets.token_hex(16)
        old_key = self.get_cookie("sessionid")
        if old_key:
            await self.ctx.db.run(accounts.end_session, old_key)
        key = await self.audited_write("login", "session", None, {"username": user.username},
                                       accounts.start_session, user, csrf,
                                       self.ctx.config.session_ttl)
        self._set_cookie("sessionid", key)
        self._set_cookie("csrftoken", csrf, httponly=False)
        self.principal = (await self.ctx.authenticator.from_session(key))[0]
        await self._write_session(201)

    async def delete(self) -> None:
        key = self.get_cookie("sessionid")
        if key:
            await self.ctx.db.run(accounts.end_session, key)
        self.clear_cookie("sessionid", path="/")
        self.set_status(204)
        self.finish()

    async def _write_session(self, status: int) -> None:
        user = None
        if self.principal is not None:
            user = await self.ctx.db.run(UserResource().detail, self.principal, str(self.principal.user_id))
        self.write_json({"read_enabled": self.principal is not None, "resource_uri": "/api/session/",
                         "user": user}, status)

    def _set_cookie(self, name: str, value: str, httponly: bool = True) -> None:
        self.set_cookie(name, value, path="/", httponly=httponly, samesite="Lax",
                        secure=self.request.protocol == "https",
                        expires_days=self.ctx.config.session_ttl / 86400)
