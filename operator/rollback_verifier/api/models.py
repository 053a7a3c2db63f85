"""The RollbackVerification API: the single source of truth for the CRD (see crd.py).

Field names are the camelCase names users write in YAML; the models accept exactly the
documents the CRD accepts, so the operator can validate an object the API server let in.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A DNS-1123 label/subdomain, as Kubernetes names are.
K8S_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
DEFAULT_TIMEOUT_SECONDS = 600


class _Model(BaseModel):
    # extra="forbid": a misspelt field is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=True)


class DigestPolicy(StrEnum):
    AUTO = "Auto"
    STRICT = "Strict"
    SPEC = "Spec"


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


FINAL_PHASES = frozenset({Phase.SUCCEEDED.value, Phase.FAILED.value})


class Reason(StrEnum):
    VERIFIED = "Verified"
    ROLLOUT_TIMEOUT = "RolloutTimeout"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    IMAGE_MISMATCH = "ImageMismatch"
    DIGEST_MISMATCH = "DigestMismatch"
    TARGET_NOT_FOUND = "TargetNotFound"
    VALUES_UNAVAILABLE = "ValuesUnavailable"
    APPLICATION_UNHEALTHY = "ApplicationUnhealthy"
    ORPHANED_RESOURCES = "OrphanedResources"
    INVALID_SPEC = "InvalidSpec"
    CLUSTER_UNREACHABLE = "ClusterUnreachable"


class DetectedBy(StrEnum):
    MANUAL = "Manual"
    ARGOCD_HISTORY = "ArgoCDHistory"
    REVISION_ANCESTRY = "RevisionAncestry"
    CONTENT_REVERT = "ContentRevert"
    POST_SYNC_HOOK = "PostSyncHook"


class ApplicationRef(_Model):
    """The Argo CD Application that was rolled back."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME)]
    namespace: Annotated[str, Field(min_length=1, max_length=63, pattern=K8S_NAME)] = "argocd"


class SecretRef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME)]


class GitValuesSource(_Model):
    """A values file in git, read at `spec.revision`."""

    repoURL: Annotated[
        str | None,
        Field(description="Default: the Application's source repoURL.", max_length=2048),
    ] = None
    path: Annotated[str, Field(min_length=1, max_length=1024, description="Values file path in the repo.")]
    credentialsSecretRef: Annotated[
        SecretRef | None,
        Field(
            description="A Secret in this object's namespace with Argo CD repository-secret keys "
            "(username/password or sshPrivateKey)."
        ),
    ] = None


class ValuesFrom(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.git) != (has(self.applicationHelmValues) && self.applicationHelmValues)",
                    "message": "valuesFrom needs exactly one of git or applicationHelmValues: true",
                }
            ]
        }
    )

    git: GitValuesSource | None = None
    applicationHelmValues: Annotated[
        bool | None,
        Field(description="Read the Application history entry's source.helm.values / valuesObject."),
    ] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ValuesFrom:
        if (self.git is not None) == bool(self.applicationHelmValues):
            raise ValueError("valuesFrom needs exactly one of git or applicationHelmValues: true")
        return self


IMAGE_VALUE_KEY = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"


