"""What deploy/chart renders, with the real helm: resources, RBAC, security, image, settings."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "chart"
NS = "rollback-verifier"  # the release namespace the conftest renders into
FULL = "rollback-verifier"  # release "rollback-verifier" + chart "rollback-verifier" -> fullname

Doc = dict[str, Any]
Key = tuple[str, str, str]

CORE: set[Key] = {
    ("ServiceAccount", NS, FULL),
    ("ConfigMap", NS, f"{FULL}-settings"),
    ("Deployment", NS, FULL),
    ("Service", NS, f"{FULL}-metrics"),
    ("Role", "agents", FULL),
    ("RoleBinding", "agents", FULL),
    ("Role", "argocd", f"{FULL}-argocd"),
    ("RoleBinding", "argocd", f"{FULL}-argocd"),
}

NAMESPACED_RULES = {
    ("gitops.proompteng.ai", "rollbackverifications", ("create", "delete", "get", "list", "watch"), ()),
    ("gitops.proompteng.ai", "rollbackverifications/status", ("patch",), ()),
    ("apps", "deployments", ("get", "list", "watch"), ()),
    ("", "pods", ("get", "list", "watch"), ()),
    ("", "events", ("create",), ()),
}
APPLICATION_RULES = {("argoproj.io", "applications", ("get", "list", "watch"), ())}

DIGEST = "sha256:" + "ab" * 32


def index(docs: list[Doc]) -> dict[Key, Doc]:
    out: dict[Key, Doc] = {}
    for d in docs:
        key = (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
        assert key not in out, f"rendered twice: {key}"
        out[key] = d
    return out


def one(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def rules(role: Doc) -> set[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """Flatten a Role's rules to (group, resource, sorted verbs, sorted resourceNames)."""
    out = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                item = (group, resource, tuple(sorted(rule["verbs"])), tuple(sorted(rule.get("resourceNames", []))))
                assert item not in out, f"duplicate rule {item}"
                out.add(item)
    return out


def container(docs: list[Doc]) -> Doc:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# ---------------------------------------------------------------- resources


def test_defaults_render_exactly_the_core_resources(render):
    assert set(index(render())) == CORE


def test_include_crds_adds_exactly_the_crd(render):
    extra = set(index(render({}, "--include-crds"))) - CORE
    assert extra == {("CustomResourceDefinition", "", "rollbackverifications.gitops.proompteng.ai")}


@pytest.mark.parametrize(
    ("values", "added", "removed"),
    [
        ({"metrics": {"serviceMonitor": {"enabled": True}}}, {("ServiceMonitor", NS, FULL)}, set()),
        ({"metrics": {"prometheusRule": {"enabled": True}}}, {("PrometheusRule", NS, FULL)}, set()),
        ({"networkPolicy": {"enabled": True}}, {("NetworkPolicy", NS, FULL)}, set()),
        ({"metrics": {"grafanaDashboard": {"enabled": True}}}, {("ConfigMap", NS, f"{FULL}-dashboard")}, set()),
        ({"metrics": {"enabled": False}}, set(), {("Service", NS, f"{FULL}-metrics")}),
        (
            {"serviceAccount": {"create": False, "name": "existing"}},
            set(),
            {("ServiceAccount", NS, FULL)},
        ),
        ({"gitCredentials": {"secretNames": ["gitops-repo"]}}, set(), set()),
        ({"detection": {"enabled": False}}, set(), set()),
        (
            {"controller": {"namespaces": ["agents", "agents-ci"]}},
            {("Role", "agents-ci", FULL), ("RoleBinding", "agents-ci", FULL)},
            set(),
        ),
    ],
    ids=[
        "serviceMonitor",
        "prometheusRule",
        "networkPolicy",
        "grafanaDashboard",
        "no-metrics",
        "no-sa",
        "secrets",
        "no-detection",
        "two-namespaces",
    ],
)
def test_each_flag_adds_or_removes_only_its_own_resources(render, values, added, removed):
    assert set(index(render(values))) == (CORE | added) - removed


