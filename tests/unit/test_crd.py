"""The CRD is generated from the API models; the committed copies must not drift from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rollback_verifier.api.crd import CRD_FILE_NAME, build_crd, render_crd

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = [ROOT / "deploy" / "crds" / CRD_FILE_NAME, ROOT / "deploy" / "chart" / "crds" / CRD_FILE_NAME]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_crd_matches_the_models(path: Path) -> None:
    assert path.exists(), f"{path} is missing: run `make crds`"
    assert path.read_text() == render_crd(), f"{path} drifted from api.py: run `make crds` and commit"


def _schema() -> dict:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: dict, path: str = "") -> list[tuple[str, dict]]:
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out += _walk(sub, f"{path}.{name}")
    if "items" in node:
        out += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_structural() -> None:
    # Structural schemas: every node has a type; no $ref, anyOf/oneOf or nullable left from JSON Schema.
    for path, node in _walk(_schema()):
        assert "type" in node, path
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "nullable"} & node.keys(), path


def test_names_and_printer_columns_follow_the_contract() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["kind"], names["plural"]) == (
        "gitops.proompteng.ai",
        "RollbackVerification",
        "rollbackverifications",
    )
    assert names["shortNames"] == ["rbv"] and names["categories"] == ["gitops"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Application", "Revision", "Phase", "Reason", "Duration", "Age"]


def test_spec_is_immutable_and_defaults_are_set() -> None:
    spec = _schema()["properties"]["spec"]
    assert {
        "rule": "self == oldSelf",
        "message": "spec is immutable: create a new RollbackVerification",
    } in spec["x-kubernetes-validations"]
    props = spec["properties"]
    assert props["timeoutSeconds"]["default"] == 600
    assert props["digestPolicy"]["default"] == "Auto"
    assert props["digestPolicy"]["enum"] == ["Auto", "Strict", "Spec"]
    assert props["requireApplicationHealthy"]["default"] is True
    assert props["failOnOrphans"]["default"] is False
    assert props["application"]["properties"]["namespace"]["default"] == "argocd"


def test_status_conditions_are_a_map_keyed_by_type() -> None:
    conditions = _schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    status_props = _schema()["properties"]["status"]["properties"]
    assert "default" not in str(status_props), "status must carry no defaults"


def test_rendered_yaml_round_trips() -> None:
    assert yaml.safe_load(render_crd()) == build_crd()
