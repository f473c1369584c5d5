"""Starting and stopping the manager: database, migrations, CA, and the servers on one loop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import tornado.httpserver
import tornado.netutil

from manager.config import Config
from manager.db import base as dbbase
from manager.db.executor import DatabaseExecutor
from manager.db.migrations import migrate
from manager.domain import accounts
from manager.files import ensure_private_dir, write_atomic
from manager.http.app import make_app
from manager.http.auth import Authenticator
from manager.http.context import AppContext
from manager.pki import CertificateAuthority

log = logging.getLogger("shepherd.manager")


class Manager:
    """One manager process: ``await start()``, then ``await stop()``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.http_server: tornado.httpserver.HTTPServer | None = None
        self.port: int | None = None
        self.ctx: AppContext | None = None

    async def start(self) -> None:
        cfg = self.config
        ensure_private_dir(cfg.state_dir)
        database = dbbase.open_database(cfg.resolved_database_url, max_connections=cfg.db_threads + 2)
        dbbase.bind(database)
        db = DatabaseExecutor(database, cfg.db_threads)
        applied = await db.run(migrate, database)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        password = await db.run(accounts.create_initial_admin)
        if password is not None:
            path = os.path.join(cfg.state_dir, "initial-admin-password")
            write_atomic(path, password.encode() + b"\n", 0o600)
            log.warning("no users existed: created superuser 'admin'; its password is in %s", path)
        ca = CertificateAuthority(cfg.state_dir)
        ssl_ctx = None
        if not cfg.http:
            ca.ensure_server_certificate(cfg.server_name_list())
            ssl_ctx = ca.server_ssl_context()
        self.ctx = AppContext(cfg, db, Authenticator(db, cfg.auth_cache_ttl), ca)
        app = make_app(self.ctx)
        self.http_server = tornado.httpserver.HTTPServer(
            app, ssl_options=ssl_ctx, xheaders=cfg.http, max_body_size=4 * cfg.max_body_bytes,
            idle_connection_timeout=300, body_timeout=60)
        sockets = tornado.netutil.bind_sockets(cfg.port, cfg.address, family=socket.AF_INET)
        self.port = sockets[0].getsockname()[1]
        self.http_server.add_sockets(sockets)

    @property
    def url(self) -> str:
        scheme = "http" if self.config.http else "https"
        host = "127.0.0.1" if self.config.address in ("0.0.0.0", "") else self.config.address
        return f"{scheme}://{host}:{self.port}"

    async def stop(self) -> None:
        if self.http_server is not None:
            self.http_server.stop()
            await self.http_server.close_all_connections()
        if self.ctx is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.ctx.db.shutdown)
