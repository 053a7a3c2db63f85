"""The pure parts of the shell: parsing helm's output, reading chart files, the table and the JSON."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from rollback_verifier.lint_chart import render, report
from rollback_verifier.lint_chart.model import Finding, InputError, Risk

RENDERED = """\
---
# Source: app/templates/svc.yaml
apiVersion: v1
kind: Service
metadata:
  name: web
---
# Source: app/templates/list.yaml
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: a, namespace: other}
  - apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRole
    metadata: {name: reader}
---
# Source: app/templates/empty.yaml
---
"""


def test_split_rendered_keeps_sources() -> None:
    docs = render.split_rendered(RENDERED)
    assert [source for source, _ in docs] == [
        "app/templates/svc.yaml",
        "app/templates/list.yaml",
        "app/templates/empty.yaml",
    ]


def test_parse_rendered_resources_namespaces_and_lists() -> None:
    resources = render.parse_rendered(RENDERED, release_namespace="prod", chart=Path("app"))
    shown = sorted((r.display(), r.source) for r in resources)
    assert shown == [
        ("ClusterRole reader", "app/templates/list.yaml"),
        ("ConfigMap other/a", "app/templates/list.yaml"),
        ("Service prod/web", "app/templates/svc.yaml"),
    ]


def test_parse_rendered_invalid_yaml_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"invalid YAML for app \(app/templates/x.yaml\)"):
        render.parse_rendered("# Source: app/templates/x.yaml\na: [\n", release_namespace="d", chart=Path("app"))


def test_one_line_helm_error() -> None:
    stderr = "walk.go:75: found symbolic link\nError: execution error at (x/templates/a.yaml:1:4):\n  boom\n"
    assert render._one_line(stderr) == "Error: execution error at (x/templates/a.yaml:1:4):"
    assert render._one_line("only a warning\nlast words\n") == "last words"


def test_merge_values_like_helm() -> None:
    merged = render.merge_values({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": 9}, "d": [2]})
    assert merged == {"a": {"b": 9, "c": 2}, "d": [2]}


def _chart(tmp_path: Path) -> Path:
    chart = tmp_path / "app"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("replicas: 1\n")
    (chart / "templates" / "cm.yaml").write_text("kind: ConfigMap\n")
    return chart


def test_read_crds_from_the_crds_folder(tmp_path: Path) -> None:
    chart = _chart(tmp_path)
    (chart / "crds" / "sub").mkdir(parents=True)
    (chart / "crds" / "sub" / "w.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: w.example.com}\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-a-crd}\n"
    )
    crds = render.read_crds(chart)
    assert [(c.name, c.location, c.path) for c in crds] == [("w.example.com", "crds", "crds/sub/w.yaml")]
    assert render.chart_defaults(chart) == {"replicas": 1}


def test_chart_folder_rejects_non_charts(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a helm chart"), render.chart_folder(tmp_path):
        pass
    with pytest.raises(InputError, match="does not exist"), render.chart_folder(tmp_path / "nope"):
        pass


def test_chart_folder_unpacks_a_tgz(tmp_path: Path) -> None:
    chart = _chart(tmp_path)
    archive = tmp_path / "app-0.1.0.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(chart, arcname="app")
    with render.chart_folder(archive) as folder:
        assert (folder / "templates" / "cm.yaml").read_text() == "kind: ConfigMap\n"


def test_values_files_must_exist_and_be_maps(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"values file .*missing\.yaml does not exist"):
        render.check_values_files([tmp_path / "missing.yaml"])
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n")
    with pytest.raises(InputError, match="not a map of values"):
        render.user_values([bad])


FINDINGS = [
    Finding("selector-changed", Risk.HIGH, "Deployment default/web", "spec.selector changed", "keep it", 1, 2),
    Finding("default-value-changed", Risk.INFO, "values replicas", "default changed 1 -> 2", "document it", 1, 2),
]


def test_table_is_aligned_with_mitigations_and_summary() -> None:
    text = report.table(FINDINGS, Risk.HIGH, old="old", new="new")
    lines = text.splitlines()
    assert lines[0] == "lint-chart: old -> new"
    header = lines[2]
    assert header.split() == ["RISK", "RULE", "RESOURCE", "MESSAGE"]
    message_column = header.index("MESSAGE")
    assert lines[3].index("spec.selector changed") == message_column
    assert lines[4].index("mitigation: keep it") == message_column
    assert lines[5].index("default changed") == message_column
    assert lines[-1] == "2 findings (1 high, 1 info); 1 at or above high: FAIL (exit 1)"


def test_table_wraps_messages_and_mitigations_to_the_terminal_width() -> None:
    long = Finding(
        "resource-renamed",
        Risk.HIGH,
        "Deployment default/web",
        "renamed from web to webs: " + "it breaks " * 40,
        "Avoid renames; " + "ship both names " * 20,
        1,
        2,
    )
    text = report.table([long], Risk.HIGH, old="old", new="new", width=100)
    lines = text.splitlines()
    message_column = lines[2].index("MESSAGE")
    body = lines[3:-2]
    assert len(body) > 4 and all(len(line) <= 100 for line in body), body
    assert all(line[:message_column].strip() == "" for line in body[1:])  # continuations stay in the column
    assert " ".join(" ".join(line[message_column:] for line in body).split()).startswith("renamed from web to webs")
    assert any(line[message_column:].startswith("mitigation: Avoid renames") for line in body)
    unwrapped = report.table([long], Risk.HIGH, old="old", new="new").splitlines()
    assert len(unwrapped[3]) > 400  # no width (not a terminal): one line per message, as before


def test_table_without_findings() -> None:
    text = report.table([], Risk.HIGH, old="a", new="b")
    assert "No changes that matter for a rollback." in text
    assert text.splitlines()[-1] == "0 findings; none at or above high: OK (exit 0)"


def test_json_document() -> None:
    document = json.loads(report.as_json(FINDINGS, Risk.VERY_HIGH, old={"chart": "a"}, new={"chart": "b"}))
    assert document["findings"][0] == {
        "rule": "selector-changed",
        "risk": "high",
        "resource": "Deployment default/web",
        "message": "spec.selector changed",
        "mitigation": "keep it",
        "old": 1,
        "new": 2,
    }
    assert document["summary"] == {
        "total": 2,
        "by_risk": {"very-high": 0, "high": 1, "medium": 0, "low": 0, "info": 1},
        "fail_on": "very-high",
        "failing": 0,
        "exit_code": 0,
    }
