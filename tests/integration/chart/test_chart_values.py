"""deploy/chart values: lint, the schema's and the templates' refusals, and their documentation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "chart"

SCHEMA_ERROR = "values don't meet the specifications of the schema"


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_helm_lint(run, strict):
    proc = run("lint", str(CHART), *(["--strict"] if strict else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


def test_helm_lint_with_every_flag_on(run):
    values = {
        "rbac": {"clusterScoped": True},
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "dashboardURL": "https://grafana.example/d/rollback-verifier"},
            "grafanaDashboard": {"enabled": True, "folder": "GitOps"},
        },
        "networkPolicy": {"enabled": True},
        "gitCredentials": {"secretNames": ["gitops-repo"]},
        "image": {"digest": "sha256:" + "0" * 64},
    }
    proc = run("lint", "--strict", str(CHART), values=values)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "rollback-verifier"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == "0.1.0"
    assert "dependencies" not in chart


def test_the_chart_ships_the_generated_crd():
    crds = sorted(p.name for p in (CHART / "crds").iterdir())
    assert crds == ["rollbackverifications.gitops.proompteng.ai.yaml"]
    crd = yaml.safe_load((CHART / "crds" / crds[0]).read_text())
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["spec"]["group"] == "gitops.proompteng.ai"
    assert crd["spec"]["names"]["kind"] == "RollbackVerification"


# ---------------------------------------------------------------- schema refusals


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        ({"rbac": {"clusterScoped": "yes"}}, ["/rbac/clusterScoped", "boolean"]),
        ({"replicaCount": 2}, ["replicaCount"]),
        ({"metrics": {"servicemonitor": {"enabled": True}}}, ["/metrics", "servicemonitor"]),
        (
            {
                "detection": {
                    "applications": [
                        {
                            "name": "a",
                            "verificationNamespace": "agents",
                            "timeoutSeconds": -5,
                            "targets": [{"name": "a", "image": "x"}],
                        }
                    ]
                }
            },
            ["/detection/applications/0/timeoutSeconds", "minimum"],
        ),
        (
            {
                "detection": {
                    "applications": [
                        {
                            "name": "a",
                            "verificationNamespace": "agents",
                            "timeoutSeconds": 600,
                            "targets": [{"name": "a", "imageValues": ["image"], "typo": 1}],
                        }
                    ]
                }
            },
            ["/detection/applications/0/targets/0", "typo"],
        ),
        (
            {
                "detection": {
                    "applications": [{"name": "a", "verificationNamespace": "agents", "targets": [{"name": "a"}]}]
                }
            },
            ["/detection/applications/0/targets/0"],
        ),
        ({"detection": {"applications": [{"name": "a"}]}}, ["/detection/applications/0", "verificationNamespace"]),
        ({"image": {"digest": "sha256:abc"}}, ["/image/digest"]),
        ({"controller": {"namespaces": []}}, ["/controller/namespaces"]),
        ({"controller": {"namespaces": ["Agents"]}}, ["/controller/namespaces/0"]),
        ({"logLevel": "verbose"}, ["/logLevel"]),
        ({"gitCredentials": {"secretNames": "gitops-repo"}}, ["/gitCredentials/secretNames", "array"]),
        ({"trust": {"allowLocalRepositories": "yes"}}, ["/trust/allowLocalRepositories", "boolean"]),
        ({"trust": {"targetNamespaces": {"agents": "team-b"}}}, ["/trust/targetNamespaces/agents", "array"]),
        ({"metrics": {"address": "all"}}, ["/metrics/address"]),
        ({"networkPolicy": {"egress": {"gitHosts": [{"too": []}]}}}, ["/networkPolicy/egress/gitHosts/0", "too"]),
    ],
    ids=[
        "clusterScoped-string",
        "unknown-top-level",
        "nested-typo",
        "negative-timeout",
        "target-typo",
        "target-without-image",
        "app-without-namespace",
        "bad-digest",
        "no-namespaces",
        "bad-namespace",
        "bad-log-level",
        "secretNames-string",
        "allowLocalRepositories-string",
        "targetNamespaces-not-a-list",
        "metrics-address-not-an-ip",
        "egress-rule-typo",
    ],
)
def test_schema_rejects_bad_values_with_a_clear_message(render_error, values, fragments):
    err = render_error(values)
    assert SCHEMA_ERROR in err, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in helm's message:\n{err}"


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        (
            {
                "detection": {
                    "applications": [
                        {"name": "web", "verificationNamespace": "web", "targets": [{"name": "web", "image": "x"}]}
                    ]
                }
            },
            ['verificationNamespace "web" is not in controller.namespaces', "rbac.clusterScoped=true"],
        ),
        (
            {
                "detection": {
                    "applications": [
                        {
                            "name": "web",
                            "verificationNamespace": "agents",
                            "targets": [{"name": "web", "namespace": "web", "image": "x"}],
                        }
                    ]
                }
            },
            ['target web namespace "web" is not in controller.namespaces'],
        ),
        (
            {
                "detection": {
                    "applications": [
                        {
                            "name": "web",
                            "namespace": "elsewhere",
                            "verificationNamespace": "agents",
                            "targets": [{"name": "web", "image": "x"}],
                        }
                    ]
                }
            },
            ['namespace "elsewhere" must equal argocd.namespace "argocd"'],
        ),
        (
            {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
            ["metrics.serviceMonitor.enabled needs metrics.enabled=true"],
        ),
        (
            {"serviceAccount": {"create": False}},
            ["serviceAccount.name is required when serviceAccount.create is false"],
        ),
        (
            {"trust": {"targetNamespaces": {"agents": ["team-b"]}}},
            ['trust.targetNamespaces.agents: namespace "team-b" is not in controller.namespaces'],
        ),
        (
            {"networkPolicy": {"enabled": True, "egress": {"enabled": True}}},
            ["networkPolicy.egress.apiServer.to must list the API server's endpoint addresses"],
        ),
    ],
    ids=[
        "verification-namespace-not-watched",
        "target-namespace-not-watched",
        "app-outside-argocd-namespace",
        "servicemonitor-without-service",
        "no-service-account-name",
        "mapped-namespace-not-watched",
        "egress-without-api-server",
    ],
)
def test_templates_refuse_values_the_rbac_could_not_serve(render_error, values, fragments):
    err = render_error(values)
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in helm's message:\n{err}"


def test_schema_accepts_the_documented_shapes(render):
    render({"image": {"digest": "sha256:" + "a" * 64, "tag": ""}})
    render({"global": {"imageRegistry": "x"}})
    render({"metrics": {"serviceMonitor": {"enabled": True, "interval": "1m", "scrapeTimeout": "10s"}}})
    render({"resources": {}})


# ---------------------------------------------------------------- documentation


def leaf_keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of values.yaml down to the documented level: free-form maps/lists are leaves."""
    free_form = {
        "resources",
        "podSecurityContext",
        "securityContext",
        "podAnnotations",
        "nodeSelector",
        "affinity",
        "annotations",
        "labels",
    }
    out = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in free_form:
            out |= leaf_keys(value, f"{path}.")
        else:
            out.add(path)
    return out


