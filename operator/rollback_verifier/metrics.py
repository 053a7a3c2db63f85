"""Prometheus metrics of api.md. Labels are bounded: application, phase, reason, detected_by only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Verifications take seconds to many minutes; verdict latency is sub-second by design.
DURATION_BUCKETS = (5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.detected = Counter(
            "rollback_verification_detected",
            "Rollbacks detected (a RollbackVerification was created for them).",
            ["application", "detected_by"],
            registry=r,
        )
        self.completed = Counter(
            "rollback_verification_completed",
            "Verifications that reached a verdict.",
            ["application", "phase", "reason"],
            registry=r,
        )
        self.duration = Histogram(
            "rollback_verification_duration_seconds",
            "Time from the start of a verification to its verdict.",
            ["application", "phase"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.in_progress = Gauge(
            "rollback_verification_in_progress",
            "Verifications being worked on by this operator.",
            ["application"],
            registry=r,
        )
        self.last_completed = Gauge(
            "rollback_verification_last_completed_timestamp_seconds",
            "Unix time of the last verdict.",
            ["application", "phase"],
            registry=r,
        )
        self.verdict_latency = Histogram(
            "rollback_verification_verdict_latency_seconds",
            "Time from the last observed rollout/pod change that decided a verdict to the status write.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def record_verdict(
        self, application: str, phase: str, reason: str, duration_seconds: float, completed_at: float
    ) -> None:
        self.completed.labels(application, phase, reason).inc()
        self.duration.labels(application, phase).observe(max(duration_seconds, 0.0))
        self.last_completed.labels(application, phase).set(completed_at)
