"""The markdown summary of bench/results/latest.json (ready to paste into the README)."""

from __future__ import annotations

from typing import Any


def _ms(value: Any) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f} ms"


def _mb(kb: Any) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MiB"


def _p(s: dict[str, Any], key: str) -> str:
    return _ms(s.get(key)) if s.get("n") else "n/a"


def _breakdown(b: dict[str, int], n: int) -> str:
    if not b:
        return "none"
    return ", ".join(f"{count / n:.1f} {what}" for what, count in b.items())


def _latency(r: dict[str, Any]) -> list[str]:
    s = r["summary"]
    n = s["verdict_minus_pods_ready"].get("n", 0)
    h = r.get("operator_histogram") or {}
    out = [
        f"### Verdict latency vs `kubectl rollout status` ({n} rollbacks, A<->B, 2 Deployments x 2 replicas)",
        "",
        "| from (seen by the bench's watches) | to | p50 | p99 | max |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("last pod of the last target Ready", "verdict (RollbackVerification Succeeded)", "verdict_minus_pods_ready"),
        ("last pod of the last target Ready", "`kubectl rollout status` done (later of 2)", "kubectl_minus_pods_ready"),
        ("both Deployments' status complete", "verdict", "verdict_minus_complete"),
        ("both Deployments' status complete", "`kubectl rollout status` done", "kubectl_minus_complete"),
        ("`kubectl rollout status` done", "verdict", "verdict_minus_kubectl"),
        ("`kubectl rollout resume` (trigger)", "last pod of the last target Ready", "trigger_to_pods_ready"),
    ]
    for src, dst, key in rows:
        out.append(f"| {src} | {dst} | {_p(s[key], 'p50')} | {_p(s[key], 'p99')} | {_p(s[key], 'max')} |")
    if h.get("count"):
        buckets = ", ".join(f"<={le}: {int(v)}" for le, v in h["buckets"].items())
        out += [
            "",
            f"Operator's `rollback_verification_verdict_latency_seconds`: count {int(h['count'])}, "
            f"sum {h['sum']:.3f} s (mean {_ms(h['sum'] / h['count'])}); cumulative buckets {buckets}.",
        ]
    vw = r.get("verdict_writes")
    if vw and vw["samples"]:
        c, w = vw["complete_seen_to_verdict_patch_received"], vw["verdict_patch_server_seconds"]
        out += [
            "",
            "Where the time between the Deployments' completion and the verdict goes (audit log): completion seen "
            f"-> the operator's verdict patch received by the API server p50 {_p(c, 'p50')}, p99 {_p(c, 'p99')}; "
            f"that patch in the API server p50 {_p(w, 'p50')}, p99 {_p(w, 'p99')}; a progress write was still in "
            f"flight at completion in {vw['progress_write_in_flight_at_complete']} of {len(vw['samples'])} rollbacks; "
            f"status writes per verification: mean {vw['status_writes']['mean']:.1f}, "
            f"{vw['writes_after_pods_ready']['mean']:.1f} of them after the last pod was Ready.",
        ]
    idle = r.get("operator_requests_idle")
    if idle:
        whole = r.get("operator_requests_whole_run") or {}
        gaps = whole.get("seconds_between_application_lists") or []
        crd = "installed" if r.get("application_crd_installed") else "NOT installed"
        out += [
            "",
            f"Idle, {idle['seconds']:.0f} s before the first verification (default settings; Argo CD's Application "
            f"CRD {crd}): {idle['total']} requests ({_breakdown(idle['breakdown'], 1)})"
            + (
                f"; Application lists over the whole run every {sorted(gaps)[len(gaps) // 2]:.0f} s (median)"
                if gaps
                else ""
            )
            + ".",
        ]
    req = r.get("operator_requests_per_verification")
    if req:
        rs = req["summary"]
        out += [
            "",
            f"Operator API requests per manual verification (creation to verdict): mean {rs['mean']:.1f} "
            f"(min {rs['min']:.0f}, max {rs['max']:.0f}): {_breakdown(req['breakdown_total'], rs['n'])}.",
        ]
    return out


