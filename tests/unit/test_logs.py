"""Log lines: text and JSON, with the request id of the context and action fields."""

import json
import logging

from manager import logs


def record(message, **extra):
    logger = logging.getLogger("test.logs")
    token = logs.request_id.set("req-7")
    try:
        rec = logger.makeRecord("test.logs", logging.INFO, __file__, 1, message, (), None,
                                extra=extra or None)
    finally:
        logs.request_id.reset(token)
    return rec


def test_json_lines_carry_request_and_action():
    doc = json.loads(logs.JsonFormatter().format(record("done", action_id="a1", host=5)))
    assert doc["message"] == "done" and doc["level"] == "INFO" and doc["logger"] == "test.logs"
    assert (doc["request_id"], doc["action_id"], doc["host"]) == ("req-7", "a1", 5)
    assert doc["time"].endswith("+00:00")


def test_text_lines_end_with_their_tags():
    line = logs.TextFormatter().format(record("done", action_id="a1"))
    assert line.endswith("test.logs: done [request_id=req-7 action_id=a1]")


def test_lines_outside_a_request_have_no_tags():
    rec = logging.getLogger("t").makeRecord("t", logging.INFO, __file__, 1, "idle", (), None)
    assert logs.TextFormatter().format(rec).endswith("t: idle")
    assert "request_id" not in json.loads(logs.JsonFormatter().format(rec))
