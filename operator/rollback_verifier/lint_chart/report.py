"""Findings as a readable table or as JSON."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from typing import Any

from rollback_verifier.lint_chart.model import Finding, Risk

_HEADERS = ("RISK", "RULE", "RESOURCE", "MESSAGE")


def summary(findings: Sequence[Finding], fail_on: Risk) -> dict[str, Any]:
    failing = [finding for finding in findings if finding.risk >= fail_on]
    return {
        "total": len(findings),
        "by_risk": {risk.label: sum(1 for f in findings if f.risk == risk) for risk in reversed(Risk)},
        "fail_on": fail_on.label,
        "failing": len(failing),
        "exit_code": 1 if failing else 0,
    }


def summary_line(findings: Sequence[Finding], fail_on: Risk) -> str:
    data = summary(findings, fail_on)
    counts = ", ".join(f"{count} {label}" for label, count in data["by_risk"].items() if count)
    head = f"{data['total']} finding{'' if data['total'] == 1 else 's'}" + (f" ({counts})" if counts else "")
    if data["failing"]:
        return f"{head}; {data['failing']} at or above {fail_on.label}: FAIL (exit 1)"
    return f"{head}; none at or above {fail_on.label}: OK (exit 0)"


MIN_MESSAGE_WIDTH = 40  # below this, a narrow terminal gets long lines rather than one word per line


def table(findings: Sequence[Finding], fail_on: Risk, *, old: str, new: str, width: int | None = None) -> str:
    """Aligned columns; with `width` (the terminal's), messages and mitigations wrap under their column."""
    lines = [f"lint-chart: {old} -> {new}", ""]
    if findings:
        rows = [(f.risk.label, f.rule, f.resource, f.message) for f in findings]
        widths = [max(len(row[i]) for row in [_HEADERS, *rows]) for i in range(3)]
        indent = " " * (sum(widths) + 2 * 3)
        message_width = max(MIN_MESSAGE_WIDTH, width - len(indent)) if width else None

        def wrapped(text: str) -> list[str]:
            if message_width is None:
                return [text]
            return textwrap.wrap(text, message_width, break_on_hyphens=False, break_long_words=False) or [""]

        def row_lines(cells: Sequence[str]) -> list[str]:
            first, *rest = wrapped(cells[3])
            head = "  ".join(cell.ljust(w) for cell, w in zip(cells[:3], widths, strict=True))
            return [f"{head}  {first}".rstrip(), *(indent + more for more in rest)]

        lines += row_lines(_HEADERS)
        for finding, row in zip(findings, rows, strict=True):
            lines += row_lines(row)
            lines += [indent + part for part in wrapped(f"mitigation: {finding.mitigation}")]
        lines.append("")
    else:
        lines += ["No changes that matter for a rollback.", ""]
    lines.append(summary_line(findings, fail_on))
    return "\n".join(lines) + "\n"


def as_json(findings: Sequence[Finding], fail_on: Risk, *, old: dict[str, Any], new: dict[str, Any]) -> str:
    document = {
        "old": old,
        "new": new,
        "findings": [finding.to_json() for finding in findings],
        "summary": summary(findings, fail_on),
    }
    return json.dumps(document, indent=2) + "\n"
