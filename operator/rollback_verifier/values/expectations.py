"""Which image each target must run: from explicit images, or from the reverted values (git at a
revision, or the Argo CD history entry's inline Helm values). Blocking (git), so the operator calls
it from a worker thread; the decisions it makes are plain functions of their inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from rollback_verifier.api.models import Reason, RollbackVerificationSpec, Target
from rollback_verifier.core.credentials import GitCredentials
from rollback_verifier.core.images import (
    ImageRef,
    InvalidImageReference,
    InvalidImageValues,
    resolve_expected_image,
)
from rollback_verifier.core.trust import Refused, RepositoryPolicy, check_repo_url, repository_credentials
from rollback_verifier.values.sources import (
    GitValuesReader,
    ValuesUnavailable,
    values_from_helm_source,
)

# A Secret read: its `.data` (base64 values) and its labels.
SecretReader = Callable[[str], tuple[Mapping[str, str], Mapping[str, str]]]

TargetKey = tuple[str, str]  # (namespace, name)


class ExpectationError(Exception):
    """The verification cannot know what to expect: ends it with `reason` and this message."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Expectations:
    images: dict[TargetKey, ImageRef]
    revision: str | None  # the revision the values were read at
    source: str  # where the values came from, for messages


def history(application: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The Application's status.history, oldest first (as Argo CD writes it)."""
    if not application:
        return []
    entries: list[Any] = (application.get("status") or {}).get("history") or []
    return [cast(Mapping[str, Any], e) for e in entries if isinstance(e, Mapping)]


def deployed_revision(application: Mapping[str, Any] | None, during_sync: bool = False) -> str | None:
    """What Argo CD deployed last: the newest history entry (status.sync is the branch head instead).
    A PostSync hook runs before that entry is written (controller/sync.go writes history once the whole
    sync, hooks included, succeeded), so for a hook it is the running operation's syncResult.revision."""
    if during_sync and application:
        result = ((application.get("status") or {}).get("operationState") or {}).get("syncResult") or {}
        if result.get("revision"):
            return str(result["revision"])
    entries = history(application)
    return str(entries[-1].get("revision")) if entries and entries[-1].get("revision") else None


def _source_repo_url(application: Mapping[str, Any] | None, app_name: str) -> str:
    if not application:
        raise ExpectationError(
            Reason.VALUES_UNAVAILABLE,
            f"valuesFrom.git has no repoURL and the Application {app_name} was not found to take it from",
        )
    spec = application.get("spec") or {}
    if spec.get("sources") and not spec.get("source"):
        raise ExpectationError(
            Reason.VALUES_UNAVAILABLE,
            f"the Application {app_name} has multiple sources: set valuesFrom.git.repoURL to say which one",
        )
    url = (spec.get("source") or {}).get("repoURL")
    if not url:
        raise ExpectationError(Reason.VALUES_UNAVAILABLE, f"the Application {app_name} has no source.repoURL")
    return str(url)


def _history_entry(application: Mapping[str, Any] | None, revision: str | None, app_name: str) -> Mapping[str, Any]:
    entries = history(application)
    if not entries:
        raise ExpectationError(
            Reason.VALUES_UNAVAILABLE,
            f"the Application {app_name} has no sync history to read Helm values from",
        )
    if revision is None:
        return entries[-1]
    found: Mapping[str, Any] | None = next((e for e in reversed(entries) if e.get("revision") == revision), None)
    if found is not None:
        return found
    raise ExpectationError(
        Reason.VALUES_UNAVAILABLE, f"the Application {app_name} has no history entry for revision {revision}"
    )


def resolve_expectations(
    spec: RollbackVerificationSpec,
    targets: Sequence[Target],
    *,
    application: Mapping[str, Any] | None,
    reader: GitValuesReader | None,
    read_secret: SecretReader | None,
    during_sync: bool = False,
    repositories: RepositoryPolicy | None = None,
) -> Expectations:
    """Expected image per target. Raises ExpectationError (ValuesUnavailable / InvalidSpec, also for
    what the trust rules refuse under `repositories`, default: the strictest)."""
    app_name = spec.application.name if spec.application else ""
    values: Mapping[str, Any] | None = None
    revision = spec.revision
    source = "the spec's explicit images"
    if any(t.image is None for t in targets):
        values, revision, source = _load_values(
            spec,
            application,
            app_name,
            reader,
            read_secret,
            during_sync=during_sync,
            repositories=repositories or RepositoryPolicy(),
        )

    images: dict[TargetKey, ImageRef] = {}
    for t in targets:
        key = (t.namespace or "", t.name)
        try:
            images[key] = resolve_expected_image(t, values)
        except InvalidImageReference as exc:
            raise ExpectationError(Reason.INVALID_SPEC, f"target {t.name}: {exc}") from exc
        except InvalidImageValues as exc:
            raise ExpectationError(Reason.VALUES_UNAVAILABLE, f"target {t.name}: {exc} ({source})") from exc
    return Expectations(images, revision, source)


def _load_values(
    spec: RollbackVerificationSpec,
    application: Mapping[str, Any] | None,
    app_name: str,
    reader: GitValuesReader | None,
    read_secret: SecretReader | None,
    *,
    during_sync: bool,
    repositories: RepositoryPolicy,
) -> tuple[Mapping[str, Any], str | None, str]:
    values_from = spec.valuesFrom
    revision = spec.revision or deployed_revision(application, during_sync)
    if values_from is None and spec.application is None:
        raise ExpectationError(
            Reason.INVALID_SPEC,
            "targets use imageValues but neither valuesFrom nor application says where the values are",
        )
    if values_from is None or values_from.applicationHelmValues:
        entry = _history_entry(application, revision, app_name)
        try:
            values = values_from_helm_source(entry.get("source") or {})
        except ValuesUnavailable as exc:
            raise ExpectationError(Reason.VALUES_UNAVAILABLE, str(exc)) from exc
        return (
            values,
            str(entry.get("revision") or revision or ""),
            f"Helm values of history entry {entry.get('id')}",
        )

    git = values_from.git
    if git is None:  # ValuesFrom's validator guarantees one source; this keeps the type checker honest
        raise ExpectationError(Reason.INVALID_SPEC, "valuesFrom names no source")
    repo_url = git.repoURL or _source_repo_url(application, app_name)
    rev = revision or "HEAD"
    credentials: GitCredentials | None = None
    try:
        # The URL first: a refused URL needs no Secret read, and a Secret is never read for it.
        check_repo_url(repo_url, with_credentials=git.credentialsSecretRef is not None, policy=repositories)
        if git.credentialsSecretRef is not None:
            if read_secret is None:
                raise ExpectationError(Reason.VALUES_UNAVAILABLE, "credentials Secrets cannot be read here")
            secret_name = git.credentialsSecretRef.name
            try:
                data, labels = read_secret(secret_name)
                credentials = repository_credentials(secret_name, data, labels, repo_url)
            except (LookupError, ValueError) as exc:
                raise ExpectationError(Reason.VALUES_UNAVAILABLE, f"credentials Secret {secret_name}: {exc}") from exc
    except Refused as exc:
        raise ExpectationError(Reason.INVALID_SPEC, f"valuesFrom.git: {exc.message}") from exc
    if reader is None:
        raise ExpectationError(Reason.VALUES_UNAVAILABLE, "git values cannot be read here")
    try:
        values = reader.read_values(repo_url, rev, git.path, credentials)
    except ValuesUnavailable as exc:
        raise ExpectationError(Reason.VALUES_UNAVAILABLE, str(exc)) from exc
    return values, rev, f"{git.path} at {rev[:12]}"
