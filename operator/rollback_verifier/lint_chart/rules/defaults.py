"""Default values: a changed default changes what a rollback renders for users who did not set it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rollback_verifier.lint_chart import gating
from rollback_verifier.lint_chart.model import (
    Finding,
    Risk,
)
from rollback_verifier.lint_chart.rules.common import show


def flatten(values: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """`{a: {b: 1}, c: []}` -> `{("a", "b"): 1, ("c",): []}`; lists and empty maps are leaves."""
    flat: dict[tuple[str, ...], Any] = {}
    for key, value in values.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


DEFAULTS_MITIGATION = (
    "Document the default change (chart changelog / upgrade notes) and set the value explicitly in the "
    "GitOps values, so a rollback of the chart does not silently bring the old default back."
)


def default_value_findings(
    old_values: Mapping[str, Any], new_values: Mapping[str, Any], user_values: Mapping[str, Any]
) -> list[Finding]:
    """Every default in values.yaml that changed, appeared or disappeared: information."""
    old_flat, new_flat = flatten(old_values), flatten(new_values)

    def has_children(flat: Mapping[tuple[str, ...], Any], path: tuple[str, ...]) -> bool:
        return any(other[: len(path)] == path and len(other) > len(path) for other in flat)

    findings: list[Finding] = []
    for path in sorted(set(old_flat) | set(new_flat)):
        key = ".".join(path)
        pinned = gating.is_set(user_values, path)
        if path in old_flat and path in new_flat:
            before, after = old_flat[path], new_flat[path]
            if before == after:
                continue
            findings.append(
                Finding(
                    "default-value-changed",
                    Risk.INFO,
                    f"values {key}",
                    f"default changed {show(before, 50)} -> {show(after, 50)}: a rollback silently brings "
                    f"back {show(before, 50)}"
                    + (" (the given values files set it: this install is not affected)" if pinned else ""),
                    DEFAULTS_MITIGATION,
                    old=before,
                    new=after,
                )
            )
        elif path in new_flat:
            if new_flat[path] == {} and has_children(old_flat, path):
                continue
            findings.append(
                Finding(
                    "default-value-added",
                    Risk.INFO,
                    f"values {key}",
                    f"new value, default {show(new_flat[path], 50)}: after a rollback the chart ignores it"
                    + (" (the given values files set it: that setting stops working)" if pinned else ""),
                    DEFAULTS_MITIGATION,
                    old=None,
                    new=new_flat[path],
                )
            )
        else:
            if old_flat[path] == {} and has_children(new_flat, path):
                continue
            findings.append(
                Finding(
                    "default-value-removed",
                    Risk.INFO,
                    f"values {key}",
                    f"value removed (default was {show(old_flat[path], 50)}): a rollback brings it "
                    "back with its old default" + (" (the given values files still set it)" if pinned else ""),
                    DEFAULTS_MITIGATION,
                    old=old_flat[path],
                    new=None,
                )
            )
    return findings
