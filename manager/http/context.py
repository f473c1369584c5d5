"""What every handler gets through ``initialize``: settings and the shared services."""

from __future__ import annotations

import dataclasses
import socket
import time

from manager.agents.sessions import SessionRegistry
from manager.config import Config
from manager.db.executor import DatabaseExecutor
from manager.domain.throttle import LoginThrottle
from manager.engine.dispatch import Dispatcher
from manager.engine.runner import Engine
from manager.http.auth import Authenticator
from manager.ops.metrics import Metrics
from manager.ops.writes import RestWrites
from manager.pki import CertificateAuthority
from manager.secrets import SecretBox


@dataclasses.dataclass
class AppContext:
    config: Config
    db: DatabaseExecutor
    authenticator: Authenticator
    ca: CertificateAuthority
    dispatcher: Dispatcher
    sessions: SessionRegistry
    engine: Engine
    metrics: Metrics | None = None
    throttle: LoginThrottle | None = None
    secrets: SecretBox | None = None  # encrypts stored device passwords
    writes: RestWrites | None = None  # how REST writes and their audit rows are committed
    http_port: int = 0
    agent_port: int = 0
    registration_port: int = 0
    started_at: float = dataclasses.field(default_factory=time.time)
    public_host: str = ""

    def __post_init__(self) -> None:
        # resolved once: getfqdn() asks DNS, which can take tens of milliseconds
        self.public_host = self.config.public_host or socket.getfqdn()
        if self.writes is None:
            self.writes = RestWrites(self.db)
        if self.throttle is None:
            self.throttle = LoginThrottle(self.config.login_failures_per_user,
                                          self.config.login_failures_per_address,
                                          self.config.login_lockout_seconds)

    def public_url(self) -> str:
        """The REST URL agents and clients should use (for register commands)."""
        scheme = "http" if self.config.http else "https"
        return f"{scheme}://{self.public_host}:{self.http_port}"