def test_all_optional_flags_together(render):
    values = {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
        "networkPolicy": {"enabled": True},
    }
    assert set(index(render(values))) == CORE | {
        ("ServiceMonitor", NS, FULL),
        ("PrometheusRule", NS, FULL),
        ("NetworkPolicy", NS, FULL),
        ("ConfigMap", NS, f"{FULL}-dashboard"),
    }


def test_optional_resources_default_off_in_values():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["metrics"]["serviceMonitor"]["enabled"] is False
    assert values["metrics"]["prometheusRule"]["enabled"] is False
    assert values["metrics"]["grafanaDashboard"]["enabled"] is False
    assert values["networkPolicy"]["enabled"] is False
    assert values["metrics"]["enabled"] is True
    assert values["detection"]["enabled"] is True
    assert values["rbac"]["clusterScoped"] is False
    assert values["controller"]["namespaces"] == ["agents"]
    assert values["argocd"]["namespace"] == "argocd"
    assert values["gitCredentials"]["secretNames"] == []


def test_fullname_override_and_release_name(render, helm_bin, tmp_path):
    keys = set(index(render({"fullnameOverride": "rv"})))
    assert ("Deployment", NS, "rv") in keys
    assert ("Role", "argocd", "rv-argocd") in keys
    assert all(name.startswith("rv") for _, _, name in keys)


# ---------------------------------------------------------------- RBAC


def test_namespaced_mode_has_roles_only_with_exactly_the_verbs(render):
    docs = render()
    kinds = {d["kind"] for d in docs}
    assert "ClusterRole" not in kinds
    assert "ClusterRoleBinding" not in kinds
    by_key = index(docs)
    assert rules(by_key[("Role", "agents", FULL)]) == NAMESPACED_RULES
    assert rules(by_key[("Role", "argocd", f"{FULL}-argocd")]) == APPLICATION_RULES


def test_role_bindings_bind_the_service_account(render):
    by_key = index(render())
    for ns, name in (("agents", FULL), ("argocd", f"{FULL}-argocd")):
        binding = by_key[("RoleBinding", ns, name)]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULL, "namespace": NS}]


def test_no_secret_access_by_default(render):
    for d in render({"rbac": {"clusterScoped": False}}) + render({"rbac": {"clusterScoped": True}}):
        if d["kind"] in ("Role", "ClusterRole"):
            assert all(r[1] != "secrets" for r in rules(d)), d["metadata"]


def test_secret_access_is_by_name_only(render):
    names = ["gitops-repo", "other-repo"]
    for mode in (False, True):
        docs = render({"rbac": {"clusterScoped": mode}, "gitCredentials": {"secretNames": names}})
        role = one(docs, "ClusterRole") if mode else index(docs)[("Role", "agents", FULL)]
        assert rules(role) == NAMESPACED_RULES | {("", "secrets", ("get",), tuple(sorted(names)))}
        # Applications' Role never gains Secrets.
        assert rules(index(docs)[("Role", "argocd", f"{FULL}-argocd")]) == APPLICATION_RULES


def test_destination_clusters_add_a_role_listing_secrets_in_argocd_only(render):
    assert ("Role", "argocd", f"{FULL}-clusters") not in index(render())  # off by default
    for mode in (False, True):
        docs = render({"rbac": {"clusterScoped": mode}, "destinations": {"enabled": True}})
        by_key = index(docs)
        assert rules(by_key[("Role", "argocd", f"{FULL}-clusters")]) == {("", "secrets", ("list",), ())}
        binding = by_key[("RoleBinding", "argocd", f"{FULL}-clusters")]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULL, "namespace": NS}]
        assert settings(docs)["destinations"] == {"enabled": True}
        # Nowhere else does the operator gain Secrets.
        others = [
            d for d in docs if d["kind"] in ("Role", "ClusterRole") and d["metadata"]["name"] != f"{FULL}-clusters"
        ]
        assert all(r[1] != "secrets" for d in others for r in rules(d))