def _memory(r: dict[str, Any]) -> list[str]:
    out = [
        "### Operator memory with concurrent verifications (all Running)",
        "",
        "| scenario | Deployments / Pods | RSS idle | RSS all Running | RSS +10 s | VmHWM | CPU s to all Running |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "agents": "{n} verifications of the agents app (git values)",
        "deployments": "{n} verifications of {n} Deployments (explicit images)",
    }
    for key, label in labels.items():
        s = r.get(key)
        if not s:
            continue
        cpu = s["all_running"]["cpu_seconds"] - s["idle"]["cpu_seconds"]
        out.append(
            f"| {label.format(n=s['verifications'])} | {s['deployments']} / {s['pods']} | {_mb(s['idle']['VmRSS'])} "
            f"| {_mb(s['all_running']['VmRSS'])} | {_mb(s['all_running_plus_10s']['VmRSS'])} "
            f"| {_mb(s['all_running_plus_10s']['VmHWM'])} | {cpu:.2f} |"
        )
    return out


def _detection(r: dict[str, Any]) -> list[str]:
    s = r["summary"]
    n = s["history_seen_to_created_seen"].get("n", 0)
    out = [
        f"### Detection latency and verdict vs Argo CD health ({n} real `argocd app rollback`s, ArgoCDHistory)",
        "",
        "| from | to | p50 | p99 | max |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("Argo CD's history entry seen (watch)", "RollbackVerification ADDED seen", "history_seen_to_created_seen"),
        (
            "API server: Argo CD's write complete (audit)",
            "API server: operator's create received",
            "server_history_write_to_create",
        ),
        ("`argocd app rollback` started", "history entry seen", "command_to_history_seen"),
        ("`argocd app rollback` started", "the CLI exits", "command_to_cli_exit"),
        ("`argocd app rollback` started", "Argo CD reports the app Healthy", "command_to_argocd_healthy"),
        ("`argocd app rollback` started", "the verdict (Succeeded) seen", "command_to_verdict_seen"),
        ("Argo CD reports Healthy", "the verdict seen", "verdict_after_argocd_healthy"),
    ]
    for src, dst, key in rows:
        if key in s:
            out.append(f"| {src} | {dst} | {_p(s[key], 'p50')} | {_p(s[key], 'p99')} | {_p(s[key], 'max')} |")
    ratio = s.get("verdict_to_healthy_ratio") or {}
    if ratio.get("n"):
        out += [
            "",
            f"Ratio (command -> verdict) / (command -> Argo CD Healthy): p50 {ratio['p50']:.2f}, "
            f"p99 {ratio['p99']:.2f}, max {ratio['max']:.2f}.",
        ]
    api = r.get("api_requests")
    if api:
        pr, pf = api["per_rollback"], api["per_forward_sync"]
        prn, pfn = pr["summary"].get("n", 0), pf["summary"].get("n", 0)
        out += [
            "",
            "### Operator API requests (kube-apiserver audit log, the operator's user agents)",
            "",
            "| window | requests | what |",
            "|---|---|---|",
            f"| idle, {api['idle_before']['seconds']:.0f} s before any sync | {api['idle_before']['total']} "
            f"| {_breakdown(api['idle_before']['breakdown'], 1)} |",
            f"| per detected-and-verified rollback (n={prn}) | {pr['summary'].get('mean', 0):.1f} mean, "
            f"{pr['summary'].get('min', 0):.0f}-{pr['summary'].get('max', 0):.0f} "
            f"| {_breakdown(pr['breakdown_total'], max(prn, 1))} |",
            f"| per forward sync, not a rollback (n={pfn}) | {pf['summary'].get('mean', 0):.1f} mean "
            f"| {_breakdown(pf['breakdown_total'], max(pfn, 1))} |",
            f"| idle, {api['idle_after']['seconds']:.0f} s after the last rollback | {api['idle_after']['total']} "
            f"| {_breakdown(api['idle_after']['breakdown'], 1)} |",
            f"| operator start-up (until 5 s after /readyz) | {api['startup']['total']} "
            f"| {_breakdown(api['startup']['breakdown'], 1)} |",
        ]
        watches = api.get("watch_requests") or []
        if watches:
            out += [
                "",
                "Watch requests (s after the operator started): "
                + ", ".join(f"{t:.0f} {what}" for t, what in watches)
                + ".",
            ]
    return out


