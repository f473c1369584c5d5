"""Builds the one Tornado application that serves every API family."""

from __future__ import annotations

import logging

import tornado.web

from manager.http.base import BaseHandler, NotFoundHandler
from manager.http.context import AppContext
from manager.http.iml.accounts import GroupResource, UserResource
from manager.http.iml.alerts import AlertResource
from manager.http.iml.audit_log import AuditLogResource
from manager.http.iml.commands import CommandResource, JobResource, StepResource
from manager.http.iml.handlers import routes as iml_routes
from manager.http.iml.hosts import HostResource, ServerProfileResource
from manager.http.iml.inventory import NodeResource, bulk_routes
from manager.http.iml.openapi import OpenApiHandler, document
from manager.http.iml.power import (
    PowerControlDeviceOutletResource,
    PowerControlDeviceResource,
    PowerControlTypeResource,
)
from manager.http.iml.registration import RegistrationTokenResource
from manager.http.iml.resource import Resource
from manager.http.iml.session import SessionHandler
from manager.http.iml.ssh_hosts import TestHostResource
from manager.http.public import (
    AgentInfoHandler,
    CertificateHandler,
    HealthHandler,
    MetricsHandler,
    ReadinessHandler,
    VersionHandler,
)
from manager.http.token import TokenHandler

access_log = logging.getLogger("shepherd.access")


def iml_resources(ctx: AppContext) -> list[Resource]:
    return [AlertResource(), AuditLogResource(), CommandResource(ctx.engine), GroupResource(),
            HostResource(ctx.engine), JobResource(ctx.engine), NodeResource(),
            PowerControlDeviceResource(ctx.secrets), PowerControlDeviceOutletResource(),
            PowerControlTypeResource(),
            RegistrationTokenResource(ctx.public_url, lambda: ctx.ca.fingerprint, ctx.config),
            ServerProfileResource(), StepResource(), TestHostResource(), UserResource()]


def make_app(ctx: AppContext) -> tornado.web.Application:
    kw = {"ctx": ctx}
    resources = iml_resources(ctx)
    routes = [
        (r"/certificate/?", CertificateHandler, kw),
        (r"/healthz", HealthHandler, kw),
        (r"/version", VersionHandler, kw),
        (r"/readyz", ReadinessHandler, kw),
        (r"/metrics", MetricsHandler, kw),
        (r"/auth/token", TokenHandler, kw),
        (r"/api/session/?", SessionHandler, kw),
        (r"/agent/?", AgentInfoHandler, kw),
        (r"/api/openapi\.json", OpenApiHandler, {**kw, "doc": document(resources)}),
        *bulk_routes(ctx, resources),
        *iml_routes(ctx, resources),
    ]
    return tornado.web.Application(routes, default_handler_class=NotFoundHandler,
                                   default_handler_args=kw, log_function=_log_request,
                                   compress_response=False)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    who = "-"
    if isinstance(handler, BaseHandler) and handler.principal is not None:
        who = handler.principal.username
    request = handler.request
    access_log.log(level, "%d %s %s %s user=%s %.1fms request_id=%s", status, request.method,
                   request.path, request.remote_ip, who, 1000 * request.request_time(),
                   getattr(handler, "request_id", "-"))
