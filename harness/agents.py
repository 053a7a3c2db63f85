"""The fixture agents app: a real git repo of values, rendered by real helm into the real cluster."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from harness.support import AGENTS_CHART, ROOT, Cluster
from rollback_verifier.tools import find_tool

VALUES_PATH = "argocd/applications/agents/values.yaml"
CHART_PATH = "charts/agents"
POSTSYNC_HOOK = ROOT / "deploy" / "argocd" / "examples" / "postsync-hook.yaml"
DIGESTS = {name: "sha256:" + (ch * 64) for name, ch in {"A": "a", "B": "b", "C": "c"}.items()}


def images(release: str) -> dict[str, Any]:
    """Values pinning release A, B or C of both images (tag + digest, as the agents GitOps values do)."""
    tag = release.lower() * 8
    return {
        "controlPlane": {
            "image": {
                "repository": "registry.example/lab/jangar-control-plane",
                "tag": tag,
                "digest": DIGESTS[release],
            }
        },
        "image": {"repository": "registry.example/lab/jangar", "tag": tag, "digest": DIGESTS[release]},
    }


def release_images(n: int) -> dict[str, Any]:
    """Values pinning release number n of both images: a tag and a digest of their own."""
    tag = f"r{n:07d}"
    digest = "sha256:" + hashlib.sha256(f"release-{n}".encode()).hexdigest()
    return {
        "controlPlane": {
            "image": {"repository": "registry.example/lab/jangar-control-plane", "tag": tag, "digest": digest}
        },
        "image": {"repository": "registry.example/lab/jangar", "tag": tag, "digest": digest},
    }


def expected(release: str, repository: str = "registry.example/lab/jangar") -> str:
    return f"{repository}:{release.lower() * 8}@{DIGESTS[release]}"


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


class GitOpsRepo:
    """A real local git repository holding the agents values, as the GitOps repo does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "sre",
            "GIT_AUTHOR_EMAIL": "sre@example.com",
            "GIT_COMMITTER_NAME": "sre",
            "GIT_COMMITTER_EMAIL": "sre@example.com",
            "GIT_CONFIG_GLOBAL": "/dev/null",
        }
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def git(self, *args: str) -> str:
        return subprocess.run(
            [find_tool("git"), *args], cwd=self.path, env=self.env, capture_output=True, text=True, check=True
        ).stdout.strip()

    def commit_values(self, values: dict[str, Any], message: str) -> str:
        return self.commit_file(VALUES_PATH, yaml.safe_dump(values, sort_keys=False), message)

    def values_at(self, revision: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(self.git("show", f"{revision}:{VALUES_PATH}"))
        return loaded

    def commit_file(self, path: str, content: str, message: str) -> str:
        """Commit raw text (e.g. a values file that does not parse) and return the new commit SHA."""
        file = self.path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(content)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def revert(self, sha: str) -> str:
        """`git revert` of one commit: a new commit whose content is the one before `sha`."""
        self.git("revert", "--no-edit", sha)
        return self.git("rev-parse", "HEAD")

    def seed_chart(self, hook_for: str | None = None, hook_timeout_seconds: int = 30) -> str:
        """Commit the fixture agents chart at charts/agents, as the GitOps repo holds it. With `hook_for`
        (an Application name), the chart also carries deploy/argocd's PostSync hook RollbackVerification,
        pointed at that Application (its namespace is the Application's destination)."""
        dest = self.path / CHART_PATH
        shutil.copytree(AGENTS_CHART, dest)
        if hook_for is not None:
            hook = yaml.safe_load(POSTSYNC_HOOK.read_text())
            del hook["metadata"]["namespace"]
            hook["metadata"]["labels"]["gitops.proompteng.ai/application"] = hook_for
            hook["spec"]["application"]["name"] = hook_for
            hook["spec"]["timeoutSeconds"] = hook_timeout_seconds
            (dest / "templates" / "postsync-hook.yaml").write_text(yaml.safe_dump(hook, sort_keys=False))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "add the agents chart")
        return self.git("rev-parse", "HEAD")


def helm_deploy(cluster: Cluster, namespace: str, values: dict[str, Any], release: str = "agents") -> None:
    """`helm upgrade --install` of the fixture chart with these values (no --wait: tests wait for what they need)."""
    proc = subprocess.run(
        [find_tool("helm"), "upgrade", "--install", release, str(AGENTS_CHART), "-n", namespace, "-f", "-"],
        input=json.dumps(values),
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"helm upgrade failed:\n{proc.stderr}")


def verification(
    name: str, spec: dict[str, Any], labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> str:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return json.dumps(
        {"apiVersion": "gitops.proompteng.ai/v1alpha1", "kind": "RollbackVerification", "metadata": meta, "spec": spec}
    )


def git_values_spec(repo: GitOpsRepo, revision: str, **extra: Any) -> dict[str, Any]:
    return {"revision": revision, "valuesFrom": {"git": {"repoURL": repo.url, "path": VALUES_PATH}}, **extra}


def wait_verdict(cluster: Cluster, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        obj = cluster.get("-n", namespace, "rbv", name)
        return obj if obj.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    result: dict[str, Any] = cluster.wait_for(final, timeout, f"the verdict of {namespace}/{name}")
    return result


def deploy_a_then_b(cluster: Cluster, namespace: str, repo: GitOpsRepo) -> tuple[str, str]:
    """Revision 1 (images A) deployed, then revision 2 (B), both rolled out; returns their revisions."""
    rev_a = repo.commit_values(images("A"), "release A")
    helm_deploy(cluster, namespace, repo.values_at(rev_a))
    rev_b = repo.commit_values(images("B"), "release B")
    helm_deploy(cluster, namespace, repo.values_at(rev_b))
    for d in ("agents", "agents-controllers"):
        cluster.rollout_status(namespace, d)
    return rev_a, rev_b
