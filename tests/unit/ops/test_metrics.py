"""HTTP request metrics keep their labels when their children are cached."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from manager.ops.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_requests_are_counted_and_timed_per_label_set() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.request_answered("iml", "/api/user/", "GET", 200, 0.003)
    metrics.request_answered("iml", "/api/user/", "GET", 404, 0.2)
    found = samples(metrics)
    labels = (("family", "iml"), ("method", "GET"), ("route", "/api/user/"))
    assert found[("shepherd_http_requests_total", (*labels, ("status", "200")))] == 3
    assert found[("shepherd_http_requests_total", (*labels, ("status", "404")))] == 1
    assert found[("shepherd_http_request_duration_seconds_count", labels)] == 4
    assert found[("shepherd_http_request_duration_seconds_bucket", (*labels[:1], ("le", "0.005"),
                                                                   *labels[1:]))] == 3
