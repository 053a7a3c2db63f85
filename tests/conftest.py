"""Shared fixtures: real external tools, found the way the product finds them."""

from __future__ import annotations

import pytest

import tests.properties  # noqa: F401 - registers the hypothesis profiles before --hypothesis-profile is read
from rollback_verifier.tools import ToolMissing, find_tool


def _tool(name: str) -> str:
    try:
        return find_tool(name)
    except ToolMissing as exc:
        # Never a skip: a missing tool is a broken environment, and the run must say so.
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return _tool("helm")


@pytest.fixture(scope="session")
def git_bin() -> str:
    return _tool("git")


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    return _tool("promtool")


@pytest.fixture(scope="session")
def argocd_bin() -> str:
    return _tool("argocd")
