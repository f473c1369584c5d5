"""Prometheus metrics of one manager, in a registry of its own.

Names and labels follow Prometheus's conventions (``_total`` counters, ``_seconds`` units);
no label takes an unbounded value: routes are templates, action names outside the known
pattern count as ``other``, and no host name or id ever becomes a label.
"""

from __future__ import annotations

import bisect
import itertools
import re
import threading
import time
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.utils import floatToGoString

_ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}\.[a-z][a-z0-9_]{0,30}\Z")
_MAX_ACTION_NAMES = 200
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ACTION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.actions_dispatched = Counter(
            "shepherd_actions_dispatched_total", "Actions queued for agents.", ["action"], registry=r)
        self.actions_completed = Counter(
            "shepherd_actions_completed_total", "Actions finished, by outcome.",
            ["action", "outcome"], registry=r)
        self.action_duration = Histogram(
            "shepherd_action_duration_seconds", "From dispatch to stored result.", ["action"],
            buckets=ACTION_BUCKETS, registry=r)
        self.actions_in_flight = Gauge(
            "shepherd_actions_in_flight", "Actions dispatched and not finished.", registry=r)
        self.worker_lag = Gauge(
            "shepherd_worker_lag_seconds", "How late a periodic background pass last ran.",
            ["worker"], registry=r)
        self.agents_registered = Gauge(
            "shepherd_agents_registered", "Live hosts with an agent, by role.", ["role"], registry=r)
        self.engine_step = Histogram(
            "shepherd_engine_step_duration_seconds", "Database time the engine spends per job "
            "step (record its outcome, start the next).", buckets=LATENCY_BUCKETS, registry=r)
        self.jobs_running = Gauge(
            "shepherd_jobs_running", "Jobs this manager is running now.", registry=r)
        self._action_names: set[str] = set()
        # counted by hand, exposed by _RequestCollector: every request and database call
        # updates these, and prometheus_client's objects check and lock on each update
        self._http_requests: dict[tuple[str, str, str, int], int] = {}
        self._http_latency: dict[tuple[str, str, str], _Latencies] = {}
        self._db_lock = threading.Lock()
        self._db_in_flight = 0
        self._db_latency = _Latencies()
        r.register(_RequestCollector(self))

    def request_answered(self, family: str, route: str, method: str, status: int,
                         seconds: float) -> None:
        """Count and time one answered request. On the event loop only: the counts are
        plain numbers, updated without a lock."""
        key = (family, route, method, status)
        self._http_requests[key] = self._http_requests.get(key, 0) + 1
        latency = self._http_latency.get(key[:3])
        if latency is None:
            latency = self._http_latency[key[:3]] = _Latencies()
        latency.observe(seconds)

    def db_call_started(self) -> None:
        """A database call starts on a DB thread."""
        with self._db_lock:
            self._db_in_flight += 1

    def db_call_finished(self, seconds: float) -> None:
        with self._db_lock:
            self._db_in_flight -= 1
            self._db_latency.observe(seconds)

    def action_label(self, name: str) -> str:
        """Action names are code-defined; anything unexpected is counted as ``other``."""
        if name in self._action_names:
            return name
        if _ACTION_NAME.match(name) and len(self._action_names) < _MAX_ACTION_NAMES:
            self._action_names.add(name)
            return name
        return "other"

    def watch_streams(self, count_by_role: Callable[[], dict[str, int]],
                      streams: Callable[[], int]) -> None:
        """Gauges read at scrape time from the connected-agent registry (in memory)."""
        self.registry.register(_StreamCollector(count_by_role, streams))

    def worker_ran(self, worker: str, due: float) -> None:
        """A periodic pass meant to start at monotonic time ``due`` starts now."""
        self.worker_lag.labels(worker).set(max(0.0, time.monotonic() - due))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Latencies:
    """A histogram's counts per bucket of ``LATENCY_BUCKETS`` (the last is +Inf), and sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative counts by upper bound, as the exposition format has them."""
        bounds = [*(floatToGoString(b) for b in LATENCY_BUCKETS), "+Inf"]
        return list(zip(bounds, itertools.accumulate(self.counts), strict=True))


class _RequestCollector:
    """The request and database-call metrics, read at scrape time: on the event loop, or on
    the metrics port's own thread. Their dicts change on the loop; ``sorted`` copies each
    one's items in a single step for the interpreter, which a Python loop over it would not."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self):
        m = self.metrics
        requests = CounterMetricFamily("shepherd_http_requests", "HTTP requests answered.",
                                       labels=["family", "route", "method", "status"])
        for (family, route, method, status), count in sorted(m._http_requests.items()):
            requests.add_metric([family, route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily("shepherd_http_request_duration_seconds",
                                        "Time to answer an HTTP request.",
                                        labels=["family", "route", "method"])
        for labels, seen in sorted(m._http_latency.items()):
            latency.add_metric(list(labels), seen.buckets(), seen.total)
        yield latency
        with m._db_lock:
            in_flight, db_buckets, db_total = (m._db_in_flight, m._db_latency.buckets(),
                                               m._db_latency.total)
        yield GaugeMetricFamily("shepherd_db_calls_in_flight",
                                "Database calls running on DB threads.", value=in_flight)
        db = HistogramMetricFamily("shepherd_db_call_duration_seconds", "Time of one database "
                                   "call (queries and the work around them).")
        db.add_metric([], db_buckets, db_total)
        yield db


class _StreamCollector:
    def __init__(self, count_by_role: Callable[[], dict[str, int]], streams: Callable[[], int]) -> None:
        self.count_by_role = count_by_role
        self.streams = streams

    def collect(self):
        connected = GaugeMetricFamily("shepherd_agents_connected",
                                      "Agents holding a stream to this manager, by role.",
                                      labels=["role"])
        for role, count in sorted(self.count_by_role().items()):
            connected.add_metric([role], count)
        yield connected
        yield GaugeMetricFamily("shepherd_grpc_streams", "Open agent streams on this manager.",
                                value=self.streams())
