"""Starting and stopping the manager: database, migrations, CA, and the servers on one loop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

import prometheus_client
import tornado.httpserver
import tornado.netutil

from manager import secrets
from manager.agents.presence import Presence
from manager.agents.server import build_server
from manager.agents.servicer import AgentServicer
from manager.agents.sessions import SessionRegistry
from manager.config import Config
from manager.db import base as dbbase
from manager.db.executor import DatabaseExecutor
from manager.db.hosts import Host
from manager.db.migrations import migrate
from manager.domain import accounts, host_lifecycle  # noqa: F401 - declares the host jobs
from manager.domain.inventory import power_jobs  # noqa: F401 - declares the power jobs
from manager.engine import registry
from manager.engine.dispatch import Dispatcher
from manager.engine.runner import Engine
from manager.files import ensure_private_dir, write_atomic
from manager.http.app import make_app
from manager.http.auth import Authenticator
from manager.http.body_limit import BodyLimit
from manager.http.context import AppContext
from manager.ops.housekeeping import Housekeeping
from manager.ops.metrics import Metrics
from manager.ops.power_sweep import PowerSweep
from manager.pki import CertificateAuthority
from manager.simulated_agents import SimulatedAgents

log = logging.getLogger("shepherd.manager")


class Manager:
    """One manager process: ``await start()``, then ``await stop()``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.http_server: tornado.httpserver.HTTPServer | None = None
        self.grpc_server = None
        self.port: int | None = None
        self.ctx: AppContext | None = None
        self.presence: Presence | None = None
        self.simulated: SimulatedAgents | None = None
        self.housekeeping: Housekeeping | None = None
        self.power_sweep: PowerSweep | None = None
        self.metrics_server = None

    async def start(self) -> None:
        cfg = self.config
        ensure_private_dir(cfg.state_dir)
        database = dbbase.open_database(cfg.resolved_database_url)
        dbbase.bind(database)
        metrics = Metrics() if cfg.metrics else None
        # SQLite has one writer at a time and its busy handler sleeps: one DB thread is both
        # the fastest reader (no GIL contention) and a writer that never waits on a lock.
        threads = cfg.db_threads if dbbase.is_postgres(database) else 1
        db = DatabaseExecutor(database, threads, metrics)
        applied = await db.run(migrate, database)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        await self._initial_admin(db)
        box = secrets.load(cfg.state_dir)
        secrets.install(box)
        ca = CertificateAuthority(cfg.state_dir)
        ca.ensure_server_certificate(cfg.server_name_list() + ([cfg.public_host] if cfg.public_host else []))
        sessions = SessionRegistry()
        dispatcher = Dispatcher(db, sessions, metrics, cfg.audit)
        engine = Engine(db, dispatcher, registry.default, self._instance_id(), cfg.audit,
                        metrics=metrics)
        engine.listeners.append(self._state_changed)
        self.ctx = AppContext(cfg, db, Authenticator(db, cfg.auth_cache_ttl), ca, dispatcher,
                              sessions, engine, metrics, secrets=box)
        await self._start_agent_server(db, ca, dispatcher, sessions)
        self._start_http(ca)
        dispatcher.start()
        engine.start()
        self._start_operability(db, metrics, sessions)
        if cfg.simulated_agents:
            self.simulated = SimulatedAgents(self.ctx, cfg.simulated_agents)
            await self.simulated.start()

    def _start_operability(self, db: DatabaseExecutor, metrics: Metrics | None,
                           sessions: SessionRegistry) -> None:
        cfg = self.config
        if metrics is not None:
            metrics.watch_streams(sessions.count_by_role, lambda: len(sessions.sessions))
            if cfg.metrics_port:
                self.metrics_server, _ = prometheus_client.start_http_server(
                    cfg.metrics_port, cfg.address, registry=metrics.registry)
        self.housekeeping = Housekeeping(db, metrics, cfg.audit_retention_days if cfg.audit else None)
        self.housekeeping.start()
        self.power_sweep = PowerSweep(db, self.ctx.dispatcher, cfg.power_poll_interval,
                                      sessions.is_connected)
        self.power_sweep.start()

    def _instance_id(self) -> str:
        """This manager's name in job claims, kept across restarts so that its own jobs are
        resumed at once (another manager's wait for their lease to run out)."""
        path = os.path.join(self.config.state_dir, "manager-id")
        try:
            with open(path, encoding="ascii") as f:
                return f.read().strip()
        except FileNotFoundError:
            instance = f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
            write_atomic(path, instance.encode() + b"\n", 0o600)
            return instance

    def _state_changed(self, object_type: str, object_id: int, state: str) -> None:
        if object_type == "host" and state == "removed":
            self.ctx.sessions.disconnect(object_id)  # its certificate is revoked: end the stream

    async def _initial_admin(self, db: DatabaseExecutor) -> None:
        password = await db.run(accounts.create_initial_admin)
        if password is not None:
            path = os.path.join(self.config.state_dir, "initial-admin-password")
            write_atomic(path, password.encode() + b"\n", 0o600)
            log.warning("no users existed: created superuser 'admin'; its password is in %s", path)

    async def _start_agent_server(self, db: DatabaseExecutor, ca: CertificateAuthority,
                                  dispatcher: Dispatcher, sessions: SessionRegistry) -> None:
        cfg = self.config
        self.presence = Presence(db, sessions, cfg.contact_timeout, metrics=self.ctx.metrics)
        servicer = AgentServicer(db, ca, dispatcher, sessions, self.presence, cfg.heartbeat_interval,
                                 on_registered=self.ctx.engine.wake)
        self.grpc_server, self.ctx.agent_port, self.ctx.registration_port = build_server(
            ca, servicer, cfg.address, cfg.agent_port, cfg.registration_port)
        await self.grpc_server.start()
        live = await db.run(lambda: [h for (h,) in Host.select(Host.id)
                                     .where(Host.state != "removed").tuples()])
        await db.run(lambda: Host.update(connected=False).where(Host.connected == True).execute())
        self.presence.start(live)

    def _start_http(self, ca: CertificateAuthority) -> None:
        cfg = self.config
        ssl_ctx = None if cfg.http else ca.server_ssl_context()
        self.http_server = tornado.httpserver.HTTPServer(
            BodyLimit(make_app(self.ctx), cfg.max_body_bytes, self.ctx.metrics),
            ssl_options=ssl_ctx, xheaders=cfg.http, max_body_size=cfg.max_body_bytes,
            idle_connection_timeout=300, body_timeout=60)
        sockets = tornado.netutil.bind_sockets(cfg.port, cfg.address, family=socket.AF_INET)
        self.port = self.ctx.http_port = sockets[0].getsockname()[1]
        self.http_server.add_sockets(sockets)

    @property
    def url(self) -> str:
        scheme = "http" if self.config.http else "https"
        host = "127.0.0.1" if self.config.address in ("0.0.0.0", "") else self.config.address
        return f"{scheme}://{host}:{self.port}"

    async def stop(self) -> None:
        if self.simulated is not None:
            await self.simulated.stop()
        if self.http_server is not None:
            self.http_server.stop()
            await self.http_server.close_all_connections()
        if self.ctx is not None:
            await self.ctx.writes.stop()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=1.0)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        if self.housekeeping is not None:
            await self.housekeeping.stop()
        if self.power_sweep is not None:
            await self.power_sweep.stop()
        if self.ctx is not None:
            await self.ctx.engine.stop()
            await self.ctx.dispatcher.stop()
            if self.presence is not None:
                await self.presence.stop()
            await asyncio.get_running_loop().run_in_executor(None, self.ctx.db.shutdown)
