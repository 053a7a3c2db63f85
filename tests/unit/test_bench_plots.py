"""bench/plots.py draws what the bench measured, beside its JSON, and skips what it did not measure."""

from __future__ import annotations

import json
from pathlib import Path

from bench.plots import write_plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_one_png_per_benchmark_with_samples(tmp_path: Path) -> None:
    results = {
        "environment": {"date": "2026-12-02T00:00:00Z", "cpus": 2},
        "benchmarks": {
            "latency": {
                "samples": [
                    {"verdict_minus_pods_ready": 0.2 + i / 100, "kubectl_minus_complete": -0.001} for i in range(5)
                ]
            },
            "detection": {"error": "RuntimeError: no cluster"},
            "memory": {"idle_mib": 90},
        },
    }
    out = tmp_path / "run.json"
    out.write_text(json.dumps(results))
    written = write_plots(results, out)
    assert written == [tmp_path / "run-latency.png"]
    assert written[0].read_bytes().startswith(PNG)
    assert written[0].stat().st_size > 10_000  # a drawn figure, not an empty canvas


def test_the_committed_results_have_their_plots(tmp_path: Path) -> None:
    latest = Path(__file__).resolve().parents[2] / "bench" / "results" / "latest.json"
    names = [p.name for p in write_plots(json.loads(latest.read_text()), tmp_path / "latest.json")]
    assert names == ["latest-latency.png", "latest-detection.png"]
    for name in names:
        assert (latest.parent / name).is_file(), f"bench/results/{name} is not committed (python -m bench.plots)"
