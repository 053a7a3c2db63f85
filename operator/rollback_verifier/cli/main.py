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

from rollback_verifier.errors import EXIT_CLUSTER, EXIT_CODES_HELP, EXIT_USAGE, ClusterError, UsageError

# module name -> the subcommands it registers; imported lazily so `crds` never loads kopf.
SUBCOMMAND_MODULES = (
    "rollback_verifier.cli.crds",
    "rollback_verifier.cli.run",
    "rollback_verifier.cli.check",
    "rollback_verifier.lint_chart.command",
)


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
