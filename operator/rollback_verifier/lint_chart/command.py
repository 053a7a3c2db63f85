"""`rollback-verifier lint-chart`: compares two versions of a chart for rollback safety.

    rollback-verifier lint-chart NEW_CHART (--from OLD_CHART | --from-ref REF)
        [-f VALUES ...] [--release-name NAME] [--namespace NS]
        [--kube-version VERSION] [--api-versions GROUP/VERSION ...]
        [--output table|json] [--fail-on info|low|medium|high|very-high]

Exit codes: 0 nothing at or above --fail-on, 1 something is, 2 bad usage or a chart that does not
render (helm's error on one line).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

from rollback_verifier.errors import EXIT_FAILED, EXIT_OK, UsageError
from rollback_verifier.lint_chart import git as git_ref
from rollback_verifier.lint_chart import report, rules
from rollback_verifier.lint_chart.model import RISK_LABELS, ChartSnapshot, InputError, Risk
from rollback_verifier.lint_chart.render import (
    RenderOptions,
    add_flag_renders,
    chart_folder,
    check_values_files,
    load_snapshot,
    user_values,
)
from rollback_verifier.tools import ToolMissing, find_tool

DESCRIPTION = """\
Compares two versions of a helm chart, each rendered with real helm and the same values files,
and reports every change that makes a rollback unsafe, with its risk, the rule that matched and
the mitigation: new resources not gated behind a flag defaulting to false, removed or renamed
workloads, changed selectors and other immutable fields, breaking CRD changes, CRDs moved between
crds/ and templates/, new Helm hooks, and changed default values (information).
Exit codes: 0 nothing at or above --fail-on, 1 something is, 2 bad usage or a chart that does not render.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "lint-chart",
        help="check that a chart change can be rolled back safely",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("chart", metavar="NEW_CHART", type=Path, help="the new chart: a folder or a .tgz")
    old = parser.add_mutually_exclusive_group(required=True)
    old.add_argument("--from", dest="from_chart", metavar="OLD_CHART", type=Path, help="the old chart")
    old.add_argument(
        "--from-ref",
        metavar="REF",
        help="the old chart is NEW_CHART's path as committed at this git ref (branch, tag, commit)",
    )
    parser.add_argument(
        "-f",
        "--values",
        metavar="VALUES",
        type=Path,
        action="append",
        default=[],
        help="a values file for both renders, like helm's -f (repeatable, later files win)",
    )
    parser.add_argument(
        "--release-name", metavar="NAME", default="release-name", help="release name (default: %(default)s)"
    )
    parser.add_argument("--namespace", metavar="NS", default="default", help="release namespace (default: %(default)s)")
    parser.add_argument(
        "--kube-version",
        metavar="VERSION",
        help="Kubernetes version for .Capabilities.KubeVersion and the chart's kubeVersion check "
        "(helm template --kube-version; default: helm's own)",
    )
    parser.add_argument(
        "--api-versions",
        metavar="GROUP/VERSION",
        action="append",
        default=[],
        help="an API version for .Capabilities.APIVersions (helm template --api-versions; repeatable)",
    )
    parser.add_argument(
        "--output", "-o", choices=("table", "json"), default="table", help="output format (default: table)"
    )
    parser.add_argument(
        "--fail-on",
        choices=RISK_LABELS,
        default=Risk.HIGH.label,
        help="exit 1 when a finding is at or above this risk (default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def _tool(name: str) -> str:
    try:
        return find_tool(name)
    except ToolMissing as exc:
        raise UsageError(str(exc)) from None


def _load(folder: Path, options: RenderOptions, *, label: str) -> ChartSnapshot:
    """Render a chart; errors name it as the user did (not as a temporary folder)."""
    try:
        return load_snapshot(folder, options)
    except InputError as exc:
        raise InputError(str(exc).replace(str(folder), label)) from None


def run(args: argparse.Namespace) -> int:
    fail_on = Risk.parse(args.fail_on)
    values_files = tuple(args.values)
    new_chart: Path = args.chart
    if args.from_ref is not None:
        old_label = {"chart": str(new_chart), "ref": args.from_ref}
        old_text = f"{new_chart} at {args.from_ref}"
    else:
        old_label = {"chart": str(args.from_chart), "ref": None}
        old_text = str(args.from_chart)
    new_label = {"chart": str(new_chart), "ref": None}
    try:
        check_values_files(values_files)
        user_values(values_files)  # a broken values file: say so before helm does
        options = RenderOptions(
            helm=_tool("helm"),
            release=args.release_name,
            namespace=args.namespace,
            values_files=values_files,
            kube_version=args.kube_version,
            api_versions=tuple(args.api_versions),
        )
        with ExitStack() as stack:
            new_dir = stack.enter_context(chart_folder(new_chart))
            if args.from_ref is not None:
                old_source = stack.enter_context(git_ref.chart_at_ref(_tool("git"), new_chart, args.from_ref))
            else:
                old_source = args.from_chart
            old_dir = stack.enter_context(chart_folder(old_source))
            old = _load(old_dir, options, label=old_text)
            new = _load(new_dir, options, label=str(new_chart))
            new = add_flag_renders(new, new_dir, options, rules.flag_checks_needed(old, new))
    except InputError as exc:
        raise UsageError(str(exc)) from None
    findings = rules.lint(old, new)
    if args.output == "json":
        sys.stdout.write(report.as_json(findings, fail_on, old=old_label, new=new_label))
    else:
        sys.stdout.write(report.table(findings, fail_on, old=old_text, new=str(new_chart), width=_terminal_width()))
    return EXIT_FAILED if rules.failing(findings, fail_on) else EXIT_OK


def _terminal_width() -> int | None:
    """$COLUMNS, else the terminal's width; None (no wrapping) when the output is not a terminal."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None
