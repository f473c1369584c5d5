"""Resolving a request's credentials: bearer token, ``X-Auth-Token`` or session cookie.

Validated tokens are cached for ``auth_cache_ttl`` seconds so a busy client costs no
database read per request. A revocation in this process (logout, password change, user
deletion) empties the cache at once via ``accounts.revocation_epoch``; another manager
sharing the database sees a revocation within the TTL.
"""

from __future__ import annotations

import time

from manager.db.executor import DatabaseExecutor
from manager.domain import accounts
from manager.domain.accounts import Principal

_MAX_ENTRIES = 50_000


class Authenticator:
    def __init__(self, db: DatabaseExecutor, cache_ttl: float) -> None:
        self.db = db
        self.cache_ttl = cache_ttl
        self._tokens: dict[str, tuple[Principal, float]] = {}
        self._epoch = accounts.revocation_epoch()

    async def from_token(self, token: str) -> Principal:
        """The principal of a bearer token; raises AuthenticationFailed with the reason."""
        self._drop_cache_if_revoked()
        key = accounts.digest(token)
        hit = self._tokens.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        principal = await self.db.run(accounts.resolve_token, token)
        if self.cache_ttl > 0:
            if len(self._tokens) >= _MAX_ENTRIES:
                self._tokens.clear()
            self._tokens[key] = (principal, time.monotonic() + self.cache_ttl)
        return principal

    async def from_session(self, key: str) -> tuple[Principal, str] | None:
        """The principal and CSRF token of a session cookie, None when not logged in."""
        return await self.db.run(accounts.resolve_session, key)

    def _drop_cache_if_revoked(self) -> None:
        epoch = accounts.revocation_epoch()
        if epoch != self._epoch:
            self._tokens.clear()
            self._epoch = epoch
