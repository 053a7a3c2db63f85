"""The floor of the CPU per event: a process that only receives the Pod and Deployment events of one
namespace and parses them (one json.loads and one view each), with the operator's own informer and
client, and does nothing else with them. bench.scale runs it beside the operator during a churn: what
an operator needs at least for an event it must read, on this machine, at this event rate (a process
woken for each event runs it with cold caches: several times the cost of the same code in a loop).

    python -m bench.receive_floor KUBECONFIG NAMESPACE   # prints "synced", then runs until terminated
"""

from __future__ import annotations

import sys
import threading

from rollback_verifier.controller.informer import Informer
from rollback_verifier.controller.kube import Kube, load_client_config
from rollback_verifier.core.rollout import deployment_view, pod_view

SYNC_TIMEOUT = 60


def main(kubeconfig: str, namespace: str) -> int:
    kube = Kube(load_client_config(kubeconfig))
    informers = [
        Informer(f"pods in {namespace}", kube.pods_lister(namespace), view=pod_view).start(),
        Informer(f"Deployments in {namespace}", kube.deployments_lister(namespace), view=deployment_view).start(),
    ]
    if not all(i.synced.wait(SYNC_TIMEOUT) for i in informers):
        print(f"not synced after {SYNC_TIMEOUT}s", flush=True)
        return 1
    print("synced", flush=True)
    threading.Event().wait()  # until the bench terminates it (the informers' threads are daemons)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
