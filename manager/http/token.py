"""``/auth/token``: OAuth2-style password grant for bearer tokens, and their revocation.

Bearer tokens (``Authorization: Bearer …`` or ``X-Auth-Token``) work on every API family.
Errors follow RFC 6749 §5.2: ``{"error", "error_description"}``.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from manager.domain import accounts
from manager.domain.errors import AuthenticationFailed
from manager.domain.throttle import Throttled
from manager.http.base import BaseHandler


class TokenHandler(BaseHandler):
    anonymous_methods = frozenset({"POST"})
    route = "/auth/token"

    async def post(self) -> None:
        form = self._form()
        self.audit_username = str(form.get("username", ""))[:150]
        if form.get("grant_type") != "password":
            return self._oauth_error(400, "unsupported_grant_type",
                                     "Only grant_type=password is supported.")
        if not form.get("username") or not form.get("password"):
            return self._oauth_error(400, "invalid_request", "username and password are required.")
        try:
            user = await self.login(form["username"], form["password"])
        except AuthenticationFailed:
            return self._oauth_error(400, "invalid_grant", "Invalid username or password.")
        except Throttled as exc:
            self.set_header("Retry-After", str(int(exc.retry_after) + 1))
            return self._oauth_error(429, "slow_down", str(exc))
        token, ttl = await self.audited_write("login", "token", None, {"username": user.username},
                                              accounts.issue_token, user,
                                              self.ctx.config.token_ttl, self.request.remote_ip or "")
        self.write_json({"access_token": token, "token_type": "Bearer", "expires_in": ttl})

    async def delete(self) -> None:
        token = self.bearer_token()
        if token is None or self.principal is None or self.principal.via != "token":
            return self._oauth_error(400, "invalid_request", "Send the token to revoke as a bearer token.")
        await self.audited_write("request", "token", self.principal.credential_id, {},
                                 accounts.revoke_token, token)
        self.set_status(204)
        self.finish()

    def _form(self) -> dict[str, str]:
        body = self.request.body
        if self.request.headers.get("Content-Type", "").startswith("application/json"):
            doc = self.json_body()
            return {k: v for k, v in doc.items() if isinstance(v, str)}
        try:
            return {k: v[-1] for k, v in parse_qs(body.decode(), strict_parsing=False).items()}
        except UnicodeDecodeError:
            return {}

    def _oauth_error(self, status: int, code: str, description: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"error": code, "error_description": description}))
