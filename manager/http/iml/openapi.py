"""The OpenAPI 3.1 document of the IML family, generated from the resource declarations.

Every path, method, field, filter and ordering comes from the ``Resource`` objects the
application serves (``document(resources)`` is called by ``make_app`` with the very list the
routes are built from), and request bodies are the schemas ``Resource.check_fields``
validates with, so the document cannot drift from what is served. Only the few handlers
that are not resources (session, token, certificate) are described here by hand.
Served at ``GET /api/openapi.json`` without authentication: it is the contract clients
read before they log in.
"""

from __future__ import annotations

import copy
from typing import Any

from manager import __version__
from manager.http.base import BaseHandler
from manager.http.iml import query as q
from manager.http.iml.resource import JSON_TYPES, Field, Resource

ROUTE = "/api/openapi.json"
_TEXT_LOOKUPS = frozenset({"contains", "icontains", "startswith", "endswith", "iexact"})
_JSON = "application/json"
_SECURED = [{"bearer": []}, {"xAuthToken": []}, {"session": []}]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


# --- objects as rendered ----------------------------------------------------------------

def output_schema(field: Field) -> dict[str, Any]:
    """A rendered field: related objects are URIs, or the nested object when ``full``."""
    if field.type == "related":
        if field.to and field.full:
            one: dict[str, Any] = _ref(field.to)
        elif field.to:
            one = {"type": "string", "pattern": f"^/api/{field.to}/[^/]+/$"}
        else:
            one = {"anyOf": [{"type": "string"}, {"type": "object"}]}
        schema = {"type": "array", "items": one} if field.many else one
    else:
        schema = dict(JSON_TYPES[field.type])
    if field.choices:
        schema["enum"] = list(field.choices)
    if field.nullable:
        schema = _nullable(schema)
    return {**schema, "description": field.help, "readOnly": True} if field.readonly else \
        {**schema, "description": field.help}


def object_schema(resource: Resource) -> dict[str, Any]:
    """One object of ``resource`` as list and detail render it: every rendered field, no
    other."""
    shown = {name: f for name, f in sorted(resource.fields.items())
             if not f.write_only and not f.filter_only}
    return {"type": "object", "description": resource.description,
            "properties": {name: output_schema(f) for name, f in shown.items()},
            "required": sorted(shown), "additionalProperties": False}


# --- parameters ---------------------------------------------------------------------------

def _filter_value(field_type: str, lookup: str) -> dict[str, Any]:
    if lookup == "isnull":
        return {"type": "boolean"}
    if lookup in _TEXT_LOOKUPS:
        return {"type": "string"}
    if field_type == "integer":
        return {"type": "integer", "minimum": -q.MAX_ID, "maximum": q.MAX_ID}
    if field_type == "related":
        return {"anyOf": [{"type": "integer", "minimum": 1, "maximum": q.MAX_ID},
                          {"type": "string", "pattern": "^/api/[a-z_]+/[0-9]+/?$"}]}
    if field_type in ("boolean", "datetime"):
        return dict(JSON_TYPES[field_type])
    return {"type": "string"}


def filter_parameters(resource: Resource) -> list[dict[str, Any]]:
    """One query parameter per allowed ``field__lookup`` (``field`` alone for exact)."""
    params = []
    types = resource.filter_types()
    for name, lookups in sorted(resource.filtering.items()):
        for lookup in lookups:
            value = _filter_value(types[name], lookup)
            if lookup == "in":
                value = {"type": "array", "items": value}
            params.append({
                "name": name if lookup == "exact" else f"{name}__{lookup}", "in": "query",
                "required": False, "schema": value, "style": "form", "explode": True,
                "description": f"Filter: {name} {lookup} (also {name}__exact)" if
                lookup == "exact" else f"Filter: {name} {lookup}"})
    return params


