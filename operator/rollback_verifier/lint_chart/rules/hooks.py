"""Helm hooks: what runs on upgrade runs on rollback too."""

from __future__ import annotations

from rollback_verifier.lint_chart.model import (
    ChartSnapshot,
    Finding,
    Risk,
)
from rollback_verifier.lint_chart.rules.common import hook_resources, managed, origin

UPGRADE_HOOKS = frozenset({"pre-upgrade", "post-upgrade"})


HOOK_MITIGATION = (
    "Gate it behind a flag defaulting to false (design: templates avoid Helm hooks by default), and make "
    "what it does idempotent and backward compatible, so the old version still works after a rollback."
)


def hook_findings(old: ChartSnapshot, new: ChartSnapshot) -> list[Finding]:
    """Hooks (Helm, or Argo CD) that the new version renders and the old one did not."""
    old_hooks, old_managed = hook_resources(old), managed(old)
    findings = []
    for key, res in sorted(hook_resources(new).items()):
        if key in old_hooks:
            continue
        hooks = ", ".join(res.helm_hooks)
        what = f"Helm hook ({hooks})" if hooks else f"Argo CD hook ({res.argocd_hook})"
        was = "turned into a " if key in old_managed else "new "
        detail = "hooks are not part of the release, so a rollback neither deletes it nor undoes what it did"
        risk = Risk.MEDIUM
        if not new.renders_by_default(key):
            risk = Risk.LOW
            detail += "; it is off with the chart defaults (switched on by the given values files)"
        elif set(res.helm_hooks) & UPGRADE_HOOKS:
            risk = Risk.HIGH
            detail += "; it runs on every upgrade, so a one-way change it makes (a migration) survives a rollback"
        findings.append(
            Finding(
                "hook-added",
                risk,
                res.display(),
                f"{was}{what}{origin(res)}: {detail}",
                HOOK_MITIGATION,
                old=None,
                new=list(res.helm_hooks) or res.argocd_hook,
            )
        )
    return findings
