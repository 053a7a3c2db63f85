"""Trust boundaries (api.md "Trust boundaries"): whoever may create a RollbackVerification gains
nothing through the operator that they could not read or reach themselves.

Pure functions of plain data. Each refusal is a `Refused` whose message says what was refused and
what the operator settings would have to allow; the runner ends the verification with InvalidSpec.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rollback_verifier.api.settings import Settings
from rollback_verifier.core.credentials import GitCredentials, redact_url
from rollback_verifier.core.destinations import DestinationRef

ALLOW_LOCAL_SETTING = "trust.allowLocalRepositories"
TARGET_NAMESPACES_SETTING = "trust.targetNamespaces"
DESTINATION_CLUSTERS_SETTING = "trust.destinationClusters"
DESTINATIONS_SETTING = "destinations.enabled"
ALLOWED_TRANSPORTS = "https://, ssh:// and git@host:path (http:// only without credentials)"

# Argo CD's util/git IsSSHURL: an optional ssh:// and a user before the host.
_ARGO_SSH_URL = re.compile(r"^(ssh://)?([^/:]*?)@[^@]+$")
# git's scp-like syntax, `[user@]host:path`, with a plain host name (git reads it so when the first
# ':' comes before any '/'); the host may not start with '-' (it would reach ssh as an option).
_SCP_LIKE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._~-]+)@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<path>[^:].*)?$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$")
_LOCAL_NAMES = ("localhost", "localhost.localdomain")
# The names a pod reaches the Kubernetes API server by.
API_SERVER_NAMES = frozenset(
    {"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
)


class Refused(Exception):
    """An input the trust rules refuse; the message is shown to the object's author."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- Repository URLs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepositoryPolicy:
    """Which repository URLs the operator fetches from. `local_hosts`: more host names or addresses
    that count as local services (the API server's, as the operator sees it)."""

    allow_local: bool = False
    local_hosts: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class RepositoryURL:
    transport: str  # "https" | "http" | "ssh" | "local"
    host: str  # "" for local repositories
    has_userinfo: bool  # credentials or a user name written into the URL itself


def classify_repo_url(url: str) -> RepositoryURL:
    """What kind of git URL `url` is; Refused for every transport but https, http, ssh and local."""
    text = url.strip()
    shown = _shown(text)
    if text.startswith("-"):
        raise Refused(f"repoURL {shown} is not a git repository URL (it would read as an option)")
    # git reads `<transport>::<address>` as a remote helper (fd::, ext::, ...): never a repository.
    if re.match(r"^[A-Za-z0-9+.-]*::", text):
        raise Refused(f"repoURL {shown} names a git remote helper; the operator allows {ALLOWED_TRANSPORTS}")
    if not text or any(ord(c) < 0x21 or c == "\x7f" for c in text):
        raise Refused(f"repoURL {shown} is not a git repository URL")
    scheme_match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme == "file":
            return RepositoryURL("local", "", False)
        if scheme not in ("https", "http", "ssh"):
            raise Refused(f"repoURL {shown} uses the {scheme}:// transport; the operator allows {ALLOWED_TRANSPORTS}")
        try:
            parts = urlsplit(text)
            host = parts.hostname or ""
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError:
            raise Refused(f"repoURL {shown} is not a valid URL") from None
        if not host or host.startswith("-") or (not _HOSTNAME.match(host) and not _ip(host)):
            raise Refused(f"repoURL {shown} has no valid host name")
        return RepositoryURL(scheme, host.lower().rstrip("."), "@" in parts.netloc)
    first_colon, first_slash = text.find(":"), text.find("/")
    if first_colon != -1 and (first_slash == -1 or first_colon < first_slash):
        scp = _SCP_LIKE.match(text)
        if scp is None or not scp.group("path"):
            raise Refused(f"repoURL {shown} is not a git URL the operator allows ({ALLOWED_TRANSPORTS})")
        return RepositoryURL("ssh", scp.group("host").lower().rstrip("."), scp.group("user") is not None)
    return RepositoryURL("local", "", False)  # a path: git reads it from the local filesystem