def test_cluster_scoped_mode(render):
    docs = render({"rbac": {"clusterScoped": True}})
    by_key = index(docs)
    assert set(by_key) == (CORE - {("Role", "agents", FULL), ("RoleBinding", "agents", FULL)}) | {
        ("ClusterRole", "", FULL),
        ("ClusterRoleBinding", "", FULL),
    }
    assert rules(by_key[("ClusterRole", "", FULL)]) == NAMESPACED_RULES  # no applications cluster-wide
    assert rules(by_key[("Role", "argocd", f"{FULL}-argocd")]) == APPLICATION_RULES
    binding = by_key[("ClusterRoleBinding", "", FULL)]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": FULL}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULL, "namespace": NS}]
    args = container(docs)["args"]
    assert "--all-namespaces" in args
    assert not [a for a in args if a.startswith("--namespace")]


def test_namespaced_mode_passes_each_namespace(render):
    args = container(render({"controller": {"namespaces": ["agents", "agents-ci"]}}))["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=agents", "--namespace=agents-ci"]
    assert "--all-namespaces" not in args


def test_existing_service_account_is_bound(render):
    docs = render({"serviceAccount": {"create": False, "name": "existing"}})
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"
    for d in docs:
        if d["kind"] == "RoleBinding":
            assert d["subjects"][0]["name"] == "existing"


# ---------------------------------------------------------------- Deployment


