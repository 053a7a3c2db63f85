"""kubectl's rollout rule and the plain views, on plain data."""

from __future__ import annotations

import pytest

from rollback_verifier.core.rollout import (
    LabelSelector,
    deployment_view,
    evaluate_rollout,
    pod_view,
    pods_of,
    selector_from,
)
from tests.unit.factories import IMAGE_A, deployment, pod


def state(**kwargs):
    return evaluate_rollout(deployment_view(deployment(**kwargs)))


def test_a_finished_rollout_is_complete() -> None:
    s = state()
    assert (s.complete, s.failed, s.message) == (True, False, "successfully rolled out")


def test_an_unobserved_spec_change_is_not_complete_even_if_counts_look_done() -> None:
    s = state(generation=3, observed=2)
    assert not s.complete and not s.failed
    assert "observed" in s.message


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"updated": 1}, "1 of 2 new replicas have been updated"),
        ({"total": 3}, "1 old replicas are pending termination"),  # surge: an old pod still counted
        ({"available": 1}, "1 of 2 updated replicas are available"),
    ],
)
def test_each_of_kubectls_waiting_states(counts: dict, message: str) -> None:
    s = state(**counts)
    assert not s.complete and not s.failed
    assert s.message == message


def test_progress_deadline_exceeded_fails_at_once() -> None:
    s = state(progressing_reason="ProgressDeadlineExceeded", updated=1, available=0)
    assert s.failed and not s.complete
    assert "progress deadline" in s.message


def test_progress_deadline_is_ignored_until_the_new_generation_is_observed() -> None:
    # kubectl checks the condition only once the controller has seen the spec it belongs to.
    s = state(progressing_reason="ProgressDeadlineExceeded", generation=4, observed=3)
    assert not s.failed


def test_a_paused_deployment_says_so_while_it_waits() -> None:
    s = state(paused=True, updated=0, total=2, available=2)
    assert not s.complete
    assert "paused" in s.message


def test_zero_replicas_is_a_complete_rollout() -> None:
    s = state(replicas=0, updated=0, total=0, available=0)
    assert s.complete


def test_missing_replicas_defaults_to_one_as_the_api_does() -> None:
    assert deployment_view(deployment(replicas=None)).spec_replicas == 1
    assert not state(replicas=None, updated=0, total=0, available=0).complete


def test_views_survive_empty_and_odd_objects() -> None:
    d = deployment_view({})
    assert (d.name, d.spec_replicas, d.template_images) == ("", 1, {})
    p = pod_view({"metadata": {"labels": None}, "status": {"conditions": [None, "x"]}})
    assert not p.ready and p.containers == ()
    assert deployment_view({"status": {"replicas": True}}).replicas == 0  # a bool is not a count


def test_pods_of_selects_by_selector_and_drops_terminating_pods() -> None:
    d = deployment_view(deployment())
    pods = [
        pod_view(pod("agents-1")),
        pod_view(pod("agents-old", terminating=True)),
        pod_view(pod("controllers-1", app="agents-controllers")),
        pod_view(pod("elsewhere", namespace="other")),
    ]
    assert [p.name for p in pods_of(d, pods)] == ["agents-1"]


def test_init_containers_are_in_the_views() -> None:
    p = pod_view(pod("p", init_images={"migrate": IMAGE_A}))
    assert p.container("migrate") is not None and p.container("migrate").image == IMAGE_A
    d = deployment_view(deployment(init_images={"migrate": IMAGE_A}))
    assert d.template_init_images == {"migrate": IMAGE_A}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]}]}, {"t": "y"}, True),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["x"]}]}, {}, False),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["x"]}]}, {"t": "z"}, True),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["x"]}]}, {"t": "x"}, False),
        ({"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {"t": ""}, True),
        ({"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}, {"t": ""}, False),
        ({"matchExpressions": [{"key": "t", "operator": "Bogus"}]}, {"t": ""}, False),
        ({}, {"a": "1"}, False),
    ],
)
def test_label_selectors(selector: dict, labels: dict, expected: bool) -> None:
    assert selector_from(selector).matches(labels) is expected


def test_empty_selector_selects_nothing() -> None:
    assert not LabelSelector().matches({"anything": "x"})


@pytest.mark.parametrize(
    ("selector", "query"),
    [
        ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "t", "operator": "In", "values": ["y", "x"]},
                    {"key": "u", "operator": "NotIn", "values": ["z"]},
                    {"key": "v", "operator": "Exists"},
                    {"key": "w", "operator": "DoesNotExist"},
                ],
            },
            "app=web,t in (x,y),u notin (z),v,!w",
        ),
        ({"matchExpressions": [{"key": "t", "operator": "Bogus"}]}, None),
        ({}, None),
    ],
)
def test_a_selector_becomes_the_api_servers_label_selector(selector: dict, query: str | None) -> None:
    """The pod cache of a target is listed with this query: the API server must select what `matches` does."""
    assert selector_from(selector).query() == query