def _shown(url: str) -> str:
    return repr(redact_url(url.strip())[:200])


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host literal names, the legacy IPv4 forms curl still reads included
    (`127.1`, `2130706433`, `0x7f.0.0.1`). Never resolves a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9][0-9a-fA-Fx.]*", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_local_host(host: str, more: Collection[str] = ()) -> bool:
    """A host on the operator's own machine or network link: loopback, link-local (cloud metadata),
    unspecified addresses, localhost names, the API server. Names are not resolved: the chart's
    NetworkPolicy egress rules are the fence for names that point there."""
    host = host.lower().rstrip(".")
    if host in _LOCAL_NAMES or host.endswith(".localhost") or host in API_SERVER_NAMES:
        return True
    if host in {h.lower().strip("[]").rstrip(".") for h in more}:
        return True
    address = _ip(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_link_local or address.is_unspecified


def check_repo_url(url: str, *, with_credentials: bool, policy: RepositoryPolicy) -> RepositoryURL:
    """Refused unless the operator may fetch `url` (with credentials, when `with_credentials`)."""
    found = classify_repo_url(url)
    shown = _shown(url)
    if found.transport == "local":
        if not policy.allow_local:
            raise Refused(
                f"repoURL {shown} is a repository on the operator's own filesystem: refused unless the "
                f"operator settings allow local repositories ({ALLOW_LOCAL_SETTING}: true)"
            )
        return found
    if is_local_host(found.host, policy.local_hosts) and not policy.allow_local:
        raise Refused(
            f"repoURL {shown} names a service local to the operator ({found.host}): refused unless the "
            f"operator settings allow local repositories ({ALLOW_LOCAL_SETTING}: true)"
        )
    if found.transport == "http" and (with_credentials or found.has_userinfo):
        raise Refused(f"repoURL {shown}: credentials are never sent over plain http: use https://")
    return found


# --- Credentials: only to the URL their Secret names ------------------------------------------------


def normalize_git_url(url: str) -> str:
    """Argo CD's util/git NormalizeGitURL: lower case, `user@host:path` as `user@host/path`, no
    `.git` suffix, no `ssh://` prefix."""
    repo = url.strip().lower()
    if _ARGO_SSH_URL.match(repo) and not repo.startswith("ssh://"):
        repo = "ssh://" + repo.replace(":", "/", 1)
    repo = repo.removesuffix(".git")
    return repo.removeprefix("ssh://")


def _without_http_userinfo(url: str) -> str:
    """An http(s) URL without the user info written into it (its host and path are what count)."""
    match = re.match(r"^(https?://)([^/?#]*@)(.*)$", url.strip(), re.IGNORECASE)
    return match.group(1) + match.group(3) if match else url.strip()


def credentials_apply(secret_url: str, repo_url: str, *, template: bool) -> bool:
    """Whether a repository Secret whose `url` is `secret_url` holds credentials for `repo_url`.

    A repository Secret (`argocd.argoproj.io/secret-type: repository`) matches the same URL, as
    Argo CD's SameURL compares them (normalised). A credential template (`repo-creds`) matches every
    repository under its URL, as Argo CD's prefix rule, but only at a path boundary: a template for
    `https://git.example/team` covers `https://git.example/team/app`, not `https://git.example/team-b`.
    """
    secret = normalize_git_url(_without_http_userinfo(secret_url))
    repo = normalize_git_url(_without_http_userinfo(repo_url))
    if not secret or not repo:
        return False
    if repo == secret:
        return True
    if not template:
        return False
    prefix = secret if secret.endswith(("/", ":")) else secret + "/"
    return repo.startswith(prefix)


# --- Namespaces -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamespacePolicy:
    """Which namespaces the RollbackVerifications of a namespace may reach besides their own.

    `target_namespaces`: namespace -> more namespaces whose Deployments its objects may target and
    whose Applications (by destination namespace) they may name. `applications`: namespace -> the
    Applications (namespace, name) its objects may name whatever their destination (detection's own).
    """

    target_namespaces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    applications: Mapping[str, frozenset[tuple[str, str]]] = field(default_factory=dict)

    def reachable(self, namespace: str) -> frozenset[str]:
        return frozenset({namespace}) | self.target_namespaces.get(namespace, frozenset())


def check_targets(namespace: str, target_namespaces: Collection[str], policy: NamespacePolicy) -> None:
    """Refused when a target lives in a namespace the object's own namespace is not mapped to."""
    allowed = policy.reachable(namespace)
    for other in sorted(set(target_namespaces) - allowed):
        raise Refused(
            f"target namespace {other}: a RollbackVerification in {namespace} may target only its own "
            f"namespace, unless the operator settings map {namespace} to {other} "
            f"({TARGET_NAMESPACES_SETTING}.{namespace}: [{other}])"
        )


def check_application(
    namespace: str, application: tuple[str, str], destination_namespace: str | None, policy: NamespacePolicy
) -> None:
    """Refused when the named Application does not deploy to a namespace the object may reach.

    `destination_namespace` is the Application's spec.destination.namespace (None: not found or not
    set). The message never tells the Application's destination: its author may not read it.
    """
    if application in policy.applications.get(namespace, frozenset()):
        return
    if destination_namespace and destination_namespace in policy.reachable(namespace):
        return
    app_ns, app_name = application
    raise Refused(
        f"application {app_ns}/{app_name}: a RollbackVerification in {namespace} may name only an "
        f"Application that deploys to {namespace}, unless the operator settings map {namespace} "
        f"to the Application's destination namespace ({TARGET_NAMESPACES_SETTING}.{namespace})"
    )


# --- Repository Secrets -----------------------------------------------------------------------------

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"  # noqa: S105 (a label name, not a password)
# The keys of Argo CD's repository-Secret format the operator uses; a Secret with none of them would
# silently mean "no credentials".
USABLE_SECRET_KEYS = ("username", "password", "sshPrivateKey", "insecure")


def repository_credentials(
    secret_name: str, data: Mapping[str, str], labels: Mapping[str, str], repo_url: str
) -> GitCredentials:
    """The credentials of a repository Secret, for `repo_url` only: Refused when the Secret names no
    `url`, names another repository, or holds none of the keys the operator can use. The messages
    never show the Secret's values (its `url` included: the object's author may not read it)."""
    where = f"credentials Secret {secret_name}"
    credentials = GitCredentials.from_secret_data(data)  # ValueError names a key that is not base64
    if not any(data.get(key) for key in USABLE_SECRET_KEYS):
        raise Refused(
            f"{where} is unusable: it has none of the keys {', '.join(USABLE_SECRET_KEYS)} "
            "(the operator reads Argo CD's repository-Secret format; GitHub App and TLS client "
            "certificate credentials are not supported)"
        )
    if not credentials.url:
        raise Refused(
            f"{where} has no url: the operator sends credentials only to the repository their Secret names "
            "(Argo CD's repository-Secret format)"
        )
    template = labels.get(SECRET_TYPE_LABEL) == "repo-creds"
    if not credentials_apply(credentials.url, repo_url, template=template):
        kind = "the repositories under the URL" if template else "the repository"
        raise Refused(
            f"{where} holds credentials for {kind} its url names, which is not repoURL {_shown(repo_url)}: "
            "the operator sends credentials only there"
        )
    return credentials


def check_reach(
    namespace: str,
    target_namespaces: Collection[str],
    application: tuple[str, str] | None,
    application_object: Mapping[str, Any] | None,
    policy: NamespacePolicy,
) -> None:
    """Both namespace rules for one object: its targets, and the Application it names (as found)."""
    check_targets(namespace, target_namespaces, policy)
    # An Application that does not exist is left to the verdict ("not found"): its name is all that is
    # told, never its content. One that exists must deploy where the object may reach.
    if application is not None and application_object is not None:
        destination = (application_object.get("spec") or {}).get("destination") or {}
        found = destination.get("namespace")
        check_application(namespace, application, str(found) if found else None, policy)


# --- The policies the operator's settings make ---------------------------------------------


def repository_policy(settings: Settings, local_hosts: frozenset[str] = frozenset()) -> RepositoryPolicy:
    return RepositoryPolicy(allow_local=settings.trust.allowLocalRepositories, local_hosts=local_hosts)


def git_protocols(settings: Settings) -> tuple[str, ...]:
    """The transports git itself may use (GIT_ALLOW_PROTOCOL), as the trust rules allow them."""
    return ("https", "http", "ssh", "file") if settings.trust.allowLocalRepositories else ("https", "http", "ssh")


def namespace_policy(settings: Settings) -> NamespacePolicy:
    """The settings' namespace map, plus what detection needs for the verifications it creates: its
    verificationNamespace may target its targets' namespaces and name the watched Application."""
    targets: dict[str, set[str]] = {ns: set(others) for ns, others in settings.trust.targetNamespaces.items()}
    applications: dict[str, set[tuple[str, str]]] = {}
    for app in settings.detection.applications:  # also when detection is off: PostSync hooks create them too
        own = app.verificationNamespace
        targets.setdefault(own, set()).update(t.namespace for t in app.targets if t.namespace)
        applications.setdefault(own, set()).add((app.namespace, app.name))
    return NamespacePolicy(
        target_namespaces={ns: frozenset(others) for ns, others in targets.items()},
        applications={ns: frozenset(apps) for ns, apps in applications.items()},
    )


# --- Destination clusters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DestinationPolicy:
    """Which clusters verifications may look in. `enabled`: Argo CD's destination clusters at all;
    `clusters`: namespace -> more clusters (names or server URLs) its objects may name explicitly."""

    enabled: bool = False
    clusters: Mapping[str, frozenset[str]] = field(default_factory=dict)


def check_destination(
    namespace: str,
    requested: DestinationRef | None,
    application_destination: DestinationRef | None,
    effective: DestinationRef | None,
    policy: DestinationPolicy,
) -> None:
    """Refused when a verification would look in a cluster its author may not name.

    The operator holds Argo CD's credentials for every destination cluster, so naming a cluster is
    reach: spec.destination may name its own Application's destination (which the namespace rules
    already let it name), the operator's own cluster (by its server URL), or a cluster the settings
    list for its namespace. Any other cluster is refused, as is every destination cluster while the
    settings do not enable them."""
    if requested is not None and not (requested.server and requested.own_cluster):
        allowed = policy.clusters.get(namespace, frozenset())
        listed = (requested.name or requested.server) in allowed
        if not listed and not (application_destination is not None and requested.same_as(application_destination)):
            shown = requested.name or requested.server
            raise Refused(
                f"destination {requested.describe()}: a RollbackVerification in {namespace} may name only its "
                "Application's destination or the operator's own cluster, unless the operator settings list "
                f"the cluster for {namespace} ({DESTINATION_CLUSTERS_SETTING}.{namespace}: [{shown}])"
            )
    if effective is not None and not effective.own_cluster and not policy.enabled:
        raise Refused(
            f"destination {effective.describe()} is another cluster than the operator's own: the operator "
            f"verifies in Argo CD's destination clusters only when the settings enable it ({DESTINATIONS_SETTING}: "
            "true; chart value destinations.enabled)"
        )


def destination_policy(settings: Settings) -> DestinationPolicy:
    return DestinationPolicy(
        enabled=settings.destinations.enabled,
        clusters={ns: frozenset(names) for ns, names in settings.trust.destinationClusters.items()},
    )
