"""The operator's start and stop time from its image: `runc run` to /readyz 200, and SIGTERM to exit,
as the chart's pod (tests/image's runtime spec), on a running cluster. Needs root, runc, umoci and
`make image` done.

    python -m bench.image_start --kubeconfig K [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from harness.support import Cluster
from tests.image.conftest import OUTPUT, image_config, read_env
from tests.image.netns import network_namespace
from tests.image.pod import CHART, RELEASE, Image, RuncContainer, chart_pod


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.image_start", description=__doc__)
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    cluster = Cluster(args.kubeconfig)
    tag = read_env(OUTPUT / "image.env")["TAG"]
    namespace = cluster.create_namespace(f"bench-image-{uuid.uuid4().hex[:6]}")
    starts, stops = [], []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        bundle = tmp / "bundle"
        subprocess.run(
            ["umoci", "unpack", "--image", f"{OUTPUT / 'oci'}:{tag}", str(bundle)], check=True, capture_output=True
        )
        image = Image(
            bundle / "rootfs",
            json.loads((bundle / "config.json").read_text()),
            image_config(OUTPUT / "oci", tag)["config"],
        )
        values = {
            "controller": {"namespaces": [namespace]},
            "argocd": {"namespace": namespace},
            "detection": {"applications": [{"name": "agents", "verificationNamespace": namespace}]},
        }
        (tmp / "values.yaml").write_text(yaml.safe_dump(values))
        cluster.helm("install", RELEASE, str(CHART), "-n", namespace, "-f", str(tmp / "values.yaml"))
        try:
            for run in range(args.runs):
                with network_namespace() as netns:
                    pod = chart_pod(
                        cluster, image, namespace=namespace, values=values, netns=netns, folder=tmp / f"pod-{run}"
                    )
                    container = RuncContainer(pod.spec, tmp / f"run-{run}")
                    container.start()
                    port, path = pod.probe_path("readinessProbe")
                    deadline = time.monotonic() + 120
                    while True:
                        try:
                            if netns.http_get(port, path, timeout=1)[0] == 200:
                                break
                        except OSError:
                            pass
                        if time.monotonic() > deadline or container.exited() is not None:
                            print(container.log()[-2000:], file=sys.stderr)
                            return 1
                        time.sleep(0.02)
                    starts.append(time.monotonic() - container.started_at)
                    stops.append(container.stop(30)[1])
                    container.remove()
        finally:
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    for what, values_ in (("runc run -> /readyz 200", starts), ("SIGTERM -> exit", stops)):
        print(f"{what}: p50 {statistics.median(values_):.2f} s, max {max(values_):.2f} s ({len(values_)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
