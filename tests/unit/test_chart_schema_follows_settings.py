"""The chart's values.schema.json and the operator's settings models name the same fields: a setting
added to (or removed from) api/settings.py without the chart's schema fails here."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from rollback_verifier.api.settings import Destinations, Detection, Settings, Trust

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "deploy/chart/values.schema.json").read_text())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return SCHEMA["definitions"][ref.rsplit("/", 1)[-1]] if ref else node


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model an annotation holds (through Annotated, Optional and list) and whether in a list."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model, listed = _model_in(arg)
            if model is not None:
                return model, listed
        return None, False
    if origin is list:
        model, _ = _model_in(typing.get_args(annotation)[0])
        return model, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _differences(model: type[BaseModel], node: dict[str, Any], path: str) -> list[str]:
    node = _resolve(node)
    properties = node.get("properties", {})
    found = [f"{path}: in the settings, not the schema: {sorted(set(model.model_fields) - set(properties))}"]
    found += [f"{path}: in the schema, not the settings: {sorted(set(properties) - set(model.model_fields))}"]
    found = [f for f in found if not f.endswith("[]")]
    for name, field in model.model_fields.items():
        inner, listed = _model_in(field.annotation)
        if inner is None or name not in properties:
            continue
        child = _resolve(properties[name])
        found += _differences(inner, child["items"] if listed else child, f"{path}.{name}")
    return found


@pytest.mark.parametrize("model, key", [(Detection, "detection"), (Trust, "trust"), (Destinations, "destinations")])
def test_each_settings_section_has_the_same_fields_in_the_charts_schema(model: type[BaseModel], key: str) -> None:
    assert _differences(model, SCHEMA["properties"][key], key) == []


def test_the_settings_sections_are_the_ones_the_chart_maps() -> None:
    # argocdNamespace is the chart's argocd.namespace; the rest keep their names.
    assert set(Settings.model_fields) == {"argocdNamespace", "detection", "trust", "destinations"}
    assert "namespace" in SCHEMA["properties"]["argocd"]["properties"]