def test_deployment_shape_and_security(render):
    docs = render()
    dep = one(docs, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 10001
    assert psc["runAsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(c["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"name": "HOME", "value": "/tmp"} in c["env"]


def test_deployment_args_match_the_operator_contract(render):
    args = container(render())["args"]
    assert args == [
        "run",
        "--namespace=agents",
        "--settings=/etc/rollback-verifier/settings.yaml",
        "--metrics-port=8080",
        "--cache-dir=/var/cache/rollback-verifier",
        "--log-format=json",
        "--log-level=info",
    ]
    args = container(render({"logLevel": "debug", "logFormat": "text"}))["args"]
    assert "--log-level=debug" in args
    assert "--log-format=text" in args


def test_writable_paths_are_empty_dirs_and_settings_is_the_configmap(render):
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container(docs)["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/var/cache/rollback-verifier", "/etc/rollback-verifier"}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert volumes[mounts["/var/cache/rollback-verifier"]["name"]]["emptyDir"] == {"sizeLimit": "1Gi"}
    settings = volumes[mounts["/etc/rollback-verifier"]["name"]]
    assert settings["configMap"]["name"] == f"{FULL}-settings"
    assert mounts["/etc/rollback-verifier"]["readOnly"] is True


def test_selector_labels_are_name_and_instance_only_and_stable(render):
    expected = {"app.kubernetes.io/name": "rollback-verifier", "app.kubernetes.io/instance": "rollback-verifier"}
    for values in ({}, {"image": {"tag": "9.9.9"}}, {"rbac": {"clusterScoped": True}}, {"logLevel": "debug"}):
        docs = render(values)
        dep = one(docs, "Deployment")
        assert dep["spec"]["selector"] == {"matchLabels": expected}
        assert expected.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        assert one(docs, "Service")["spec"]["selector"] == expected
    labels = one(render(), "Deployment")["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert labels["app.kubernetes.io/version"] == "0.1.0"
    assert labels["helm.sh/chart"] == "rollback-verifier-0.1.0"


def test_checksum_annotation_follows_the_settings(render):
    def checksum(values: Doc) -> str:
        return one(render(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]

    base = checksum({})
    assert len(base) == 64
    assert checksum({"logLevel": "debug"}) == base  # a flag, not a settings change
    assert checksum({"detection": {"enabled": False}}) != base


def test_pod_annotations_node_selector_tolerations_affinity(render):
    values = {
        "podAnnotations": {"example.com/a": "b"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "imagePullSecrets": [{"name": "regcred"}],
    }
    pod_template = one(render(values), "Deployment")["spec"]["template"]
    pod = pod_template["spec"]
    assert pod_template["metadata"]["annotations"]["example.com/a"] == "b"
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["imagePullSecrets"] == values["imagePullSecrets"]


# ---------------------------------------------------------------- image


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({}, "registry.ide-newton.ts.net/lab/rollback-verifier:0.1.0"),
        ({"tag": "1.2.3"}, "registry.ide-newton.ts.net/lab/rollback-verifier:1.2.3"),
        ({"digest": DIGEST}, f"registry.ide-newton.ts.net/lab/rollback-verifier@{DIGEST}"),
        ({"tag": "1.2.3", "digest": DIGEST}, f"registry.ide-newton.ts.net/lab/rollback-verifier:1.2.3@{DIGEST}"),
        ({"repository": "example.com/rv", "digest": DIGEST}, f"example.com/rv@{DIGEST}"),
    ],
)
def test_image_reference(render, image, expected):
    assert container(render({"image": image}))["image"] == expected


# ---------------------------------------------------------------- no hooks


def test_nothing_is_a_helm_hook(render):
    everything = {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
        "networkPolicy": {"enabled": True},
        "gitCredentials": {"secretNames": ["s"]},
    }
    for values in (everything, {**everything, "rbac": {"clusterScoped": True}}):
        for d in render(values, "--include-crds"):
            annotations = d["metadata"].get("annotations") or {}
            assert not [a for a in annotations if a.startswith("helm.sh/hook")], d["metadata"]["name"]
    for path in (CHART / "templates").iterdir():
        assert "helm.sh/hook" not in path.read_text(), path


# ---------------------------------------------------------------- settings


def settings(docs: list[Doc]) -> Doc:
    cm = one(docs, "ConfigMap")
    assert set(cm["data"]) == {"settings.yaml"}
    return yaml.safe_load(cm["data"]["settings.yaml"])


def test_default_settings_file(render):
    assert settings(render()) == {
        "argocdNamespace": "argocd",
        "detection": {
            "enabled": True,
            "applications": [
                {
                    "name": "agents",
                    "namespace": "argocd",
                    "verificationNamespace": "agents",
                    "valuesFrom": {"git": {"path": "argocd/applications/agents/values.yaml"}},
                    "targets": [
                        {"name": "agents", "imageValues": ["controlPlane.image"]},
                        {"name": "agents-controllers", "imageValues": ["controllers.image", "image"]},
                    ],
                    "timeoutSeconds": 600,
                    "requireApplicationHealthy": True,
                    "failOnOrphans": False,
                    "historyLimit": 10,
                }
            ],
        },
        "trust": {"allowLocalRepositories": False, "targetNamespaces": {}, "destinationClusters": {}},
        "destinations": {"enabled": False},
    }


def test_trust_values_reach_the_settings_file(render):
    trust = {
        "allowLocalRepositories": True,
        "targetNamespaces": {"agents": ["agents-canary"]},
        "destinationClusters": {"agents": ["prod-eu"]},
    }
    docs = render({"controller": {"namespaces": ["agents", "agents-canary"]}, "trust": trust})
    assert settings(docs)["trust"] == trust
    # Cluster-wide, every namespace is watched: any mapping renders.
    docs = render({"rbac": {"clusterScoped": True}, "trust": {"targetNamespaces": {"a": ["b"]}}})
    assert settings(docs)["trust"]["targetNamespaces"] == {"a": ["b"]}


def test_settings_follow_argocd_namespace_and_detection_flag(render):
    s = settings(render({"argocd": {"namespace": "gitops"}, "detection": {"enabled": False}}))
    assert s["argocdNamespace"] == "gitops"
    assert s["detection"]["enabled"] is False
    assert s["detection"]["applications"][0]["namespace"] == "gitops"


def test_custom_applications(render):
    apps = [
        {
            "name": "web",
            "verificationNamespace": "web",
            "valuesFrom": {"applicationHelmValues": True},
            "targets": [{"name": "web", "image": "example.com/web@" + DIGEST, "containers": ["web"]}],
        }
    ]
    docs = render({"controller": {"namespaces": ["web"]}, "detection": {"applications": apps}})
    assert settings(docs)["detection"]["applications"] == [{**apps[0], "namespace": "argocd"}]
    assert ("Role", "web", FULL) in index(docs)


def test_cluster_scoped_allows_any_verification_namespace(render):
    apps = [{"name": "web", "verificationNamespace": "elsewhere", "targets": [{"name": "web", "image": "x"}]}]
    docs = render({"rbac": {"clusterScoped": True}, "detection": {"applications": apps}})
    assert settings(docs)["detection"]["applications"][0]["verificationNamespace"] == "elsewhere"


# ---------------------------------------------------------------- metrics and network


def test_service_monitor(render):
    docs = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}})
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["jobLabel"] == "app.kubernetes.io/name"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NS]}
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s"}]
    service = one(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "rollback-verifier"  # -> job label
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]


