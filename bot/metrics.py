"""Prometheus metrics of one running app, on a registry of its own (no process-global registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "jianbao_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "jianbao_http_request_seconds", "HTTP request latency by route", ["route"], registry=self.registry
        )
        self.searches = Counter(
            "jianbao_searches", "Keyword searches by channel", ["channel"], registry=self.registry
        )
        self.clicks = Counter(
            "jianbao_link_clicks", "Tracked link clicks by channel", ["channel"], registry=self.registry
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
