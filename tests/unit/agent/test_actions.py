"""The action registry: validation before work, unknown names, errors, ping, sleep, report."""

import asyncio
import json
import types

import pytest

from agent.actions import ActionContext, ActionError, Registry, action, default_registry
from tests.unit.agent.factories import FakeMachine, make_request


def execute(request, registry=None, progress=None):
    ctx = ActionContext(request.action_id, None, FakeMachine(),
                        progress if progress is not None else (lambda line: None))
    return asyncio.run((registry or default_registry()).execute(request, ctx))


def test_default_actions():
    assert default_registry().names() == ["agent.ping", "agent.sleep", "host.validate",
                                          "power.cycle", "power.off", "power.on",
                                          "power.reset", "power.status", "report.inventory"]


def test_ping_answers_with_echo_and_fqdn():
    result = execute(make_request(args={"echo": "hi"}))
    assert result.success and result.action_id == "a1"
    assert json.loads(result.result_json) == {"pong": True, "echo": "hi",
                                              "fqdn": "node1.example.com"}


def test_unknown_action_is_a_failed_result():
    result = execute(make_request(name="power.explode"))
    assert not result.success
    assert result.error == "unknown action: 'power.explode'"


@pytest.mark.parametrize(("args_json", "message"), [
    ('{"seconds": -1}', "invalid arguments for agent.sleep: seconds: must be at least 0"),
    ('{"seconds": "5"}', 'invalid arguments for agent.sleep: seconds: must be of type "number"'),
    ('{"seconds": 1, "secret": "hunter2"}',
     "invalid arguments for agent.sleep: arguments: Additional properties are not allowed"),
    ("{}", "invalid arguments for agent.sleep: arguments: 'seconds' is a required property"),
    ('{"seconds": 1, "x": 2}', "Additional properties are not allowed"),
    ("[1", "invalid arguments for agent.sleep: not JSON"),
])
def test_bad_arguments_are_refused_before_any_work(args_json, message):
    request = make_request(name="agent.sleep")
    request.args_json = args_json
    result = execute(request)
    assert not result.success
    assert message in result.error


def _module_with(handler):
    return types.SimpleNamespace(handler=handler)


def test_handler_errors_become_failed_results():
    @action("t.expected", schema={"type": "object"})
    async def expected(args, ctx):
        raise ActionError("the disk is not there")

    @action("t.bug", schema={"type": "object"})
    async def bug(args, ctx):
        return 1 / 0

    registry = Registry.from_modules([_module_with(expected), _module_with(bug)])
    assert execute(make_request(name="t.expected"), registry).error == "the disk is not there"
    assert execute(make_request(name="t.bug"), registry).error == \
        "internal error: ZeroDivisionError: division by zero"


def test_a_name_may_be_declared_once():
    @action("t.twice", schema={"type": "object"})
    async def first(args, ctx):
        return {}

    with pytest.raises(ValueError, match="declared twice"):
        Registry.from_modules([_module_with(first), _module_with(first)])


def test_sleep_reports_progress_each_second():
    lines = []
    result = execute(make_request(name="agent.sleep", args={"seconds": 1.2}),
                     progress=lines.append)
    assert json.loads(result.result_json) == {"slept": 1.2}
    assert lines == ["slept 1/1.2 s", "slept 1/1.2 s"]


def test_report_inventory_returns_the_machine_inventory():
    result = execute(make_request(name="report.inventory"))
    assert json.loads(result.result_json) == FakeMachine().inventory()


@pytest.mark.parametrize("rule", [{"maxLength": 4}, {"pattern": "^[a-z]+$"}, {"enum": ["x"]}])
def test_a_refused_value_is_never_quoted(rule):
    """The value an argument was refused for may be a password: the error names the rule."""
    @action("t.secret", schema={"type": "object",
                                "properties": {"password": {"type": "string", **rule}}})
    async def secret(args, ctx):
        return {}

    request = make_request(name="t.secret")
    request.args_json = '{"password": "Hunter2-secret"}'
    error = execute(request, Registry.from_modules([_module_with(secret)])).error
    assert error.startswith("invalid arguments for t.secret: password: must ")
    assert "Hunter2" not in error
