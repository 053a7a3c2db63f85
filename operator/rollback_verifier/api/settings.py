"""Operator settings: the file the chart renders into a ConfigMap (--settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rollback_verifier.api.models import DEFAULT_TARGETS, DEFAULT_TIMEOUT_SECONDS, K8S_NAME, Target, ValuesFrom

DEFAULT_VALUES_PATH = "argocd/applications/agents/values.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WatchedApplication(_Model):
    """An Argo CD Application whose backward syncs create RollbackVerifications."""

    name: Annotated[str, Field(pattern=K8S_NAME)]
    namespace: Annotated[str, Field(pattern=K8S_NAME)] = "argocd"
    verificationNamespace: Annotated[str, Field(pattern=K8S_NAME)] = "agents"
    valuesFrom: ValuesFrom = ValuesFrom.model_validate({"git": {"path": DEFAULT_VALUES_PATH}})
    targets: list[Target] = Field(default_factory=lambda: list(DEFAULT_TARGETS))
    timeoutSeconds: Annotated[int, Field(ge=1, le=86400)] = DEFAULT_TIMEOUT_SECONDS
    requireApplicationHealthy: bool = True
    failOnOrphans: bool = False
    # Detected verifications are audit records, but one per rollback forever would grow etcd without
    # end: keep the newest this many (finished ones beyond are deleted; manual ones never), as Argo CD
    # keeps 10 history entries.
    historyLimit: Annotated[int, Field(ge=1, le=1000)] = 10


class Detection(_Model):
    enabled: bool = True
    # History entries deployed longer ago than this are never judged: an operator that was down
    # catches up on recent rollbacks without re-judging (or re-creating) old ones.
    lookbackSeconds: Annotated[int, Field(ge=0)] = 3600
    applications: list[WatchedApplication] = Field(default_factory=lambda: [WatchedApplication(name="agents")])


class Trust(_Model):
    """What RollbackVerification authors may reach through the operator (api.md "Trust boundaries")."""

    # file:// URLs, local paths and local services (loopback, link-local, the API server) as repoURL:
    # for tests and demos only; a verification author could otherwise read the operator's own files.
    allowLocalRepositories: bool = False
    # namespace -> more namespaces whose Deployments its RollbackVerifications may target, and whose
    # Applications (by destination namespace) they may name. Detection's own namespaces are added.
    targetNamespaces: dict[Annotated[str, Field(pattern=K8S_NAME)], list[Annotated[str, Field(pattern=K8S_NAME)]]] = (
        Field(default_factory=dict)
    )
    # namespace -> Argo CD destination clusters (cluster names or server URLs) its RollbackVerifications
    # may name in spec.destination besides their Application's own destination.
    destinationClusters: dict[
        Annotated[str, Field(pattern=K8S_NAME)], list[Annotated[str, Field(min_length=1, max_length=2048)]]
    ] = Field(default_factory=dict)


class Destinations(_Model):
    """Argo CD's destination clusters: verify the targets where the Application deploys them."""

    # Read Argo CD's cluster Secrets in argocdNamespace and reach the clusters they name with their
    # credentials. Off: a verification whose destination is another cluster fails with InvalidSpec.
    enabled: bool = False


class Settings(_Model):
    argocdNamespace: Annotated[str, Field(pattern=K8S_NAME)] = "argocd"
    detection: Detection = Field(default_factory=Detection)
    trust: Trust = Field(default_factory=Trust)
    destinations: Destinations = Field(default_factory=Destinations)


class SettingsError(ValueError):
    pass


def load_settings(path: Path | None) -> Settings:
    """The settings file, or the defaults when no file is given. Bad files raise SettingsError."""
    if path is None:
        return Settings()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from exc
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"settings file {path}: {where}: {first['msg']}") from exc