class Target(_Model):
    """A Deployment whose pods must run the reverted images."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.image) || has(self.imageValues)",
                    "message": "a target needs image or imageValues to know what it should run",
                }
            ]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME)]
    namespace: Annotated[
        str | None,
        Field(max_length=63, pattern=K8S_NAME, description="Default: this object's namespace."),
    ] = None
    imageValues: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=256, pattern=IMAGE_VALUE_KEY)]] | None,
        Field(max_length=8, description="Values keys holding {repository, tag, digest}; the first set wins."),
    ] = None
    image: Annotated[
        str | None,
        Field(min_length=1, max_length=1024, description="An explicit expected image; beats imageValues."),
    ] = None
    containers: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=63)]] | None,
        Field(
            max_length=16,
            description="Containers to check. Default: the pod template's containers whose image repository "
            "is the expected image's (sidecars are not judged).",
        ),
    ] = None

    @model_validator(mode="after")
    def _knows_what_to_expect(self) -> Target:
        if self.image is None and not self.imageValues:
            raise ValueError(f"target {self.name}: needs image or imageValues to know what it should run")
        return self


class Destination(_Model):
    """The cluster the targets live in: an Argo CD cluster Secret (argocd.argoproj.io/secret-type:
    cluster in Argo CD's namespace), by its cluster name or its server URL."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.name) != has(self.server)",
                    "message": "destination needs exactly one of name or server",
                }
            ]
        }
    )

    name: Annotated[str | None, Field(min_length=1, max_length=253, description="The cluster's name in Argo CD.")] = (
        None
    )
    server: Annotated[
        str | None,
        Field(min_length=1, max_length=2048, pattern=r"^https?://", description="The cluster's API server URL."),
    ] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Destination:
        if (self.name is None) == (self.server is None):
            raise ValueError("destination needs exactly one of name or server")
        return self


DEFAULT_TARGETS: tuple[Target, ...] = (
    Target(name="agents", imageValues=["controlPlane.image"]),
    Target(name="agents-controllers", imageValues=["controllers.image", "image"]),
)


class RollbackVerificationSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "spec is immutable: create a new RollbackVerification"}
            ]
        }
    )

    application: ApplicationRef | None = None
    revision: Annotated[str | None, Field(max_length=256, description="Revision rolled back TO.")] = None
    fromRevision: Annotated[
        str | None, Field(max_length=256, description="Revision rolled back FROM (informational).")
    ] = None
    valuesFrom: ValuesFrom | None = None
    targets: Annotated[
        list[Target] | None,
        Field(min_length=1, max_length=32, description="Default: the agents and agents-controllers Deployments."),
    ] = None
    destination: Annotated[
        Destination | None,
        Field(description="Default: the Application's spec.destination, else the operator's own cluster."),
    ] = None
    timeoutSeconds: Annotated[int, Field(ge=1, le=86400)] = DEFAULT_TIMEOUT_SECONDS
    digestPolicy: DigestPolicy = DigestPolicy.AUTO
    requireApplicationHealthy: bool = True
    failOnOrphans: bool = False

    def effective_targets(self, own_namespace: str) -> list[Target]:
        """Targets with their namespace filled in (defaults applied)."""
        targets = self.targets if self.targets else list(DEFAULT_TARGETS)
        return [t.model_copy(update={"namespace": t.namespace or own_namespace}) for t in targets]


class Condition(_Model):
    """A metav1.Condition."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""
    lastTransitionTime: str | None = None
    observedGeneration: int | None = None


class TargetStatus(_Model):
    name: str
    namespace: str
    expectedImages: dict[str, str] = Field(default_factory=dict)
    observedImages: dict[str, list[str]] = Field(default_factory=dict)
    replicas: int = 0
    updatedReplicas: int = 0
    availableReplicas: int = 0
    rolloutComplete: bool = False
    digestsVerified: bool = False
    message: str | None = None


class OrphanedResource(_Model):
    group: str = ""
    kind: str
    namespace: str = ""
    name: str


class RollbackVerificationStatus(_Model):
    phase: Phase | None = None
    reason: Reason | None = None
    message: str | None = None
    detectedBy: DetectedBy | None = None
    revision: str | None = None
    shortRevision: Annotated[str | None, Field(description="The first 8 characters of revision.")] = None
    fromRevision: str | None = None
    startedAt: str | None = None
    completedAt: str | None = None
    durationSeconds: float | None = None
    targets: list[TargetStatus] = Field(default_factory=list)
    orphanedResources: list[OrphanedResource] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    observedGeneration: int | None = None


def parse_spec(raw: dict[str, Any] | None) -> RollbackVerificationSpec:
    """Validate a spec from the API server; raises pydantic.ValidationError on bad input."""
    return RollbackVerificationSpec.model_validate(raw or {})
