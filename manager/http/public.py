"""Anonymous endpoints: the CA certificate (IML's ``/certificate/``), liveness and version."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST

from manager import __version__
from manager.db.executor import DatabaseUnavailable
from manager.http.base import BaseHandler
from manager.http.errors import ApiError
from manager.ops import health


class CertificateHandler(BaseHandler):
    """Serves the manager's CA so clients can verify (and pin) the server certificate."""

    anonymous_methods = frozenset({"GET"})
    route = "/certificate/"

    async def get(self) -> None:
        if self.ctx.ca is None:
            raise ApiError(404, "This manager has no certificate authority.")
        self.set_header("Content-Type", "application/x-pem-file")
        self.set_header("Content-Disposition", 'attachment; filename="shepherd-ca.crt"')
        self.finish(self.ctx.ca.ca_pem)


class HealthHandler(BaseHandler):
    """Liveness: the process answers. Readiness (database, migrations) is ``/readyz``."""

    anonymous_methods = frozenset({"GET"})
    route = "/healthz"

    async def get(self) -> None:
        self.write_json({"status": "ok"})


class VersionHandler(BaseHandler):
    anonymous_methods = frozenset({"GET"})
    route = "/version"

    async def get(self) -> None:
        self.write_json({"name": "shepherd", "version": __version__})


class AgentInfoHandler(BaseHandler):
    """Where agents register and connect (read by ``shepherd-agent register``)."""

    anonymous_methods = frozenset({"GET"})
    route = "/agent/"

    async def get(self) -> None:
        self.write_json({"agent_port": self.ctx.agent_port,
                         "registration_port": self.ctx.registration_port,
                         "ca_sha256": self.ctx.ca.fingerprint})


class ReadinessHandler(BaseHandler):
    """``/readyz`` for load balancers and systemd: 200 when the database answers, its schema
    is current and the agent server listens; 503 with the failing checks otherwise."""

    anonymous_methods = frozenset({"GET"})
    route = "/readyz"

    async def get(self) -> None:
        try:
            checks = await asyncio.wait_for(
                self.ctx.db.run(health.database_checks, self.ctx.db.database), 5)
        except (TimeoutError, DatabaseUnavailable) as exc:
            checks = [health.Check("database", False, str(exc) or "no answer within 5 s")]
        checks.append(health.port_check("agent_server", "127.0.0.1", self.ctx.agent_port, 1))
        ready = all(c.ok for c in checks)
        self.write_json({"status": "ready" if ready else "not ready",
                         "checks": [c.as_dict() for c in checks]}, 200 if ready else 503)


class MetricsHandler(BaseHandler):
    """Prometheus text exposition (authenticated; ``metrics_port`` serves it anonymously)."""

    route = "/metrics"

    async def get(self) -> None:
        if self.ctx.metrics is None:
            raise ApiError(404, "Metrics are turned off (metrics = false).")
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(self.ctx.metrics.exposition())
