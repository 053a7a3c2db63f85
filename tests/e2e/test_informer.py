"""The operator's informer on the real API server: what it hands on is a change of what a verdict reads,
not every event the watch delivers."""

from __future__ import annotations

import threading
from typing import Any

from harness.agents import expected
from harness.support import Cluster

from rollback_verifier.controller.informer import Informer
from rollback_verifier.controller.kube import Kube, load_client_config
from rollback_verifier.core.rollout import PodView, pod_view


def test_a_pod_modification_outside_its_view_is_not_handed_on(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("-n", namespace, "create", "deployment", "web", f"--image={expected('A')}", "--replicas=1")
    cluster.kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s")
    pod = cluster.get("-n", namespace, "pods", "-l", "app=web")["items"][0]["metadata"]["name"]

    handed: list[tuple[str, str, PodView | None]] = []
    lock = threading.Lock()

    def listener(kind: str, name: str, view: Any) -> None:
        with lock:
            handed.append((kind, name, view))

    kube = Kube(load_client_config(str(cluster.kubeconfig)))
    informer = Informer(
        f"pods of {namespace}/web",
        kube.pods_lister(namespace),
        view=pod_view,
        listener=listener,
        namespace=namespace,
        selectors={"label_selector": "app=web"},
    ).start()
    try:
        assert informer.synced.wait(30), informer.error
        cluster.wait_for(lambda: len(handed) == 1, timeout=10, what="the listed pod handed on")
        # An annotation is not in the view: a MODIFIED event that changes nothing a verdict reads. A label
        # is. Both come in order on the same watch, so once the label's event is handed on, the
        # annotation's would have been before it.
        cluster.kubectl("-n", namespace, "annotate", "pod", pod, "rollback.example/touched=1")
        cluster.kubectl("-n", namespace, "label", "pod", pod, "rollback.example/touched=1")

        def label_handed() -> bool:
            with lock:
                return any(v is not None and "rollback.example/touched" in v.labels for _, _, v in handed)

        cluster.wait_for(label_handed, timeout=30, what="the label's modification handed on")
        with lock:
            after_list = [(kind, name) for kind, name, _ in handed[1:]]
        assert after_list == [("MODIFIED", pod)]
    finally:
        informer.stop()
