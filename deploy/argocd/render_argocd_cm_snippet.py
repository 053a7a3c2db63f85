#!/usr/bin/env python3
"""Writes argocd-cm-health-snippet.yaml from the one health check script.

    python3 deploy/argocd/render_argocd_cm_snippet.py          # rewrite the snippet
    python3 deploy/argocd/render_argocd_cm_snippet.py --check  # exit 1 if it drifted

tests/integration/argocd/ checks the same thing, so an edit of health.lua that is not carried over
fails the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "resource_customizations" / "gitops.proompteng.ai" / "RollbackVerification" / "health.lua"
SNIPPET = HERE / "argocd-cm-health-snippet.yaml"
KEY = "resource.customizations.health.gitops.proompteng.ai_RollbackVerification"

HEADER = f"""\
# Generated from resource_customizations/gitops.proompteng.ai/RollbackVerification/health.lua by
# render_argocd_cm_snippet.py. Do not edit: edit health.lua and rerun it.
#
# The Argo CD health check for RollbackVerification, as an argocd-cm entry. Merge it into argocd-cm
# (it keeps the other keys):
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd-cm-health-snippet.yaml
# or, with the argo-cd Helm chart, put the script under configs.cm."{KEY}".
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  {KEY}: |
"""


def render() -> str:
    script = SCRIPT.read_text()
    if not script.endswith("\n") or script.endswith("\n\n"):
        raise SystemExit(f"{SCRIPT} must end with exactly one newline")
    body = "".join(f"    {line}" if line.strip() else "\n" for line in script.splitlines(keepends=True))
    return HEADER + body


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if SNIPPET.read_text() != text:
            print(f"{SNIPPET} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    SNIPPET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