def list_parameters(resource: Resource) -> list[dict[str, Any]]:
    page = {"type": "integer", "minimum": 0, "maximum": q.MAX_INT}
    params = [
        {"name": "limit", "in": "query", "schema": page,
         "description": f"Objects per page (default {q.DEFAULT_LIMIT}; 0: all)"},
        {"name": "offset", "in": "query", "schema": page, "description": "Objects to skip"},
    ]
    if resource.ordering:
        keys = [k for name in resource.ordering for k in (name, f"-{name}")]
        params.append({"name": "order_by", "in": "query", "style": "form", "explode": True,
                       "schema": {"type": "array", "items": {"type": "string", "enum": keys}},
                       "description": "Sort keys, '-' for descending"})
    return params + filter_parameters(resource)


_FORMAT = {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json"]},
           "description": "Only json is served"}
_DRY_RUN = {"name": "dry_run", "in": "query",
            "schema": {"type": "string", "enum": ["1", "true", "0", "false"]},
            "description": "Plan the change and answer the plan without making it"}


def _id_parameter(resource: Resource) -> dict[str, Any]:
    key = resource.fields.get("id")
    schema: dict[str, Any] = {"type": "string", "pattern": "^[^/]+$"}
    if key is not None and key.type == "integer":
        schema = {"type": "integer", "minimum": 1, "maximum": q.MAX_ID}
    return {"name": "id", "in": "path", "required": True, "schema": schema}


# --- responses ----------------------------------------------------------------------------

def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/{s}"} for s in statuses}


def _write_body(resource: Resource, kind: Any) -> dict[str, Any] | None:
    if kind is None:
        return None
    if kind == "object":
        return _ref(resource.name)
    if kind == "plan":
        return _ref("Plan")
    if kind == "command":
        return _ref("CommandAccepted")
    return kind


def _takes_dry_run(resource: Resource, method: str, on_list: bool) -> bool:
    return f"{method} {'list' if on_list else 'detail'}" in resource.dry_run_methods


def _write_responses(resource: Resource, method: str, on_list: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, kind in resource.write_responses(method, on_list).items():
        body = _write_body(resource, kind)
        if _takes_dry_run(resource, method, on_list) and status == 200 and kind == "object":
            body = {"anyOf": [body, _ref("Plan")]}
        responses[str(status)] = ({"description": "No content"} if body is None
                                  else _json(body, "Done"))
    return responses


# --- operations ---------------------------------------------------------------------------

def _operation(resource: Resource, method: str, on_list: bool) -> dict[str, Any]:
    where = "list" if on_list else "detail"
    op: dict[str, Any] = {"operationId": f"{method.lower()}_{resource.name}_{where}",
                          "tags": [resource.name], "summary": resource.description,
                          "security": _SECURED, "parameters": [_FORMAT]}
    if not on_list:
        op["parameters"] = [_id_parameter(resource), _FORMAT]
    if method == "GET" and on_list:
        op["parameters"] += list_parameters(resource)
        list_schema = {"type": "object", "required": ["meta", "objects"],
                       "additionalProperties": False,
                       "properties": {"meta": _ref("ListMeta"),
                                      "objects": {"type": "array",
                                                  "items": _ref(resource.name)}}}
        op["responses"] = {"200": _json(list_schema, "A page of objects")}
    elif method == "GET":
        op["responses"] = {"200": _json(_ref(resource.name), "The object")}
    else:
        if _takes_dry_run(resource, method, on_list):
            op["parameters"].append(_DRY_RUN)
        if method != "DELETE":
            op["requestBody"] = {"required": False, "content": {_JSON: {
                "schema": resource.body_schema(method, on_list)}}}
        op["responses"] = _write_responses(resource, method, on_list)
    write_errors = (409, 413) if method != "GET" else ()
    op["responses"].update(_errors(400, 401, 403, *(() if on_list else (404,)),
                                   *write_errors, 503))
    return op


def resource_paths(resource: Resource) -> dict[str, dict[str, Any]]:
    """The list, detail and schema paths of one resource, with the methods it allows."""
    paths: dict[str, dict[str, Any]] = {}
    if resource.list_methods:
        paths[resource.list_uri()] = {m.lower(): _operation(resource, m, True)
                                      for m in resource.list_methods}
    if resource.detail_methods:
        paths[resource.list_uri() + "{id}/"] = {m.lower(): _operation(resource, m, False)
                                                for m in resource.detail_methods}
    paths[resource.list_uri() + "schema/"] = {"get": {
        "operationId": f"get_{resource.name}_schema", "tags": [resource.name],
        "summary": f"Fields, filters and orderings of {resource.name}",
        "security": _SECURED, "parameters": [_FORMAT],
        "responses": {"200": _json(_ref("ResourceSchema"), "The resource's schema"),
                      **_errors(400, 401, 503)}}}
    return paths


def document(resources: list[Resource]) -> dict[str, Any]:
    """The whole document for ``resources`` (the list ``make_app`` routes)."""
    paths = {"/api/": {"get": {
        "operationId": "get_index", "summary": "Every resource with its list and schema",
        "security": _SECURED, "parameters": [_FORMAT],
        "responses": {"200": _json(_ref("Index"), "The resources"), **_errors(400, 401, 503)}}}}
    for resource in sorted(resources, key=lambda r: r.name):
        paths.update(resource_paths(resource))
    paths.update(copy.deepcopy(FIXED_PATHS))
    schemas = {r.name: object_schema(r) for r in resources}
    schemas.update(copy.deepcopy(SHARED_SCHEMAS))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Shepherd IML API", "version": __version__,
                 "description": "Intel Manager for Lustre's REST API as Shepherd serves it. "
                                "Errors are {field: message} objects ('__all__' when no one "
                                "field is to blame)."},
        "paths": paths,
        "components": {"schemas": schemas, "responses": copy.deepcopy(ERROR_RESPONSES),
                       "securitySchemes": SECURITY_SCHEMES},
    }


