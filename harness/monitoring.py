"""A real Prometheus and Alertmanager on loopback, and a webhook receiver that records what they send.

Prometheus scrapes the operator's real /metrics (static config) and loads the chart's own rule file
with every duration divided by TIME_SCALE: the e2e runs with 1 s scrape and evaluation intervals
instead of the ~1 min the rules are written for, so a 15-minute window becomes 15 s and the alerts
fire and resolve within the test's minutes. Nothing else of the rules changes (promtool tests them
at their real durations).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from harness.support import ROOT, Cluster, free_port, stop_process
from rollback_verifier.tools import find_tool

RULES = ROOT / "deploy" / "chart" / "files" / "rollback-verifier.rules.yaml"
DASHBOARD = ROOT / "deploy" / "chart" / "files" / "rollback-verifier.dashboard.json"
ALERTMANAGER_ROUTE = ROOT / "deploy" / "prometheus" / "alertmanager.yaml"
TIME_SCALE = 60
JOB = "rollback-verifier"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def scaled(duration: str) -> str:
    """'15m' -> '15s' with TIME_SCALE 60 (never below 1 s)."""
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", duration))
    return f"{max(seconds // TIME_SCALE, 1)}s"


def scaled_rules(text: str) -> str:
    """The rule file with every range, offset and `for` divided by TIME_SCALE."""
    doc = yaml.safe_load(text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["expr"] = re.sub(r"\[(\w+)\]", lambda m: f"[{scaled(m.group(1))}]", rule["expr"])
            rule["expr"] = re.sub(r"offset (\w+)", lambda m: f"offset {scaled(m.group(1))}", rule["expr"])
            if "for" in rule:
                rule["for"] = scaled(rule["for"])
    return str(yaml.safe_dump(doc, sort_keys=False))


def dashboard_queries(
    dashboard: dict[str, Any], range_: str = "10m", rate_interval: str = "1m"
) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target, with Grafana's variables filled in: all
    applications, the given $__range and $__rate_interval."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            expr = (
                target["expr"]
                .replace("$application", ".*")
                .replace("$__rate_interval", rate_interval)
                .replace("$__range", range_)
            )
            assert "$" not in expr, f"unknown variable in {panel['title']!r}: {expr}"
            out.append((str(panel["title"]), expr))
    return out


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - http on loopback, built here
        return json.loads(resp.read())


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = _get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def alerts(self, name: str, state: str | None = None, **labels: str) -> list[dict[str, Any]]:
        """Active alerts (pending or firing) named `name` whose labels include `labels`."""
        found = _get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return [
            a
            for a in found
            if a["labels"].get("alertname") == name
            and (state is None or a["state"] == state)
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def last_evaluation(self) -> float:
        """Unix time of the newest evaluation of the rollback-verifier rule group."""
        groups = _get_json(f"{self.url}/api/v1/rules")["data"]["groups"]
        (group,) = [g for g in groups if g["name"] == "rollback-verifier"]
        return parse_rfc3339(group["lastEvaluation"])

    def target(self, job: str) -> dict[str, Any]:
        (target,) = [
            t for t in _get_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"] if t["labels"]["job"] == job
        ]
        return dict(target)

    def log(self) -> str:
        return self.log_path.read_text()[-3000:] if self.log_path.exists() else ""


def parse_rfc3339(value: str) -> float:
    """e.g. 2026-12-02T06:40:01.123456789Z (Prometheus' nanoseconds cut to what datetime parses)."""
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


@dataclass
class Received:
    """What the webhook receiver got: Alertmanager's JSON payloads, in arrival order."""

    payloads: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, name: str, status: str, **labels: str) -> list[dict[str, Any]]:
        with self.lock:
            payloads = list(self.payloads)
        return [
            {**alert, "receiver": p.get("receiver")}
            for p in payloads
            for alert in p.get("alerts", ())
            if alert["labels"].get("alertname") == name
            and alert["status"] == status
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ]


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, Received]]:
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with received.lock:
                received.payloads.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The shipped Alertmanager route (deploy/prometheus/alertmanager.yaml), its receiver pointed at
    the loopback webhook and its timings shortened like the rules'."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_ROUTE.read_text())
    (route,) = config["route"]["routes"]
    for key in ("group_wait", "group_interval"):
        route[key] = "1s"
    config["route"]["group_wait"] = config["route"]["group_interval"] = "1s"
    for receiver in config["receivers"]:
        if receiver["name"] == route["receiver"]:
            (hook,) = receiver["webhook_configs"]
            hook["url"] = webhook_url
            hook["send_resolved"] = True
    return config


def _start(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def _ready(url: str, process: subprocess.Popen[bytes], log_path: Path, what: str) -> None:
    def check() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - http on loopback, built here
                return bool(resp.status == 200)
        except OSError:
            return False

    Cluster.wait_for(check, 30, f"{what} to be ready")


@contextmanager
def monitoring_stack(metrics_port: int, tmp: Path) -> Iterator[tuple[Prometheus, Received]]:
    """Alertmanager -> webhook receiver, and Prometheus scraping 127.0.0.1:metrics_port every second."""
    tmp.mkdir(parents=True, exist_ok=True)
    with webhook_receiver() as (webhook_url, received):
        am_port, prom_port = free_port(), free_port()
        am_config = tmp / "alertmanager.yaml"
        am_config.write_text(yaml.safe_dump(alertmanager_config(webhook_url)))
        am_log = tmp / "alertmanager.log"
        alertmanager = _start(
            [
                find_tool("alertmanager"),
                f"--config.file={am_config}",
                f"--storage.path={tmp / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",  # one instance: no gossip port
            ],
            am_log,
        )
        try:
            _ready(f"http://127.0.0.1:{am_port}/-/ready", alertmanager, am_log, "Alertmanager")
            rules = tmp / "rollback-verifier.rules.yaml"
            rules.write_text(scaled_rules(RULES.read_text()))
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            }
            prom_config = tmp / "prometheus.yaml"
            prom_config.write_text(yaml.safe_dump(config))
            prom_log = tmp / "prometheus.log"
            process = _start(
                [
                    find_tool("prometheus"),
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--rules.alert.resend-delay=1s",
                ],
                prom_log,
            )
            try:
                url = f"http://127.0.0.1:{prom_port}"
                _ready(f"{url}/-/ready", process, prom_log, "Prometheus")
                yield Prometheus(url, process, prom_log), received
            finally:
                stop_process(process)
        finally:
            stop_process(alertmanager)


def wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll Prometheus/the receiver (bounded, 0.5 s apart) for a positive signal."""
    return Cluster.wait_for(check, timeout, what, interval=0.5)


def since(start: float) -> str:
    """A PromQL range covering everything since `start` (for the dashboard's $__range)."""
    return f"{int(time.time() - start) + 5}s"
