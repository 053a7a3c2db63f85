"""The one interface every values source implements, and what a read is asked and answers.

A source says which `valuesFrom` it serves and reads the values a revision deployed; the runner
(values/expectations.py) and the detector (controller/detector.py) both ask through
values/resolution.py, so a new source (OCI, a ConfigMap) is one module and one registration there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

from rollback_verifier.api.models import ValuesFrom
from rollback_verifier.core.credentials import GitCredentials
from rollback_verifier.core.detection import HistoryEntry
from rollback_verifier.core.plain import type_name


class ValuesUnavailable(Exception):
    """The values could not be read; the message (shown to users) names what was missing."""


@dataclass(frozen=True)
class ValuesRequest:
    """Everything a source may need to read the values of one deployed revision."""

    values_from: ValuesFrom | None  # None: the Application history entry's inline values (api.md)
    revision: str | None  # None: what the Application deployed last
    application: str = ""  # its name, for messages
    # The history entry to read, when the caller has judged one (the detector); otherwise the
    # Application's history, to find the entry of `revision` in.
    entry: HistoryEntry | None = None
    history: Sequence[HistoryEntry] = ()
    repo_url: str | None = None  # for a source in a repository: already checked by the trust rules
    credentials: GitCredentials | None = None


@dataclass(frozen=True)
class ReadValues:
    values: dict[str, Any]
    revision: str | None  # the revision they were read at
    description: str  # where they came from, for messages


class ValuesSource(Protocol):
    def serves(self, values_from: ValuesFrom | None) -> bool:
        """Whether this source reads the values `values_from` names."""

    def read(self, request: ValuesRequest) -> ReadValues:
        """The values; raises ValuesUnavailable with a message saying what is missing."""


def load_values_yaml(text: str, where: str) -> dict[str, Any]:
    """The YAML mapping in `text` (`where` names it in messages). Empty is `{}`, as Helm reads it."""
    try:
        loaded = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ValuesUnavailable(f"{where} is not valid YAML: {_yaml_problem(exc)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValuesUnavailable(f"{where} is not a YAML mapping (it holds a {type_name(loaded)})")
    return loaded


def _yaml_problem(exc: yaml.YAMLError | RecursionError) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
