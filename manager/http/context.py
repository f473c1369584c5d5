"""What every handler gets through ``initialize``: settings and the shared services."""

from __future__ import annotations

import dataclasses
import time

from manager.config import Config
from manager.db.executor import DatabaseExecutor
from manager.http.auth import Authenticator
from manager.pki import CertificateAuthority


@dataclasses.dataclass
class AppContext:
    config: Config
    db: DatabaseExecutor
    authenticator: Authenticator
    ca: CertificateAuthority | None
    started_at: float = dataclasses.field(default_factory=time.time)