def test_schema_and_values_have_the_same_keys():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], vals: dict[str, Any], path: str) -> None:
        props = node.get("properties")
        if props is None or node.get("additionalProperties") is not False:
            return
        assert set(vals) <= set(props), f"{path}: values.yaml keys not in the schema: {set(vals) - set(props)}"
        missing = set(props) - set(vals) - {"global"}
        assert not missing, f"{path}: schema keys without a default in values.yaml: {missing}"
        for key, sub in props.items():
            if isinstance(vals.get(key), dict) and key != "resources":  # a Kubernetes type, not ours
                walk(sub, vals[key], f"{path}.{key}")

    walk(schema, values, "(top)")


def test_every_value_is_in_the_readme_table():
    readme = (CHART / "README.md").read_text()
    assert "## Rollback: what is safe to revert" in readme
    values_section = readme.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    table = {m.group(1) for m in re.finditer(r"^\| `([A-Za-z0-9_.\[\]]+)` \|", values_section, re.MULTILINE)}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = leaf_keys(values) - table
    assert not missing, f"values not documented in deploy/chart/README.md: {sorted(missing)}"
    unknown = {k for k in table if not k.startswith("detection.applications[]")} - leaf_keys(values)
    assert not unknown, f"README documents values that do not exist: {sorted(unknown)}"


def test_dockerfile_matches_the_chart():
    """The image's user, entrypoint and writable paths are what the chart's pod expects, read from the
    Dockerfile (tests/image builds the image and checks its config, and runs it under the chart's pod spec)."""
    dockerfile = (REPO / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["securityContext"]["runAsUser"]
    gid = values["securityContext"]["runAsGroup"]
    assert uid == values["podSecurityContext"]["runAsUser"] != 0
    assert re.search(rf"^USER {uid}:{gid}$", dockerfile, re.MULTILINE)
    assert f"--uid {uid}" in dockerfile
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["rollback-verifier"]' in dockerfile
    assert 'CMD ["run"]' in dockerfile
    assert "HOME=/tmp" in dockerfile
    assert "git openssh-client" in dockerfile
    assert "pip install --no-deps ." in dockerfile
