"""Who may do what, by IML group: the one place the groups' meanings are written down.

- superusers: everything, including accounts.
- filesystem_administrators: manage the cluster (hosts, tokens, power, file systems).
- filesystem_users: read everything, change only their own account.
"""

from __future__ import annotations

from manager.domain.accounts import Principal
from manager.domain.errors import PermissionDenied

ADMINISTRATORS = frozenset({"superusers", "filesystem_administrators"})


def can_administer(principal: Principal | None) -> bool:
    return principal is not None and bool(ADMINISTRATORS & principal.groups)


def require_administrator(principal: Principal | None, what: str) -> None:
    if not can_administer(principal):
        raise PermissionDenied(f"only superusers and filesystem administrators may {what}")