class OpenApiHandler(BaseHandler):
    """``GET /api/openapi.json``: the document built at start from the served resources."""

    anonymous_methods = frozenset({"GET"})
    route = ROUTE

    def initialize(self, ctx: Any, doc: dict[str, Any]) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.doc = doc

    async def get(self) -> None:
        self.write_json(self.doc)


# --- what is not a resource -----------------------------------------------------------------

_IML_ERRORS = {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}
_MESSAGE = {"type": "object", "required": ["__all__"], "additionalProperties": False,
            "properties": {"__all__": {"type": "string"}}}
ERROR_RESPONSES: dict[str, Any] = {
    "400": _json(_IML_ERRORS, "Invalid request: {field: message}, '__all__' for the "
                              "request as a whole"),
    "401": _json(_MESSAGE, "No or bad credentials (or CSRF token)"),
    "403": _json(_MESSAGE, "Not allowed for this user"),
    "404": _json(_MESSAGE, "No such object"),
    "409": _json(_MESSAGE, "Conflicts with the current state (e.g. the object is in use)"),
    "413": _json(_MESSAGE, "Request body too large"),
    "429": _json(_MESSAGE, "Too many failed logins; retry after Retry-After seconds"),
    "503": _json(_MESSAGE, "The database is unavailable; retry after Retry-After seconds"),
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "A token from POST /auth/token"},
    "xAuthToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"},
    "session": {"type": "apiKey", "in": "cookie", "name": "sessionid",
                "description": "From POST /api/session/; writes also need X-CSRFToken"},
}
_OAUTH_ERROR = {"type": "object", "required": ["error", "error_description"],
                "additionalProperties": False,
                "properties": {"error": {"type": "string"},
                               "error_description": {"type": "string"}}}
_SESSION = {"type": "object", "required": ["read_enabled", "resource_uri", "user"],
            "additionalProperties": False,
            "properties": {"read_enabled": {"type": "boolean"},
                           "resource_uri": {"type": "string", "const": "/api/session/"},
                           "user": _nullable(_ref("user"))}}
