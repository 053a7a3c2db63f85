"""A second local cluster (the spoke) that Argo CD in the first (the hub) deploys to, registered the
way Argo CD registers clusters: a cluster Secret in Argo CD's namespace holding the spoke's server,
its CA and a ServiceAccount token of the spoke.

    spoke = Spoke(Cluster(kubeconfig), name)        # a cluster of tests/e2e/cluster/cluster.sh
    token = spoke.token("kube-system", "argocd-manager", cluster_admin=True)   # what Argo CD deploys with
    hub.apply(spoke.cluster_secret("spoke", token, namespace="argocd"))
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from harness.support import ROOT, Cluster

CLUSTER_SH = ROOT / "tests" / "e2e" / "cluster" / "cluster.sh"
READER_RBAC = ROOT / "deploy" / "destination-cluster" / "reader-rbac.yaml"
CLUSTER_SECRET_LABEL = {"argocd.argoproj.io/secret-type": "cluster"}


@dataclass
class Spoke:
    cluster: Cluster
    name: str  # its RV_CLUSTER_NAME (cluster.sh names the kubeconfig <cache>/<name>.kubeconfig)

    @cached_property
    def _kubeconfig(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(self.cluster.kubeconfig.read_text())
        return loaded

    @property
    def server(self) -> str:
        return str(self._kubeconfig["clusters"][0]["cluster"]["server"])

    @property
    def alias_server(self) -> str:
        """The same API server under another URL (localhost for 127.0.0.1; its certificate names both):
        a second cluster Secret for it is another cluster to Argo CD, not a duplicate."""
        parts = urlsplit(self.server)
        return urlunsplit(parts._replace(netloc=f"localhost:{parts.port}"))

    @property
    def ca_data(self) -> bytes:
        return Path(self._kubeconfig["clusters"][0]["cluster"]["certificate-authority"]).read_bytes()

    def token(self, namespace: str, account: str, *, cluster_admin: bool = False) -> str:
        """A token of a ServiceAccount of the spoke: cluster-admin (as `argocd cluster add` grants Argo CD),
        else bound to the documented reader ClusterRole in `namespace` only."""
        self.cluster.kubectl("-n", namespace, "create", "serviceaccount", account, check=False)
        if cluster_admin:
            self.cluster.kubectl(
                "create", "clusterrolebinding", f"{account}-{namespace}", "--clusterrole=cluster-admin",
                f"--serviceaccount={namespace}:{account}", check=False,
            )  # fmt: skip
        else:
            self.cluster.kubectl("apply", "-f", str(READER_RBAC))
            self.cluster.kubectl(
                "-n", namespace, "create", "rolebinding", f"{account}-reader", "--clusterrole=rollback-verifier-reader",
                f"--serviceaccount={namespace}:{account}", check=False,
            )  # fmt: skip
        return self.cluster.kubectl("-n", namespace, "create", "token", account, "--duration=2h").stdout.strip()

    def cluster_secret(
        self, cluster_name: str, token: str, *, namespace: str, server: str | None = None, **config: Any
    ) -> str:
        """The cluster Secret Argo CD reads (util/db/cluster.go): name, server, config JSON."""
        cfg = {
            "bearerToken": token,
            "tlsClientConfig": {"insecure": False, "caData": base64.b64encode(self.ca_data).decode()},
            **config,
        }
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"cluster-{cluster_name}", "namespace": namespace, "labels": CLUSTER_SECRET_LABEL},
            "type": "Opaque",
            "stringData": {"name": cluster_name, "server": server or self.server, "config": json.dumps(cfg)},
        }
        return json.dumps(secret)

    def watches(self) -> int:
        """Namespaced WATCHes of Pods and Deployments the spoke's API server serves now: the operator's."""
        return self.cluster.namespaced_watches()

    def outage(self, seconds: int) -> subprocess.Popen[str]:
        """`cluster.sh outage`: the spoke's etcd and API server stopped for `seconds`, then started again.
        Runs in the background; wait() on it for the spoke to be back."""
        env = {**os.environ, "RV_CLUSTER_NAME": self.name}
        return subprocess.Popen(
            [str(CLUSTER_SH), "outage", str(seconds)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
