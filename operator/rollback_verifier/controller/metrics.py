"""Prometheus metrics of api.md. Labels are bounded: application, phase, reason, detected_by only."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rollback_verifier.api.models import DetectedBy, Phase

# What the detector reports; Manual and PostSyncHook verifications are created by others.
DETECTION_KINDS = (DetectedBy.ARGOCD_HISTORY, DetectedBy.REVISION_ANCESTRY, DetectedBy.CONTENT_REVERT)
VERDICT_PHASES = (Phase.SUCCEEDED.value, Phase.FAILED.value)

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
        self.objects = VerificationObjects()
        r.register(self.objects)
        self.verdict_latency = Histogram(
            "rollback_verification_verdict_latency_seconds",
            "Time from the last observed rollout/pod change that decided a verdict to the status write.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def preset_detections(self, applications: Iterable[str]) -> None:
        """Detection counters of the watched applications exist from the start, at 0: a dashboard or
        an increase() then sees the first detection as 0 -> 1 instead of a series appearing at 1."""
        for application in applications:
            for kind in DETECTION_KINDS:
                self.detected.labels(application, kind.value)

    def preset_durations(self, applications: Iterable[str]) -> None:
        """The duration histograms of the known applications ("" for manual verifications) exist from
        the start, empty, for both verdicts: a dashboard's increase() then counts the first verdict
        instead of seeing a series that appears with it already counted."""
        for application in applications:
            for phase in VERDICT_PHASES:
                self.duration.labels(application, phase)

    def record_verdict(
        self, application: str, phase: str, reason: str, duration_seconds: float, completed_at: float
    ) -> None:
        self.completed.labels(application, phase, reason).inc()
        self.duration.labels(application, phase).observe(max(duration_seconds, 0.0))
        self.last_completed.labels(application, phase).set(completed_at)


ObjectKey = tuple[str, str, str]  # application, phase, reason


def object_labels(body: Mapping[str, Any]) -> ObjectKey:
    """The gauge's labels of one RollbackVerification, read from the object alone. An object without a
    status (the operator has not picked it up yet) counts as Pending, as its phase would say."""
    spec, status = _mapping(body.get("spec")), _mapping(body.get("status"))
    application = _mapping(spec.get("application"))
    return (
        str(application.get("name") or ""),
        str(status.get("phase") or "Pending"),
        str(status.get("reason") or ""),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class VerificationObjects(Collector):
    """`rollback_verification_objects`: the RollbackVerifications that exist now, by their status.

    A level, computed from the objects the watch delivers (a restarted operator lists them all again),
    not from what this process did: unlike the counters it reads the same after a restart, so alerts
    built on it see verdicts written while the operator or Prometheus was away. A label set whose last
    object is deleted stays, at 0, rather than vanishing (a vanished series has no value to compare).
    """

    def __init__(self) -> None:
        self._by_uid: dict[str, ObjectKey] = {}
        self._seen: set[ObjectKey] = set()

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a RollbackVerification (type None: from the initial listing)."""
        uid = str((body.get("metadata") or {}).get("uid") or "")
        if not uid:
            return
        if event_type == "DELETED":
            self._by_uid.pop(uid, None)
            return
        key = object_labels(body)
        self._by_uid[uid] = key
        self._seen.add(key)

    def counts(self) -> dict[ObjectKey, int]:
        tally = Tally(self._by_uid.values())
        return {key: tally.get(key, 0) for key in sorted(self._seen)}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "rollback_verification_objects",
            "RollbackVerification objects that exist now, by status phase and reason (level: survives restarts).",
            labels=["application", "phase", "reason"],
        )
        for key, count in self.counts().items():
            family.add_metric(list(key), count)
        yield family
