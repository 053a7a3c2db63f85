"""Inline Helm values of an Argo CD history entry's source (values_from_helm_source)."""

from __future__ import annotations

from typing import Any

import pytest

from rollback_verifier.api.models import Target
from rollback_verifier.core.images import resolve_expected_image
from rollback_verifier.values.helm_history import values_from_helm_source
from rollback_verifier.values.source import ValuesUnavailable

DIGEST = "sha256:" + "d" * 64


def _source(**helm: Any) -> dict[str, Any]:
    return {
        "repoURL": "https://git.example/gitops.git",
        "path": "charts/agents",
        "targetRevision": "main",
        "helm": helm,
    }


def test_values_string() -> None:
    source = _source(values="image:\n  repository: app\n  tag: v1\nreplicaCount: 2\n")
    assert values_from_helm_source(source) == {"image": {"repository": "app", "tag": "v1"}, "replicaCount": 2}


def test_values_object() -> None:
    source = _source(valuesObject={"image": {"repository": "app", "tag": "v1"}})
    assert values_from_helm_source(source) == {"image": {"repository": "app", "tag": "v1"}}


def test_values_object_replaces_values_entirely() -> None:
    # Argo CD's repo-server passes valuesObject INSTEAD of values when both are set (ValuesYAML).
    source = _source(
        values="image:\n  repository: from-values\n  tag: v0\nonlyInValues: true\n",
        valuesObject={"image": {"repository": "from-object"}},
    )
    assert values_from_helm_source(source) == {"image": {"repository": "from-object"}}


def test_values_are_not_parsed_when_values_object_wins() -> None:
    source = _source(values="image: [unclosed", valuesObject={"a": 1})
    assert values_from_helm_source(source) == {"a": 1}


def test_the_result_is_a_copy() -> None:
    values_object = {"image": {"repository": "app", "tag": "v1"}}
    result = values_from_helm_source(_source(valuesObject=values_object))
    result["image"]["tag"] = "changed"
    assert values_object["image"]["tag"] == "v1"


@pytest.mark.parametrize(
    "source",
    [
        {},
        {"repoURL": "https://git.example/gitops.git", "path": "charts/agents"},
        {"helm": None},
        {"helm": "values"},
        _source(),
        _source(values=""),
        _source(values=None, valuesObject=None),
        _source(releaseName="agents"),
    ],
)
def test_no_helm_values(source: dict[str, Any]) -> None:
    with pytest.raises(ValuesUnavailable, match="the history entry's source has no helm values"):
        values_from_helm_source(source)


def test_value_files_alone_point_to_git() -> None:
    with pytest.raises(ValuesUnavailable) as caught:
        values_from_helm_source(_source(valueFiles=["values.yaml"]))
    assert "has no helm values" in str(caught.value)
    assert "valuesFrom.git" in str(caught.value)


