"""The `rollback-verifier` command line.

Exit codes everywhere (EXIT_CODES_HELP): 0 success, 1 a failed verification or check, 2 bad usage or
bad input, 3 the cluster could not be reached or read. Pipelines gate on them, so each means one
thing. Each subcommand lives in its own module and registers itself with `add_parser(subparsers)`;
its handler returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# module name -> the subcommands it registers; imported lazily so `crds` never loads kopf.
SUBCOMMAND_MODULES = (
    "rollback_verifier.commands.crds",
    "rollback_verifier.commands.run",
    "rollback_verifier.commands.check",
    "rollback_verifier.lint_chart.command",
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CLUSTER = 0, 1, 2, 3

EXIT_CODES_HELP = (
    "exit codes: 0 success (check: verified), 1 verification failed (lint-chart: a finding at --fail-on), "
    "2 bad usage or bad input, 3 the cluster could not be reached or read "
    "(unreachable, unusable kubeconfig, credentials refused, access denied)"
)


class UsageError(Exception):
    """Bad usage or bad input: printed as one line, exit code 2."""


class ClusterError(Exception):
    """The cluster could not be reached or read: printed as one line, exit code 3."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rollback-verifier", description="Proves that a GitOps rollback really happened.", epilog=EXIT_CODES_HELP
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):  # a real import error inside it
                raise
            continue  # a subcommand not built yet
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(f"rollback-verifier {args.command}", lambda: args.handler(args))


def run_command(prog: str, command: Callable[[], int]) -> int:
    """Run a command; its UsageError or ClusterError becomes one line on stderr and that error's exit code."""
    try:
        return command()
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ClusterError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_CLUSTER
    except KeyboardInterrupt:
        return 130
