"""The rollback-safety rules: two rendered chart versions in, a list of findings out.

Pure functions, no helm, no git, no files. `lint(old, new)` runs every rule; each rule is also
callable on its own (the unit tests do). The rule names, risks and mitigations are documented in
docs/lint-chart.md.
"""

from collections.abc import Callable, Iterable

from rollback_verifier.lint_chart.model import ChartSnapshot, Finding, Risk
from rollback_verifier.lint_chart.rules.crds import crd_findings, crd_versions
from rollback_verifier.lint_chart.rules.defaults import default_value_findings
from rollback_verifier.lint_chart.rules.hooks import hook_findings
from rollback_verifier.lint_chart.rules.resources import flag_checks_needed, resource_findings

__all__ = [
    "FAMILIES",
    "crd_versions",
    "default_value_findings",
    "failing",
    "flag_checks_needed",
    "lint",
    "resource_findings",
    "sort_findings",
]


def _default_values(old: ChartSnapshot, new: ChartSnapshot) -> list[Finding]:
    return default_value_findings(old.values, new.values, new.user_values)


# Every rule family, one module each; a new family is a module and one entry here.
FAMILIES: tuple[Callable[[ChartSnapshot, ChartSnapshot], list[Finding]], ...] = (
    resource_findings,
    hook_findings,
    crd_findings,
    _default_values,
)


def lint(old: ChartSnapshot, new: ChartSnapshot) -> list[Finding]:
    """Every finding for the change from `old` to `new`, most risky first."""
    return sort_findings(finding for family in FAMILIES for finding in family(old, new))


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.risk, f.rule, f.resource, f.message))


def failing(findings: Iterable[Finding], fail_on: Risk) -> list[Finding]:
    return [finding for finding in findings if finding.risk >= fail_on]
