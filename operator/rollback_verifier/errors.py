"""The two errors every command and the Kubernetes client raise, and the exit codes they become.

Here rather than in cli/main.py so that the subcommands (and the client) never import the module that
loads them. Exit codes everywhere: 0 success, 1 a failed verification or check, 2 bad usage or bad
input, 3 the cluster could not be reached or read. Pipelines gate on them, so each means one thing.
"""

from __future__ import annotations

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
