"""`python -m bench` (`make bench`): start the bench cluster (rv-bench, with the API server's audit
log on), run every benchmark, print a markdown summary, write bench/results/latest.json and its
latency plots (latest-*.png, bench/plots.py), and stop the cluster, even when a benchmark fails.

    python -m bench                              # everything, on a cluster of its own
    python -m bench --only latency,memory        # some of them
    python -m bench --kubeconfig K --audit-log L # on a running cluster (nothing started or stopped)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import destinations, detection, memory, plots, report, scale, verdict_latency, writes
from bench.common import CLUSTER_NAME, audit_log_path, cluster_down, cluster_up

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
# detection also measures the API requests (idle, per rollback); scale runs the operator before and after
# the informer change on a cluster of --scale-deployments Deployments (the longest: ~15 min at 1,000).
BENCHMARKS = ("latency", "memory", "detection", "writes", "scale", "destinations")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--kubeconfig", type=Path, help="use this running cluster instead of starting rv-bench")
    p.add_argument("--audit-log", type=Path, help="its kube-apiserver audit log (for the API request counts)")
    p.add_argument("--keep-cluster", action="store_true", help="leave rv-bench running afterwards")
    p.add_argument("--rollbacks", type=int, default=30, help="rollbacks per latency benchmark (default 30)")
    p.add_argument("--verifications", type=int, default=50, help="concurrent verifications (default 50)")
    p.add_argument("--scale-deployments", type=int, default=1000, help="Deployments (3 pods each) of the scale bench")
    p.add_argument("--idle-seconds", type=float, default=60, help="idle window of the API request count")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"raw results (default {RESULTS})")
    return p.parse_args(argv)


def _environment() -> dict[str, Any]:
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "rv_bin_dir": os.environ.get("RV_BIN_DIR", ""),
    }


def _interrupted(signum: int, frame: object) -> None:
    """A SIGTERM (a CI timeout, a killed make) must still tear the cluster down: raise, as Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupted)

    results: dict[str, Any] = {"environment": _environment(), "benchmarks": {}}
    own_cluster = args.kubeconfig is None
    failed = False
    started = time.monotonic()
    try:
        if own_cluster:
            print(f"bench: starting the local cluster '{CLUSTER_NAME}' (audit log on)", file=sys.stderr)
            kubeconfig = cluster_up()
            audit: Path | None = audit_log_path()
        else:
            kubeconfig, audit = args.kubeconfig, args.audit_log
        results["environment"]["cluster"] = CLUSTER_NAME if own_cluster else str(kubeconfig)
        runs: dict[str, Callable[[Path], dict[str, Any]]] = {
            "latency": lambda wd: verdict_latency.run(
                kubeconfig, audit, wd, iterations=args.rollbacks, idle_seconds=args.idle_seconds / 2
            ),
            "memory": lambda wd: memory.run(kubeconfig, audit, wd, count=args.verifications),
            "detection": lambda wd: detection.run(
                kubeconfig, audit, wd, rollbacks=args.rollbacks, idle_seconds=args.idle_seconds
            ),
            "writes": lambda wd: writes.run(kubeconfig, audit, wd, count=args.verifications),
            "scale": lambda wd: scale.run(kubeconfig, wd, deployments=args.scale_deployments),
            "destinations": lambda wd: destinations.run(kubeconfig, wd),
        }
        for name in chosen:
            print(f"bench: {name} ...", file=sys.stderr)
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory(prefix=f"rv-bench-{name}-") as tmp:
                try:
                    results["benchmarks"][name] = runs[name](Path(tmp))
                except Exception as exc:
                    failed = True
                    results["benchmarks"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                    traceback.print_exc()
            results["benchmarks"][name]["seconds"] = round(time.monotonic() - t0, 1)
            print(f"bench: {name} took {time.monotonic() - t0:.0f}s", file=sys.stderr)
    except KeyboardInterrupt:
        failed = True
        print("bench: interrupted", file=sys.stderr)
    except Exception:
        failed = True
        traceback.print_exc()
    finally:
        if own_cluster and not args.keep_cluster:
            cluster_down()
            print(f"bench: cluster '{CLUSTER_NAME}' is down", file=sys.stderr)
    results["seconds"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    print(report.markdown(results))
    print(f"bench: raw results in {args.output}", file=sys.stderr)
    for png in plots.write_plots(results, args.output):
        print(f"bench: plot {png}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
