"""PNG plots of the bench's latency distributions, written next to its JSON (`make bench` calls this).

    python -m bench.plots [bench/results/latest.json]   # redraw from saved results, no cluster needed

One figure per benchmark that has samples: each measured latency as an empirical CDF (every rollback
is a point: the median and the tail read straight off the curve) with its p50 and max marked.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # after the backend choice

# (benchmark, sample key, legend) per figure; values in the JSON are seconds.
FIGURES: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "latency": (
        "latency",
        "Verdict latency: from the last pod Ready / both Deployments complete",
        [
            ("verdict_minus_pods_ready", "verdict written, from last pod Ready"),
            ("kubectl_minus_pods_ready", "kubectl rollout status exits, from last pod Ready"),
            ("verdict_minus_complete", "verdict written, from Deployments complete"),
            ("kubectl_minus_complete", "kubectl rollout status exits, from Deployments complete"),
        ],
    ),
    "detection": (
        "detection",
        "Detection latency: from the Application's history write",
        [
            ("patch_to_created_seen", "RollbackVerification created"),
            ("created_to_verdict_seen", "its verdict, from its creation"),
        ],
    ),
}


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _plot(path: Path, title: str, series: list[tuple[str, list[float]]], subtitle: str) -> None:
    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=110)
    for label, seconds in series:
        ms = sorted(max(s, 0.0) * 1000 for s in seconds)
        ys = [(i + 1) / len(ms) for i in range(len(ms))]
        (line,) = ax.step(ms, ys, where="post", linewidth=1.8, label=f"{label} (p50 {_quantile(ms, 0.5):.0f} ms)")
        ax.plot([_quantile(ms, 0.5)], [0.5], "o", color=line.get_color())
        ax.plot([ms[-1]], [1.0], "^", color=line.get_color())
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("milliseconds (log scale above 10 ms)")
    ax.set_ylabel("fraction of rollbacks")
    ax.set_ylim(0, 1.04)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(results: dict[str, Any], json_path: Path) -> list[Path]:
    """Write <json stem>-<benchmark>.png beside json_path for each benchmark with samples; the paths."""
    env = results.get("environment", {})
    subtitle = f"{env.get('date', '')}, {env.get('cpus', '?')} CPUs; o = p50, ^ = max"
    written = []
    for name, (bench, title, keys) in FIGURES.items():
        samples = (results.get("benchmarks", {}).get(bench) or {}).get("samples") or []
        series = [(label, [s[key] for s in samples if isinstance(s.get(key), int | float)]) for key, label in keys]
        series = [(label, values) for label, values in series if values]
        if not series:
            continue
        path = json_path.with_name(f"{json_path.stem}-{name}.png")
        n = max(len(v) for _, v in series)
        _plot(path, f"{title} ({n} rollbacks)", series, subtitle)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    import json

    from bench.__main__ import RESULTS

    path = Path(argv[0]) if argv else RESULTS
    for png in write_plots(json.loads(path.read_text()), path):
        print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
