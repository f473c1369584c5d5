"""Request and database-call metrics: counted by hand, exposed as Prometheus has them."""

from __future__ import annotations

import threading

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


def test_bucket_bounds_are_inclusive_and_past_the_last_is_inf_only() -> None:
    metrics = Metrics()
    metrics.request_answered("bos", "/apis/bos/v2/sessions", "POST", 201, 0.005)
    metrics.request_answered("bos", "/apis/bos/v2/sessions", "POST", 201, 11.0)
    found = samples(metrics)
    labels = (("family", "bos"), ("method", "POST"), ("route", "/apis/bos/v2/sessions"))

    def bucket(le: str) -> float:
        return found[("shepherd_http_request_duration_seconds_bucket",
                      (*labels[:1], ("le", le), *labels[1:]))]
    assert (bucket("0.0025"), bucket("0.005"), bucket("10.0"), bucket("+Inf")) == (0, 1, 1, 2)
    assert found[("shepherd_http_request_duration_seconds_sum", labels)] == 11.005


def test_database_calls_from_many_threads_are_all_counted() -> None:
    metrics = Metrics()

    def calls() -> None:
        for _ in range(5000):
            metrics.db_call_started()
            metrics.db_call_finished(0.002)

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    metrics.db_call_started()  # one still running
    found = samples(metrics)
    assert found[("shepherd_db_call_duration_seconds_count", ())] == 40_000
    assert found[("shepherd_db_call_duration_seconds_bucket", (("le", "0.0025"),))] == 40_000
    assert found[("shepherd_db_calls_in_flight", ())] == 1
