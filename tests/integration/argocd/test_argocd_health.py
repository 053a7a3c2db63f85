"""The Argo CD health check for RollbackVerification, run by a real Lua 5.1 interpreter (lupa).

Argo CD runs health checks in gopher-lua, a Lua 5.1 implementation; lupa.lua51 is the reference
Lua 5.1. The object is handed over the way Argo CD does it (util/lua `decodeValue`): maps and lists
become tables (lists 1-indexed), JSON null becomes nil.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from rollback_verifier.tools import ToolMissing, find_tool

REPO = Path(__file__).resolve().parents[3]
ARGOCD = REPO / "deploy" / "argocd"
CHECK_DIR = ARGOCD / "resource_customizations" / "gitops.proompteng.ai" / "RollbackVerification"
SCRIPT = CHECK_DIR / "health.lua"
SNIPPET = ARGOCD / "argocd-cm-health-snippet.yaml"
KEY = "resource.customizations.health.gitops.proompteng.ai_RollbackVerification"
CRD = REPO / "deploy" / "chart" / "crds" / "rollbackverifications.gitops.proompteng.ai.yaml"
HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Unknown", "Missing"}

CASES = yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text())["tests"]


def to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        table = runtime.table()
        for k, v in value.items():
            if v is not None:
                table[k] = to_lua(runtime, v)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for i, v in enumerate(value, start=1):
            table[i] = to_lua(runtime, v)
        return table
    return value


def run_health(script: str, obj: dict[str, Any]) -> dict[str, Any]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False, register_eval=False)
    runtime.globals().obj = to_lua(runtime, obj)
    result = runtime.execute(script)
    assert lua51.lua_type(result) == "table", f"the script returned {result!r}, not a table"
    out = dict(result.items())
    assert set(out) <= {"status", "message"}, out
    return out


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_test_yaml_case(case):
    obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text())
    got = run_health(SCRIPT.read_text(), obj)
    assert got == case["healthStatus"]
    assert got["status"] in HEALTH_STATUSES


def test_cases_cover_every_phase_and_every_testdata_file():
    files = {p.relative_to(CHECK_DIR).as_posix() for p in (CHECK_DIR / "testdata").glob("*.yaml")}
    assert files == {c["inputPath"] for c in CASES}, "a testdata file without a case, or a case without a file"
    crd = yaml.safe_load(CRD.read_text())
    status_props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    phases = {None}
    for c in CASES:
        status = yaml.safe_load((CHECK_DIR / c["inputPath"]).read_text()).get("status") or {}
        phases.add(status.get("phase"))
        for field in ("phase", "reason", "detectedBy"):
            if field in status:
                assert status[field] in status_props[field]["enum"], (c["inputPath"], field)
        assert set(status) <= set(status_props), c["inputPath"]
    assert phases == {None, *status_props["phase"]["enum"]}
    assert {c["healthStatus"]["status"] for c in CASES} == {"Progressing", "Healthy", "Degraded"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            {"phase": "Failed", "reason": "TargetNotFound", "message": ""},
            {"status": "Degraded", "message": "TargetNotFound"},
        ),
        ({"phase": "Failed"}, {"status": "Degraded", "message": "Rollback verification failed"}),
        ({"phase": "Failed", "message": "boom"}, {"status": "Degraded", "message": "boom"}),
        ({"phase": "Running", "message": ""}, {"status": "Progressing", "message": "Verification Running"}),
        (
            {"phase": ""},
            {"status": "Progressing", "message": "Waiting for rollback-verifier to start the verification"},
        ),
        ({"phase": "Exploded"}, {"status": "Unknown", "message": "Unknown RollbackVerification phase Exploded"}),
        (None, {"status": "Progressing", "message": "Waiting for rollback-verifier to start the verification"}),
    ],
    ids=[
        "empty-message",
        "no-reason-no-message",
        "message-only",
        "running-empty-message",
        "empty-phase",
        "unknown-phase",
        "null-status",
    ],
)
def test_edge_cases(status, expected):
    obj = {"apiVersion": "gitops.proompteng.ai/v1alpha1", "kind": "RollbackVerification", "status": status}
    assert run_health(SCRIPT.read_text(), obj) == expected


def test_snippet_carries_exactly_the_script():
    snippet = yaml.safe_load(SNIPPET.read_text())
    assert snippet["apiVersion"] == "v1"
    assert snippet["kind"] == "ConfigMap"
    assert snippet["metadata"]["name"] == "argocd-cm"
    assert set(snippet["data"]) == {KEY}
    assert snippet["data"][KEY] == SCRIPT.read_text(), (
        "argocd-cm-health-snippet.yaml drifted from health.lua: run python3 deploy/argocd/render_argocd_cm_snippet.py"
    )


def test_snippet_generator_check_agrees():
    proc = subprocess.run(
        [sys.executable, str(ARGOCD / "render_argocd_cm_snippet.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_snippet_script_behaves_like_the_file():
    script = yaml.safe_load(SNIPPET.read_text())["data"][KEY]
    for case in CASES:
        obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text())
        assert run_health(script, obj) == case["healthStatus"]


def test_postsync_hook_example():
    docs = [d for d in yaml.safe_load_all((ARGOCD / "examples" / "postsync-hook.yaml").read_text()) if d]
    assert len(docs) == 1
    rbv = docs[0]
    assert rbv["apiVersion"] == "gitops.proompteng.ai/v1alpha1"
    assert rbv["kind"] == "RollbackVerification"
    meta = rbv["metadata"]
    assert meta["namespace"] == "agents"
    assert meta["annotations"] == {
        "argocd.argoproj.io/hook": "PostSync",
        "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
    }
    assert meta["labels"]["gitops.proompteng.ai/detected-by"] == "PostSyncHook"
    assert rbv["spec"]["application"] == {"name": "agents", "namespace": "argocd"}
    assert "status" not in rbv
    crd = yaml.safe_load(CRD.read_text())
    spec_props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert set(rbv["spec"]) <= set(spec_props)
    assert [t["name"] for t in rbv["spec"]["targets"]] == ["agents", "agents-controllers"]
    # Progressing as soon as Argo CD creates it: the hook then waits for the operator's verdict.
    assert run_health(SCRIPT.read_text(), rbv)["status"] == "Progressing"


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_test_yaml_case_in_real_argo_cd(case, tmp_path):
    """The same cases through Argo CD's own Lua runtime and settings loader (`argocd admin settings
    resource-overrides health`), with the committed argocd-cm snippet as argocd-cm."""
    try:
        argocd = find_tool("argocd")
    except ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    command = ["admin", "settings", "resource-overrides", "health", str(CHECK_DIR / case["inputPath"])]
    proc = subprocess.run(
        [argocd, *command, "--argocd-cm-path", str(SNIPPET)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.strip().splitlines() if ": " in line)
    assert {"status": lines.get("STATUS"), "message": lines.get("MESSAGE")} == case["healthStatus"], proc.stdout
