"""Plain-data helpers every layer shares, so that they cannot drift apart: the timestamps Kubernetes
and Argo CD write (RFC 3339, `...Z`), and the YAML name of a value's type for messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

_KUBERNETES_TIME = "%Y-%m-%dT%H:%M:%SZ"


def format_time(timestamp: float) -> str:
    """A Unix time as Kubernetes writes it (metav1.Time): seconds, UTC, `Z`."""
    return datetime.fromtimestamp(timestamp, UTC).strftime(_KUBERNETES_TIME)


def parse_time(value: str) -> float:
    """The Unix time of an RFC 3339 timestamp (`2026-01-02T03:04:05Z`, fractions and offsets too); a
    time without an offset is UTC, as Kubernetes means it. Raises ValueError on anything else."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_time_or_none(value: Any) -> float | None:
    """parse_time for data read from others' objects: None when it is not a timestamp."""
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def type_name(value: Any) -> str:
    """What a value is, in YAML's words (a `dict` is a mapping, a `str` a string), for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, Sequence):
        return "list"
    return type(value).__name__
