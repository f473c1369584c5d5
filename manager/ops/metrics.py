"""Prometheus metrics of one manager, in a registry of its own.

Names and labels follow Prometheus's conventions (``_total`` counters, ``_seconds`` units);
no label takes an unbounded value: routes are templates, action names outside the known
pattern count as ``other``, and no host name or id ever becomes a label.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

_ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}\.[a-z][a-z0-9_]{0,30}\Z")
_MAX_ACTION_NAMES = 200
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ACTION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "shepherd_http_requests_total", "HTTP requests answered.",
            ["family", "route", "method", "status"], registry=r)
        self.http_latency = Histogram(
            "shepherd_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["family", "route", "method"], buckets=LATENCY_BUCKETS, registry=r)
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
        self.db_in_flight = Gauge(
            "shepherd_db_calls_in_flight", "Database calls running on DB threads.", registry=r)
        self.db_latency = Histogram(
            "shepherd_db_call_duration_seconds", "Time of one database call (queries and "
            "the work around them).", buckets=LATENCY_BUCKETS, registry=r)
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
        self._http_children: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}

    def request_answered(self, family: str, route: str, method: str, status: int,
                         seconds: float) -> None:
        """Count and time one answered request (on the event loop).

        The labelled children are kept: ``labels()`` validates and looks them up under a
        lock on every call, which costs more than the increment. Labels are bounded (route
        templates, methods, statuses), so the cache is too."""
        key = (family, route, method, status)
        children = self._http_children.get(key)
        if children is None:
            children = (self.http_requests.labels(family, route, method, str(status)),
                        self.http_latency.labels(family, route, method))
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

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
