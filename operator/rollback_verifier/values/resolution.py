"""Which source reads the values: the registry the runner and the detector both ask. A new source
(OCI, a ConfigMap) is a module implementing values/source.py's ValuesSource and one entry here."""

from __future__ import annotations

from collections.abc import Sequence

from rollback_verifier.values.git import GitSource, GitValuesReader
from rollback_verifier.values.helm_history import HelmHistorySource
from rollback_verifier.values.source import ReadValues, ValuesRequest, ValuesSource, ValuesUnavailable


def values_sources(reader: GitValuesReader | None) -> tuple[ValuesSource, ...]:
    """Every source, in the order they are asked whether they serve a `valuesFrom`."""
    return (HelmHistorySource(), GitSource(reader))


def read_values(sources: Sequence[ValuesSource], request: ValuesRequest) -> ReadValues:
    source = next((s for s in sources if s.serves(request.values_from)), None)
    if source is None:
        raise ValuesUnavailable("valuesFrom names no source this operator reads")
    return source.read(request)