def test_a_non_mapping_source() -> None:
    with pytest.raises(ValuesUnavailable, match="has no helm values"):
        values_from_helm_source(["helm"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("helm", "message"),
    [
        ({"values": "image: [unclosed\n"}, "source.helm.values is not valid YAML"),
        ({"values": "a: 1\n b: 2\n"}, "(line 2, column"),
        ({"values": "a: 1\n---\nb: 2\n"}, "is not valid YAML"),  # two documents
        ({"values": "- a\n- b\n"}, "source.helm.values is not a YAML mapping (it holds a list)"),
        ({"values": "just text"}, "is not a YAML mapping (it holds a string)"),
        ({"values": "42"}, "(it holds a number)"),
        ({"values": {"a": 1}}, "source.helm.values is a mapping, not a YAML string"),
        ({"valuesObject": ["a"]}, "source.helm.valuesObject is a list, not a mapping"),
        ({"valuesObject": "a: 1"}, "source.helm.valuesObject is a string, not a mapping"),
        ({"values": "a: 1", "parameters": "image.tag=v1"}, "source.helm.parameters is not a list"),
        ({"values": "a: 1", "parameters": [{"value": "v1"}]}, "malformed helm parameter"),
        ({"values": "a: 1", "parameters": ["image.tag=v1"]}, "malformed helm parameter"),
    ],
)
def test_bad_helm_values(helm: dict[str, Any], message: str) -> None:
    with pytest.raises(ValuesUnavailable) as caught:
        values_from_helm_source({"helm": helm})
    assert message in str(caught.value)


def test_comment_only_values_are_empty() -> None:
    assert values_from_helm_source(_source(values="# nothing set yet\n")) == {}


def test_empty_values_object_is_empty_values() -> None:
    assert values_from_helm_source(_source(valuesObject={})) == {}


def test_parameters_beat_values_object_and_values() -> None:
    source = _source(
        valuesObject={"image": {"repository": "app", "tag": "v1", "digest": DIGEST}},
        parameters=[{"name": "image.tag", "value": "v2"}, {"name": "new.nested.key", "value": "x"}],
    )
    assert values_from_helm_source(source) == {
        "image": {"repository": "app", "tag": "v2", "digest": DIGEST},
        "new": {"nested": {"key": "x"}},
    }
    source = _source(values="image:\n  tag: v1\n", parameters=[{"name": "image.tag", "value": "v3"}])
    assert values_from_helm_source(source) == {"image": {"tag": "v3"}}


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ({"name": "x", "value": "true"}, True),
        ({"name": "x", "value": "False"}, False),
        ({"name": "x", "value": "null"}, None),
        ({"name": "x", "value": "0"}, 0),
        ({"name": "x", "value": "42"}, 42),
        ({"name": "x", "value": "-7"}, -7),
        ({"name": "x", "value": "0042"}, "0042"),  # a leading zero keeps it text, as in helm --set
        ({"name": "x", "value": "1.25"}, "1.25"),
        ({"name": "x", "value": "99999999999999999999"}, "99999999999999999999"),  # beyond int64
        ({"name": "x", "value": "5b72ee1e"}, "5b72ee1e"),
        ({"name": "x", "value": "true", "forceString": True}, "true"),
        ({"name": "x", "value": "42", "forceString": True}, "42"),
        ({"name": "x"}, ""),
    ],
)
def test_parameter_types_follow_helm_set(parameter: dict[str, Any], expected: Any) -> None:
    assert values_from_helm_source({"helm": {"parameters": [parameter]}}) == {"x": expected}


def test_parameter_names() -> None:
    source = {
        "helm": {
            "values": "a: scalar\n",
            "parameters": [
                {"name": r"annotations.example\.com/team", "value": "x"},  # an escaped dot stays in the key
                {"name": "a.b", "value": "1"},  # a scalar parent becomes a mapping, as in helm --set
                {"name": "list[0].name", "value": "skipped"},  # list indexes are not supported
            ],
        }
    }
    assert values_from_helm_source(source) == {"annotations": {"example.com/team": "x"}, "a": {"b": 1}}


def test_a_rolled_back_history_entry_gives_the_expected_images() -> None:
    # A history entry as Argo CD writes it (status.history[].source) after `argocd app rollback`.
    entry = {
        "id": 3,
        "revision": "5b72ee1e" + "0" * 32,
        "source": {
            "repoURL": "https://git.example/gitops.git",
            "path": "charts/agents",
            "targetRevision": "main",
            "helm": {
                "releaseName": "agents",
                "valuesObject": {
                    "image": {"repository": "registry.example/lab/jangar", "tag": "5b72ee1e", "digest": DIGEST},
                    "controlPlane": {
                        "image": {"repository": "registry.example/lab/jangar-control-plane", "tag": "5b72ee1e"}
                    },
                },
            },
        },
    }
    values = values_from_helm_source(entry["source"])  # type: ignore[arg-type]
    controllers = resolve_expected_image(
        Target(name="agents-controllers", imageValues=["controllers.image", "image"]), values
    )
    control_plane = resolve_expected_image(Target(name="agents", imageValues=["controlPlane.image"]), values)
    assert str(controllers) == f"registry.example/lab/jangar:5b72ee1e@{DIGEST}"
    assert str(control_plane) == "registry.example/lab/jangar-control-plane:5b72ee1e"
