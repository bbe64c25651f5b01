"""The Prometheus metrics of one server app (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    """Requests by route and status, queue depth, running rows, batch sizes, latencies and tokens.

    Attributes:
        registry: The registry `render` exports.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "c2c_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=r
        )
        self.queue_depth = Gauge("c2c_queue_depth", "Requests waiting for a batch", registry=r)
        self.active_rows = Gauge("c2c_active_rows", "Requests generating in the running batch", registry=r)
        self.batch_size = Histogram(
            "c2c_batch_size", "Requests per batch run through the model", buckets=BATCH_BUCKETS, registry=r
        )
        self.latency = Histogram("c2c_request_latency_seconds", "Time from a chat request's arrival to its last byte, by mode",
                                 ["mode"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.first_token = Histogram("c2c_time_to_first_token_seconds", "Time from a chat request's arrival to its first text, by mode",
                                     ["mode"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.generated_tokens = Counter("c2c_generated_tokens", "Tokens generated, by mode", ["mode"], registry=r)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
