"""The inline Helm values of an Argo CD history entry's source, as Argo CD's repo-server reads them."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rollback_verifier.api.models import ValuesFrom
from rollback_verifier.core.detection import HistoryEntry
from rollback_verifier.core.plain import type_name
from rollback_verifier.values.source import ReadValues, ValuesRequest, ValuesUnavailable, load_values_yaml

logger = logging.getLogger(__name__)


def values_from_helm_source(source: Mapping[str, Any]) -> dict[str, Any]:
    """The inline Helm values of an Argo CD Application source (e.g. `status.history[].source`).

    Argo CD's precedence is `parameters > valuesObject > values > valueFiles`, and its repo-server
    (`ApplicationSourceHelm.ValuesYAML`) uses `valuesObject` INSTEAD of `values` when both are set:
    they are not merged. `parameters` (`--helm-set`) are applied on top, typed as `helm --set`
    types them (true/false, null, integers; `forceString` keeps text); a parameter with a list
    index (`a[0].b`) is skipped. `valueFiles` cannot be read from the source: use valuesFrom.git.

    Raises ValuesUnavailable when the source has none of these, or when they do not parse.
    """
    helm = source.get("helm") if isinstance(source, Mapping) else None
    if not isinstance(helm, Mapping):
        raise ValuesUnavailable("the history entry's source has no helm values")
    values_object = helm.get("valuesObject")
    values_text = helm.get("values")
    parameters = helm.get("parameters") or []

    values: dict[str, Any] | None = None
    if values_object is not None:
        if not isinstance(values_object, Mapping):
            raise ValuesUnavailable(
                f"the history entry's source.helm.valuesObject is a {type_name(values_object)}, not a mapping"
            )
        values = copy.deepcopy(dict(values_object))
    elif values_text not in (None, ""):
        if not isinstance(values_text, str):
            raise ValuesUnavailable(
                f"the history entry's source.helm.values is a {type_name(values_text)}, not a YAML string"
            )
        values = load_values_yaml(values_text, "the history entry's source.helm.values")

    if not isinstance(parameters, list):
        raise ValuesUnavailable("the history entry's source.helm.parameters is not a list")
    if values is None and not parameters:
        detail = " (its valueFiles are read with valuesFrom.git)" if helm.get("valueFiles") else ""
        raise ValuesUnavailable(f"the history entry's source has no helm values{detail}")
    values = values if values is not None else {}
    for parameter in parameters:
        _apply_helm_parameter(values, parameter)
    return values


def _apply_helm_parameter(values: dict[str, Any], parameter: Any) -> None:
    if not isinstance(parameter, Mapping) or not isinstance(parameter.get("name"), str):
        raise ValuesUnavailable(f"the history entry has a malformed helm parameter: {parameter!r:.100}")
    name: str = parameter["name"]
    if "[" in name or not name:
        logger.debug("helm parameter %r not applied: list indexes are not supported", name)
        return
    raw = parameter.get("value")
    text = "" if raw is None else str(raw)
    value = text if parameter.get("forceString") else _helm_set_typed(text)
    # `a\.b.c` sets key "a.b" then "c", as helm --set reads it.
    path = [part.replace("\0", ".") for part in name.replace("\\.", "\0").split(".")]
    node = values
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _helm_set_typed(text: str) -> Any:
    """The value `helm --set` makes of `text` (strvals.typedVal)."""
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered == "null":
        return None
    if text == "0":
        return 0
    if text and text[0] != "0" and re.fullmatch(r"[+-]?[0-9]+", text):
        number = int(text)
        if -(2**63) <= number < 2**63:
            return number
    return text


def history_entry(history: Sequence[HistoryEntry], revision: str | None, app_name: str) -> HistoryEntry:
    """The newest entry of `revision` (None: the newest entry)."""
    if not history:
        raise ValuesUnavailable(f"the Application {app_name} has no sync history to read Helm values from")
    if revision is None:
        return history[-1]
    found = next((e for e in reversed(history) if e.revision == revision), None)
    if found is None:
        raise ValuesUnavailable(f"the Application {app_name} has no history entry for revision {revision}")
    return found


class HelmHistorySource:
    """valuesFrom.applicationHelmValues (the default): the history entry's inline Helm values."""

    def serves(self, values_from: ValuesFrom | None) -> bool:
        return values_from is None or bool(values_from.applicationHelmValues)

    def read(self, request: ValuesRequest) -> ReadValues:
        entry = request.entry or history_entry(request.history, request.revision, request.application)
        values = values_from_helm_source(entry.source)
        return ReadValues(values, entry.revision, f"Helm values of history entry {entry.id}")
