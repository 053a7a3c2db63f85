"""rollback_verification_objects: a level computed from the objects, as a scrape reads it."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rollback_verifier.controller.metrics import Metrics, object_labels


def rbv(uid: str, app: str | None = "agents", phase: str | None = None, reason: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"uid": uid, "name": f"v-{uid}", "namespace": "agents"}, "spec": {}}
    if app is not None:
        body["spec"]["application"] = {"name": app, "namespace": "argocd"}
    if phase is not None:
        body["status"] = {"phase": phase, **({"reason": reason} if reason else {})}
    return body


def scrape(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    text = generate_latest(metrics.registry).decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "rollback_verification_objects"]
    assert family.type == "gauge"
    return {(s.labels["application"], s.labels["phase"], s.labels["reason"]): s.value for s in family.samples}


def test_counts_objects_by_application_phase_and_reason():
    m = Metrics()
    m.objects.observe(None, rbv("1", phase="Failed", reason="ImageMismatch"))
    m.objects.observe(None, rbv("2", phase="Failed", reason="ImageMismatch"))
    m.objects.observe(None, rbv("3", phase="Succeeded", reason="Verified"))
    m.objects.observe("ADDED", rbv("4", app=None))
    assert scrape(m) == {
        ("agents", "Failed", "ImageMismatch"): 2,
        ("agents", "Succeeded", "Verified"): 1,
        ("", "Pending", ""): 1,
    }


def test_an_object_moves_between_label_sets_and_the_old_one_reads_zero():
    m = Metrics()
    m.objects.observe("ADDED", rbv("1"))
    m.objects.observe("MODIFIED", rbv("1", phase="Running"))
    m.objects.observe("MODIFIED", rbv("1", phase="Failed", reason="RolloutTimeout"))
    assert scrape(m) == {
        ("agents", "Pending", ""): 0,
        ("agents", "Running", ""): 0,
        ("agents", "Failed", "RolloutTimeout"): 1,
    }


def test_a_deleted_object_is_no_longer_counted_and_repeated_events_count_once():
    m = Metrics()
    for _ in range(3):
        m.objects.observe("MODIFIED", rbv("1", phase="Failed", reason="DigestMismatch"))
    m.objects.observe("MODIFIED", rbv("2", phase="Failed", reason="DigestMismatch"))
    assert scrape(m)[("agents", "Failed", "DigestMismatch")] == 2
    m.objects.observe("DELETED", rbv("1", phase="Failed", reason="DigestMismatch"))
    m.objects.observe("DELETED", rbv("1", phase="Failed", reason="DigestMismatch"))
    assert scrape(m) == {("agents", "Failed", "DigestMismatch"): 1}


def test_a_restarted_operator_reads_the_same_level_from_the_initial_listing():
    """The point of the gauge: the counters start again at zero, the objects do not."""
    objects = [rbv("1", phase="Failed", reason="ImageMismatch"), rbv("2", phase="Succeeded", reason="Verified")]
    before, after = Metrics(), Metrics()
    for body in objects:
        before.objects.observe("MODIFIED", body)
        before.record_verdict("agents", body["status"]["phase"], body["status"]["reason"], 10.0, 1.0)
    for body in objects:
        after.objects.observe(None, body)  # kopf's initial listing
    assert scrape(after) == scrape(before)
    labels = {"application": "agents", "phase": "Failed", "reason": "ImageMismatch"}
    assert before.registry.get_sample_value("rollback_verification_completed_total", labels) == 1
    assert after.registry.get_sample_value("rollback_verification_completed_total", labels) is None


def test_malformed_objects_never_break_a_scrape():
    m = Metrics()
    m.objects.observe(None, {"metadata": {"uid": "1"}, "spec": "nonsense", "status": ["x"]})
    m.objects.observe(None, {"metadata": {}})  # no uid: nothing to key it by
    m.objects.observe(None, {"metadata": {"uid": "2"}, "spec": {"application": "agents"}})
    assert scrape(m) == {("", "Pending", ""): 2}
    assert object_labels({}) == ("", "Pending", "")


def test_detection_counters_of_watched_applications_start_at_zero():
    m = Metrics()
    m.preset_detections(["agents", "web"])
    text = generate_latest(m.registry).decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "rollback_verification_detected"]
    samples = {
        (s.labels["application"], s.labels["detected_by"]): s.value for s in family.samples if s.name.endswith("_total")
    }
    kinds = {"ArgoCDHistory", "RevisionAncestry", "ContentRevert"}
    assert samples == {(app, kind): 0 for app in ("agents", "web") for kind in kinds}


def test_duration_histograms_of_known_applications_exist_empty_before_any_verdict():
    metrics = Metrics()
    metrics.preset_durations(["", "agents"])
    text = generate_latest(metrics.registry).decode()
    for application in ("", "agents"):
        for phase in ("Succeeded", "Failed"):
            line = f'rollback_verification_duration_seconds_count{{application="{application}",phase="{phase}"}} 0.0'
            assert line in text
    metrics.record_verdict("agents", "Failed", "ImageMismatch", 3.0, 1.0)
    assert 'rollback_verification_duration_seconds_count{application="agents",phase="Failed"} 1.0' in (
        generate_latest(metrics.registry).decode()
    )