def test_prometheus_rule_embeds_the_one_rule_file(render):
    rule_file = yaml.safe_load((CHART / "files" / "rollback-verifier.rules.yaml").read_text())
    pr = one(render({"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}}), "PrometheusRule")
    assert pr["apiVersion"] == "monitoring.coreos.com/v1"
    assert pr["metadata"]["labels"]["release"] == "kps"
    assert pr["spec"] == {"groups": rule_file["groups"]}
    alerts = {r["alert"] for g in pr["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"RollbackVerificationFailed", "RollbackVerificationStuck", "RollbackVerifierAbsent"}


def test_prometheus_rule_runbook_and_dashboard_urls_follow_values(render):
    rule_file = yaml.safe_load((CHART / "files" / "rollback-verifier.rules.yaml").read_text())
    values = {
        "runbookBaseURL": "https://git.example/sre/rollback-verifier/docs/runbooks/",
        "dashboardURL": "https://grafana.example/d/rollback-verifier",
    }
    pr = one(render({"metrics": {"prometheusRule": {"enabled": True, **values}}}), "PrometheusRule")
    for group, plain in zip(pr["spec"]["groups"], rule_file["groups"], strict=True):
        for rule, original in zip(group["rules"], plain["rules"], strict=True):
            annotations = dict(rule["annotations"])
            page = original["annotations"]["runbook_url"].rsplit("/", 1)[1]
            assert annotations.pop("runbook_url") == f"https://git.example/sre/rollback-verifier/docs/runbooks/{page}"
            assert annotations.pop("dashboard_url") == "https://grafana.example/d/rollback-verifier"
            original_rest = {k: v for k, v in original["annotations"].items() if k != "runbook_url"}
            assert annotations == original_rest
            assert {k: v for k, v in rule.items() if k != "annotations"} == {
                k: v for k, v in original.items() if k != "annotations"
            }


def test_prometheus_rule_urls_must_be_urls(render_error):
    for key in ("dashboardURL", "runbookBaseURL"):
        err = render_error({"metrics": {"prometheusRule": {"enabled": True, key: "grafana/d/x"}}})
        assert f"/metrics/prometheusRule/{key}" in err


def test_grafana_dashboard_configmap(render):
    dashboard = (CHART / "files" / "rollback-verifier.dashboard.json").read_text()
    cm = index(render({"metrics": {"grafanaDashboard": {"enabled": True}}}))[("ConfigMap", NS, f"{FULL}-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in cm["metadata"]
    assert cm["data"] == {"rollback-verifier.json": dashboard.rstrip("\n")}
    values = {
        "enabled": True,
        "namespace": "monitoring",
        "folder": "GitOps",
        "folderAnnotation": "k8s-sidecar-target-directory",
    }
    values["labels"] = {"grafana_dashboard": "rollback-verifier"}
    cm = index(render({"metrics": {"grafanaDashboard": values}}))[("ConfigMap", "monitoring", f"{FULL}-dashboard")]
    assert cm["metadata"]["annotations"] == {"k8s-sidecar-target-directory": "GitOps"}
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "rollback-verifier"


def test_prometheus_rules_exist_once_and_the_plain_file_is_a_link_to_the_chart():
    plain = REPO / "deploy" / "prometheus" / "rules" / "rollback-verifier.rules.yaml"
    assert plain.is_symlink()
    assert plain.resolve() == (CHART / "files" / "rollback-verifier.rules.yaml").resolve()
    assert not (CHART / "files" / "rollback-verifier.rules.yaml").is_symlink()


def test_network_policy(render):
    docs = render({"networkPolicy": {"enabled": True}})
    np = one(docs, "NetworkPolicy")["spec"]
    assert np["podSelector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert np["policyTypes"] == ["Ingress"]
    assert np["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    np = one(render({"networkPolicy": {"enabled": True, "metricsFrom": peers}}), "NetworkPolicy")["spec"]
    assert np["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}], "from": peers}]
    assert "egress" not in np


def test_network_policy_egress_rules_behind_their_flag(render):
    api = [{"ipBlock": {"cidr": "10.0.0.10/32"}}]
    git = [{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443, "protocol": "TCP"}]}]
    egress = {"enabled": True, "apiServer": {"to": api}, "gitHosts": git}
    np = one(render({"networkPolicy": {"enabled": True, "egress": egress}}), "NetworkPolicy")["spec"]
    assert np["policyTypes"] == ["Ingress", "Egress"]
    dns, api_rule, git_rule = np["egress"]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert api_rule == {"to": api, "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
    assert git_rule == git[0]
    # The flag off: the egress values are ignored, egress stays open.
    np = one(render({"networkPolicy": {"enabled": True, "egress": {**egress, "enabled": False}}}), "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress"] and "egress" not in np["spec"]


def test_metrics_address(render):
    assert not any(a.startswith("--metrics-address") for a in container(render())["args"])
    args = container(render({"metrics": {"address": "$(POD_IP)"}}))["args"]
    assert "--metrics-address=$(POD_IP)" in args
    env = {e["name"]: e for e in container(render())["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


# ---------------------------------------------------------------- packaging


def test_packaged_chart_renders_the_same(run, render, tmp_path):
    out = tmp_path / "pkg"
    proc = run("package", str(CHART), "--destination", str(out))
    assert proc.returncode == 0, proc.stderr
    (tgz,) = out.glob("rollback-verifier-0.1.0.tgz")
    values = {"metrics": {"prometheusRule": {"enabled": True}}}
    assert render(values, "--include-crds", chart=str(tgz)) == render(values, "--include-crds")


# ---------------------------------------------------------------- NOTES.txt


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        (
            {},
            [
                "Scope: namespaces agents (a Role in each).",
                "Detection watches: argocd/agents (verifications in agents)",
                "kubectl -n rollback-verifier rollout status deploy/rollback-verifier",
                'Metrics: service rollback-verifier-metrics, port "metrics" (8080), path /metrics.',
            ],
        ),
        (
            {"rbac": {"clusterScoped": True}, "detection": {"enabled": False}, "metrics": {"enabled": False}},
            [
                "Scope: all namespaces (ClusterRole rollback-verifier).",
                "Detection is off",
            ],
        ),
    ],
    ids=["defaults", "cluster-no-detection-no-metrics"],
)
def test_notes_render(run, tmp_path, values, fragments):
    """`helm template` skips NOTES.txt and `helm install --dry-run` needs a cluster: render it through a
    copy of the chart where it is a named template shown in a ConfigMap."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "test.notes" -}}\n' + notes + "{{- end }}\n")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "test.notes" . | toJson }}\n'
    )
    proc = run(
        "template", "rollback-verifier", str(chart), "-n", NS, "--show-only", "templates/notes.yaml", values=values
    )
    assert proc.returncode == 0, proc.stderr
    text = yaml.safe_load(proc.stdout)["data"]["notes"]
    for fragment in fragments:
        assert fragment in text, text