_CREDENTIALS = {"type": "object", "required": ["username", "password"],
                "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}
SHARED_SCHEMAS: dict[str, Any] = {
    "ImlErrors": _IML_ERRORS,
    "ListMeta": {"type": "object", "additionalProperties": False,
                 "required": ["limit", "offset", "total_count", "next", "previous"],
                 "properties": {"limit": {"type": "integer"}, "offset": {"type": "integer"},
                                "total_count": {"type": "integer"},
                                "next": {"type": ["string", "null"]},
                                "previous": {"type": ["string", "null"]}}},
    "CommandAccepted": {"type": "object", "required": ["command"],
                        "additionalProperties": False,
                        "properties": {"command": _ref("command")}},
    "Plan": {"type": "object", "required": ["dry_run", "jobs"],
             "description": "What a change would do, nothing done (dry run)",
             "properties": {"dry_run": {"const": True}, "message": {"type": "string"},
                            "jobs": {"type": "array", "items": {"type": "object"}}}},
    "Index": {"type": "object", "additionalProperties": {
        "type": "object", "required": ["list_endpoint", "schema"],
        "properties": {"list_endpoint": {"type": "string"}, "schema": {"type": "string"}}}},
    "ResourceSchema": {"type": "object", "required": [
        "allowed_detail_http_methods", "allowed_list_http_methods", "default_format",
        "default_limit", "fields", "filtering", "ordering"],
        "properties": {"allowed_detail_http_methods": {"type": "array"},
                       "allowed_list_http_methods": {"type": "array"},
                       "default_format": {"type": "string"},
                       "default_limit": {"type": "integer"},
                       "fields": {"type": "object"}, "filtering": {"type": "object"},
                       "ordering": {"type": "array"}}},
}
_ANONYMOUS: list[dict] = [{}, {"bearer": []}, {"xAuthToken": []}, {"session": []}]
FIXED_PATHS: dict[str, Any] = {
    "/api/session/": {
        "get": {"operationId": "get_session", "security": _ANONYMOUS,
                "summary": "Who is logged in; sets the csrftoken and sessionid cookies",
                "responses": {"200": _json(_SESSION, "The session"),
                              **_errors(400, 401, 503)}},
        "post": {"operationId": "post_session", "security": _ANONYMOUS,
                 "summary": "Log in (anonymous callers send X-CSRFToken as the cookie says)",
                 "requestBody": {"required": True, "content": {_JSON: {"schema": _CREDENTIALS}}},
                 "responses": {"201": _json(_SESSION, "Logged in"),
                               **_errors(400, 401, 403, 413, 429, 503)}},
        "delete": {"operationId": "delete_session", "security": _ANONYMOUS,
                   "summary": "Log out", "responses": {"204": {"description": "Logged out"},
                                                       **_errors(400, 401, 413, 503)}},
    },
    "/auth/token": {
        "post": {
            "operationId": "post_token", "security": _ANONYMOUS,
            "summary": "OAuth2 password grant: a bearer token for every API family",
            "requestBody": {"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "required": ["grant_type", "username", "password"],
                    "properties": {"grant_type": {"type": "string", "enum": ["password"]},
                                   "username": {"type": "string"},
                                   "password": {"type": "string"}}}}}},
            "responses": {
                "200": _json({"type": "object", "additionalProperties": False,
                              "required": ["access_token", "token_type", "expires_in"],
                              "properties": {"access_token": {"type": "string"},
                                             "token_type": {"const": "Bearer"},
                                             "expires_in": {"type": "integer"}}}, "A token"),
                "400": _json({"anyOf": [_OAUTH_ERROR, _ref("ImlErrors")]},
                             "RFC 6749 error (or a malformed JSON body)"),
                "429": _json(_OAUTH_ERROR, "Too many failed logins"),
                **_errors(401, 413, 503)}},
        "delete": {
            "operationId": "delete_token", "security": [{"bearer": []}, {"xAuthToken": []}],
            "summary": "Revoke the bearer token the request carries",
            "responses": {"204": {"description": "Revoked"},
                          "400": _json(_OAUTH_ERROR, "No bearer token sent"),
                          **_errors(401, 413, 503)}},
    },
    "/certificate/": {"get": {
        "operationId": "get_certificate", "security": [{}],
        "summary": "The manager's CA certificate, to verify and pin the server",
        "responses": {"200": {"description": "PEM certificate", "content": {
            "application/x-pem-file": {"schema": {"type": "string"}}}},
            **_errors(400, 401, 404, 503)}}},
    ROUTE: {"get": {
        "operationId": "get_openapi", "security": [{}],
        "summary": "This document", "responses": {
            "200": _json({"type": "object", "required": ["openapi", "paths"]}, "The document"),
            **_errors(400, 401, 503)}}},
}
