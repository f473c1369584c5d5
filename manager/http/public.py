"""Anonymous endpoints: the CA certificate (IML's ``/certificate/``), liveness and version."""

from __future__ import annotations

from manager import __version__
from manager.http.base import BaseHandler
from manager.http.errors import ApiError


class CertificateHandler(BaseHandler):
    """Serves the manager's CA so clients can verify (and pin) the server certificate."""

    anonymous_methods = frozenset({"GET"})

    async def get(self) -> None:
        if self.ctx.ca is None:
            raise ApiError(404, "This manager has no certificate authority.")
        self.set_header("Content-Type", "application/x-pem-file")
        self.set_header("Content-Disposition", 'attachment; filename="shepherd-ca.crt"')
        self.finish(self.ctx.ca.ca_pem)


class HealthHandler(BaseHandler):
    """Liveness: the process answers. Readiness (database, migrations) is ``/readyz``."""

    anonymous_methods = frozenset({"GET"})

    async def get(self) -> None:
        self.write_json({"status": "ok"})


class VersionHandler(BaseHandler):
    anonymous_methods = frozenset({"GET"})

    async def get(self) -> None:
        self.write_json({"name": "shepherd", "version": __version__})


class AgentInfoHandler(BaseHandler):
    """Where agents register and connect (read by ``shepherd-agent register``)."""

    anonymous_methods = frozenset({"GET"})

    async def get(self) -> None:
        self.write_json({"agent_port": self.ctx.agent_port,
                         "registration_port": self.ctx.registration_port,
                         "ca_sha256": self.ctx.ca.fingerprint})