def _writes(r: dict[str, Any]) -> list[str]:
    if "skipped" in r:
        return ["### Status writes under load", "", f"skipped: {r['skipped']}"]
    per = r["per_verification"]
    return [
        "### Status writes under load",
        "",
        f"{r['verifications']} verifications of one rollback at once ({r['phases']}): {r['status_patches']} status "
        f"patches, {r['mean_per_verification']} per verification (min {per['min']:.0f}, max {per['max']:.0f}), "
        f"{r['conflicts']} of them conflicts (409).",
    ]


def _scale_row(label: str, v: dict[str, Any]) -> str:
    first = v.get("first_verdict_seconds")
    shown = f"{first} s" if first is not None else f"none after {v.get('no_verdict_after_seconds')} s"
    cells = [label, shown, f"{v.get('ready_seconds')} s", f"{v.get('rss_mib_20s_later')} MiB"]
    for key in ("churn_unverified_namespace", "churn_verified_namespace"):
        c = v.get(key)
        cells.append(f"{c['cpu_ms_per_event']} ms ({c['events']} events)" if c else "-")
    return "| " + " | ".join(cells) + " |"


def _scale(r: dict[str, Any]) -> list[str]:
    return [
        f"### Scale: cluster-wide, {r['deployments']} Deployments / {r['pods']} KWOK pods"
        f" (set up in {r['setup_seconds']} s)",
        "",
        "| operator | first verdict after start | /readyz ok after | RSS | CPU per event, unverified namespace "
        "| CPU per event, verified namespace |",
        "|---|---|---|---|---|---|",
        _scale_row(f"before ({r['before_revision']}, kopf indexes)", r["before"]),
        _scale_row("after (informers per verified namespace)", r["after"]),
    ]


def _destinations(r: dict[str, Any]) -> list[str]:
    lines = [
        "### Destination clusters (cluster Secrets for one spoke under K names: one connection each)",
        "",
        "| clusters | RSS idle | RSS, all connected | threads | spoke watches "
        "| cold verdict p50 / max | warm verdict p50 / max |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        idle, on = run["idle"], run["connected"]
        cold, warm = run["cold_verdict_seconds"], run["warm_verdict_seconds"]
        lines.append(
            f"| {run['clusters']} | {_mb(idle['VmRSS'])} | {_mb(on['VmRSS'])} | {on['Threads']} "
            f"| {on['spoke_watches']} | {cold['p50']:.2f} s / {cold['max']:.2f} s "
            f"| {warm['p50']:.2f} s / {warm['max']:.2f} s |"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    env = results.get("environment", {})
    lines = [
        f"## Benchmarks ({env.get('date', '?')}, {env.get('cpus', '?')} CPUs, {env.get('memory_gib', '?')} GiB, "
        f"local cluster: real control plane + KWOK nodes; bench, operator and cluster share the machine)",
        "",
    ]
    sections = {
        "latency": _latency,
        "memory": _memory,
        "detection": _detection,
        "writes": _writes,
        "scale": _scale,
        "destinations": _destinations,
    }
    for name, render in sections.items():
        r = results.get("benchmarks", {}).get(name)
        if r is None:
            continue
        if "error" in r:
            lines += [f"### {name}: FAILED", "", f"`{r['error']}`"]
        else:
            try:
                lines += render(r)
            except (KeyError, TypeError, ZeroDivisionError) as exc:
                lines += [f"### {name}: no summary ({type(exc).__name__}: {exc}); see the raw results"]
        lines.append("")
    return "\n".join(lines)
