"""Which image each target must run: from explicit images, or from the reverted values (git at a
revision, or the Argo CD history entry's inline Helm values). Blocking (git), so the operator calls
it from a worker thread; the decisions it makes are plain functions of their inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollback_verifier.api.models import GitValuesSource, Reason, RollbackVerificationSpec, Target
from rollback_verifier.core.credentials import GitCredentials
from rollback_verifier.core.detection import history_entries
from rollback_verifier.core.images import (
    ImageRef,
    InvalidImageReference,
    InvalidImageValues,
    resolve_expected_image,
)
from rollback_verifier.core.trust import Refused, RepositoryPolicy, check_repo_url, repository_credentials
from rollback_verifier.values.git import GitValuesReader, application_repo_url
from rollback_verifier.values.resolution import read_values, values_sources
from rollback_verifier.values.source import ValuesRequest, ValuesUnavailable

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


def deployed_revision(application: Mapping[str, Any] | None, during_sync: bool = False) -> str | None:
    """What Argo CD deployed last: the newest history entry (status.sync is the branch head instead).
    A PostSync hook runs before that entry is written (controller/sync.go writes history once the whole
    sync, hooks included, succeeded), so for a hook it is the running operation's syncResult.revision."""
    if during_sync and application:
        result = ((application.get("status") or {}).get("operationState") or {}).get("syncResult") or {}
        if result.get("revision"):
            return str(result["revision"])
    entries = history_entries(application or {})
    # A multi-source entry has no single revision to read values at.
    return entries[-1].revision if entries and len(entries[-1].revisions) == 1 else None


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
    repo_url: str | None = None
    credentials: GitCredentials | None = None
    git = values_from.git if values_from is not None else None
    if git is not None:
        try:
            repo_url = git.repoURL or application_repo_url(application, app_name)
        except ValuesUnavailable as exc:
            raise ExpectationError(Reason.VALUES_UNAVAILABLE, str(exc)) from exc
        credentials = _checked_credentials(git, repo_url, read_secret, repositories)
    request = ValuesRequest(
        values_from=values_from,
        revision=revision,
        application=app_name,
        history=history_entries(application or {}),
        repo_url=repo_url,
        credentials=credentials,
    )
    try:
        read = read_values(values_sources(reader), request)
    except ValuesUnavailable as exc:
        raise ExpectationError(Reason.VALUES_UNAVAILABLE, str(exc)) from exc
    return read.values, read.revision, read.description


def _checked_credentials(
    git: GitValuesSource, repo_url: str, read_secret: SecretReader | None, repositories: RepositoryPolicy
) -> GitCredentials | None:
    """The trust rules on the URL, then the credentials Secret they allow (api.md "Trust boundaries")."""
    try:
        # The URL first: a refused URL needs no Secret read, and a Secret is never read for it.
        check_repo_url(repo_url, with_credentials=git.credentialsSecretRef is not None, policy=repositories)
        if git.credentialsSecretRef is None:
            return None
        if read_secret is None:
            raise ExpectationError(Reason.VALUES_UNAVAILABLE, "credentials Secrets cannot be read here")
        secret_name = git.credentialsSecretRef.name
        try:
            data, labels = read_secret(secret_name)
            return repository_credentials(secret_name, data, labels, repo_url)
        except (LookupError, ValueError) as exc:
            raise ExpectationError(Reason.VALUES_UNAVAILABLE, f"credentials Secret {secret_name}: {exc}") from exc
    except Refused as exc:
        raise ExpectationError(Reason.INVALID_SPEC, f"valuesFrom.git: {exc.message}") from exc
