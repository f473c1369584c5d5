"""Generic handlers serving every declared IML resource: list, detail, schema, index."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from manager.http.base import BaseHandler
from manager.http.errors import ApiError
from manager.http.iml import query as q
from manager.http.iml.resource import Resource


class ResourceHandler(BaseHandler):
    """Common to list and detail: the resource and the methods it allows here."""

    methods_attr = "list_methods"

    def initialize(self, ctx: Any, resource: Resource) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.resource = resource

    def allowed_methods(self) -> list[str]:
        return list(getattr(self.resource, self.methods_attr))

    def route_label(self) -> str:
        return self.resource.list_uri()

    def audit_object(self) -> tuple[str, str]:
        return self.resource.name, self.path_args[0] if self.path_args else ""

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method not in self.allowed_methods():
            raise ApiError(405, f"Method {self.request.method} is not allowed on {self.request.path}",
                           {"Allow": ", ".join(self.allowed_methods())})

    def write_body(self) -> dict:
        """The JSON body, with ``?dry_run=1`` folded in as ``"dry_run": true``."""
        body = self.json_body()
        flag = self.get_query_argument("dry_run", None)
        if flag is not None and isinstance(body, dict):
            if flag.lower() not in ("1", "true", "0", "false"):
                raise ApiError(400, {"dry_run": "Must be 1, true, 0 or false."})
            body = {**body, "dry_run": flag.lower() in ("1", "true")}
        return body

    def answer(self, status: int, doc: dict | None) -> None:
        if isinstance(doc, dict) and "command" in doc:
            self.ctx.engine.wake()  # the command is committed: its jobs may run now
        if doc is None:
            self.set_status(status)
            self.finish()
        else:
            self.write_json(doc, status)


class ListHandler(ResourceHandler):
    async def get(self) -> None:
        try:
            lq = q.parse(self.query_args(), self.resource.filter_types(),
                         self.resource.filtering, self.resource.ordering)
        except q.QueryError as exc:
            raise ApiError(400, {exc.param: exc.message}) from None
        total, objects = await self.ctx.db.run(self.resource.list_page, self.principal, lq)
        self.write_json({"meta": self._meta(lq, total), "objects": objects})

    async def post(self) -> None:
        body = self.write_body()
        if hasattr(self.resource, "acreate"):  # work that waits on the network, not the DB
            status, doc = await self.resource.acreate(self.ctx, self.principal, body)
        else:
            status, doc = await self.audited_write("request", self.resource.name, None, body,
                                                   self.resource.create, self.principal, body)
        if doc and "resource_uri" in doc and status == 201:
            self.set_header("Location", doc["resource_uri"])
        if status == 201 and self.resource.name == "command":
            self.ctx.engine.wake()
        self.answer(status, doc)

    def _meta(self, lq: q.ListQuery, total: int) -> dict[str, Any]:
        limit = lq.limit or 0
        nxt = prev = None
        if limit and lq.offset + limit < total:
            nxt = self._page_uri(limit, lq.offset + limit)
        if limit and lq.offset > 0:
            prev = self._page_uri(limit, max(lq.offset - limit, 0))
        return {"limit": limit, "offset": lq.offset, "total_count": total,
                "next": nxt, "previous": prev}

    def _page_uri(self, limit: int, offset: int) -> str:
        args = [(k, v) for k, vs in self.query_args().items()
                if k not in ("limit", "offset") for v in vs]
        return f"{self.request.path}?{urlencode(args + [('limit', limit), ('offset', offset)])}"


class DetailHandler(ResourceHandler):
    methods_attr = "detail_methods"

    def route_label(self) -> str:
        return self.resource.list_uri() + "{id}/"

    async def get(self, obj_id: str) -> None:
        self.write_json(await self.ctx.db.run(self.resource.detail, self.principal, obj_id))

    async def put(self, obj_id: str) -> None:
        body = self.write_body()
        status, doc = await self.audited_write("request", self.resource.name, obj_id, body,
                                               self.resource.update, self.principal, obj_id, body)
        self.answer(status, doc)

    patch = put

    async def delete(self, obj_id: str) -> None:
        result = await self.audited_write("request", self.resource.name, obj_id, {},
                                          self.resource.delete, self.principal, obj_id)
        status, doc = result if isinstance(result, tuple) else (204, None)
        self.answer(status, doc)


class SchemaHandler(ResourceHandler):
    methods_attr = "list_methods"

    def route_label(self) -> str:
        return self.resource.list_uri() + "schema/"

    def allowed_methods(self) -> list[str]:
        return ["GET"]

    async def get(self) -> None:
        self.write_json(self.resource.schema())


class IndexHandler(BaseHandler):
    """``GET /api/``: every resource with its list endpoint and schema link."""

    route = "/api/"

    def initialize(self, ctx: Any, resources: list[Resource]) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.resources = resources

    async def get(self) -> None:
        self.write_json({r.name: {"list_endpoint": r.list_uri(), "schema": f"{r.list_uri()}schema/"}
                         for r in sorted(self.resources, key=lambda r: r.name)})


def routes(ctx: Any, resources: list[Resource]) -> list[tuple]:
    """URL routes for ``resources`` (with or without the trailing slash)."""
    table: list[tuple] = [(r"/api/?", IndexHandler, {"ctx": ctx, "resources": resources})]
    for r in resources:
        kw = {"ctx": ctx, "resource": r}
        table += [
            (rf"/api/{r.name}/schema/?", SchemaHandler, kw),
            (rf"/api/{r.name}/?", ListHandler, kw),
            (rf"/api/{r.name}/([^/]+)/?", DetailHandler, kw),
        ]
    return table
