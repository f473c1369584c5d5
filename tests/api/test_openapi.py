"""The IML family's OpenAPI document: valid, in step with the routes, and true of the server.

Schemathesis generates requests for every documented operation (valid and invalid ones)
against a live manager on each database, signed in as the superuser, and checks that no
answer is a server error and that every answer's status, content type and body are the ones
the document gives. Examples are bounded and derandomized so a run is reproducible and takes
a minute or two per database; shrinking is off (a failure is reported as found).
"""

from __future__ import annotations

import re
import time

import hypothesis
import pytest
import requests
import schemathesis
import tornado.web
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from manager.db.inventory import (
    Node,
    PowerControlDevice,
    PowerControlDeviceOutlet,
    PowerControlType,
)
from manager.domain.inventory.power_types import BUILTIN_TYPES
from manager.http.app import iml_resources, make_app
from manager.http.iml.handlers import ResourceHandler, SchemaHandler
from manager.http.iml.openapi import ROUTE
from tests.api.seeding import host_with_finished_work

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# Paths outside the IML family that the manager serves (documented elsewhere or not APIs).
OTHER_FAMILIES = re.compile(r"^/(apis|v2|healthz|version|readyz|metrics|agent)\b")


def fetch_document(manager) -> dict:
    s = requests.Session()
    s.trust_env = False
    r = s.get(manager.url + ROUTE, verify=manager.ca_path)  # no credentials: anyone may read it
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def document(accounts_reset) -> dict:
    return fetch_document(accounts_reset)


def test_document_is_valid_openapi_3(document):
    assert document["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI meta-schema


def _implemented(handler: type[tornado.web.RequestHandler], kwargs: dict) -> set[str]:
    if issubclass(handler, SchemaHandler):
        return {"GET"}
    if issubclass(handler, ResourceHandler):
        return set(getattr(kwargs["resource"], handler.methods_attr))
    base = tornado.web.RequestHandler
    return {m for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if getattr(handler, m.lower()) is not getattr(base, m.lower())}


def test_document_covers_every_route_and_method(document, accounts_reset):
    """Each IML route of the application, with each method it serves, has its path in the
    document, and the document has no path the application does not serve."""
    app = make_app(accounts_reset.manager.ctx)
    served = {}
    for rule in app.wildcard_router.rules:
        pattern = rule.matcher.regex.pattern
        methods = _implemented(rule.target, rule.target_kwargs)
        if methods and not OTHER_FAMILIES.match(pattern.lstrip("^")):  # none: always a 405
            served[pattern] = (rule.matcher.regex, methods)
    documented = {path: {m.upper() for m in ops} for path, ops in document["paths"].items()}
    matched = set()
    for path, methods in documented.items():
        sample = path.replace("{id}", "1")
        # the first matching rule is the one Tornado dispatches to
        pattern = next((p for p, (rx, _) in served.items() if rx.match(sample)), None)
        assert pattern is not None, f"{path} is documented but not served"
        assert methods == served[pattern][1], f"{path}: documented {methods}, served {served[pattern][1]}"
        matched.add(pattern)
    assert set(served) - matched == set(), "served but not documented"


def test_document_shows_every_field_filter_and_ordering(document, accounts_reset):
    schemas = document["components"]["schemas"]
    for resource in iml_resources(accounts_reset.manager.ctx):
        shown = set(schemas[resource.name]["properties"])
        for name, field in resource.fields.items():
            assert (name in shown) == (not field.write_only and not field.filter_only), name
        if "GET" not in resource.list_methods:
            continue
        params = {p["name"]: p for p in document["paths"][resource.list_uri()]["get"]["parameters"]}
        for name, lookups in resource.filtering.items():
            for lookup in lookups:
                assert (name if lookup == "exact" else f"{name}__{lookup}") in params
        keys = set(params["order_by"]["schema"]["items"]["enum"]) if resource.ordering else set()
        assert keys == {k for o in resource.ordering for k in (o, f"-{o}")}


# --- schemathesis against the live manager ------------------------------------------------

def seed(manager, admin) -> dict[str, int]:
    """One object of each kind, so that half the generated requests for a detail path reach
    a real object (the others a random id: 404)."""
    def create():
        work = host_with_finished_work("fuzz")
        ptype = PowerControlType.create(name="fuzz type", agent="fence_apc")
        device = PowerControlDevice.create(device_type=ptype, name="pdu", address="192.0.2.8",
                                           port=161)
        outlet = PowerControlDeviceOutlet.create(device=device, identifier="1")
        node = Node.create(xname="x9c0s0b1n0", xname_key="x9", role="Compute", outlet=outlet)
        return {**work, "node": node.id, "power_control_type": ptype.id, "power_control_device": device.id,
                "power_control_device_outlet": outlet.id}

    ids = manager.db(create)
    other = admin.post("/api/user/", {"username": "fuzzed", "password1": "fuzzed-pass-1",
                                      "password2": "fuzzed-pass-1"})
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})
    return {**ids, "user": other["id"], "registration_token": token["id"]}


@pytest.fixture
def live(admin, accounts_reset):
    """The served document, an HTTPS session signed in as the superuser, the seeded ids."""
    session = requests.Session()
    session.trust_env = False
    session.verify = accounts_reset.ca_path
    session.headers["Authorization"] = f"Bearer {admin.token}"
    schema = schemathesis.openapi.from_dict(fetch_document(accounts_reset))
    schema.config.update(base_url=accounts_reset.url)
    yield schema, session, seed(accounts_reset, admin)

    def forget_power():  # rows the account reset of the next test leaves alone
        for model in (Node, PowerControlDeviceOutlet, PowerControlDevice):
            model.delete().execute()
        PowerControlType.delete().where(PowerControlType.name.not_in(BUILTIN_TYPES)).execute()
    accounts_reset.db(forget_power)


EXCLUDED = {
    # revoking the bearer token the run signs in with would end the run
    ("DELETE", "/auth/token"),
    # these connect over SSH to whatever address is generated: minutes of timeouts
    ("POST", "/api/host/"), ("POST", "/api/test_host/"),
}
SETTINGS = hypothesis.settings(
    max_examples=20, derandomize=True, deadline=None, database=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking
    suppress_health_check=list(hypothesis.HealthCheck))


def exercise(operation, mode, session, ids, counter) -> None:
    """Bounded examples of one operation in one generation mode; raises the first failure."""
    resource = operation.path.split("/")[2] if operation.path.startswith("/api/") else ""

    @SETTINGS
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        identifier = (case.path_parameters or {}).get("id")
        if isinstance(identifier, int) and identifier % 2 and resource in ids:
            case.path_parameters["id"] = ids[resource]  # half the cases reach a real object
        session.cookies.clear()  # /api/session/ sets cookies; each case stands alone
        counter[0] += 1
        case.call_and_validate(session=session, checks=CHECKS, verify=session.verify)

    run()


def test_server_answers_as_documented(live):
    schema, session, ids = live
    started, counter, failures, operations = time.monotonic(), [0], [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                exercise(operation, mode, session, ids, counter)
            except hypothesis.errors.Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # no parameter to make invalid
            except (FailureGroup, requests.RequestException) as exc:  # all reported below
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    summary = (f"{operations} operations, {counter[0]} requests, {len(failures)} failures, "
               f"{time.monotonic() - started:.0f} s")
    print(summary)
    assert not failures, summary + "\n\n" + "\n\n".join(failures)
