"""Image references, and the images a rollback is expected to run. Pure: no I/O.

Parsing follows the Docker/OCI reference grammar of `distribution/reference`
(`ParseNormalizedNamed`), so a name means here what it means to the kubelet:

- no registry means Docker Hub: `nginx` is `docker.io/library/nginx`, `org/app`
  is `docker.io/org/app`; `index.docker.io` is the same registry as `docker.io`;
- the first path segment is a registry when it is `localhost`, contains `.` or
  `:` (a host name or a port), or has uppercase letters;
- digests use a registered algorithm (`sha256`, `sha384`, `sha512`) with
  lowercase hex of the algorithm's length.

Comparison rules, used by `template_image_matches` and `digest_matches`:

- An untagged reference is NOT read as `:latest`. `nginx` and `nginx:latest`
  are different expectations: `nginx` pins nothing (the runtime pulls whatever
  `latest` is at pull time), so it never satisfies a tag or digest
  expectation, and an explicit expected image must pin a tag or a digest.
- When a digest is expected, the digest alone decides (next to a digest the
  tag is ignored by the container runtime when it pulls).
- When only a tag is expected, the tags must be equal; a digest-only actual
  image cannot show which tag it came from and does not match.

Expected images from Helm values (api.md "Image values"): a values key such as
`controllers.image` holds `{repository, tag, digest}`; the expected image is
`repository[:tag]@digest`, or `repository:tag` when no digest is pinned.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rollback_verifier.core.plain import type_name

if TYPE_CHECKING:
    from rollback_verifier.api.models import Target

DEFAULT_REGISTRY = "docker.io"
LEGACY_DEFAULT_REGISTRY = "index.docker.io"
OFFICIAL_REPOSITORY_PREFIX = "library/"
LOCALHOST = "localhost"

# distribution/reference limits: the full (normalised) name, and a tag.
NAME_MAX_LENGTH = 255
TAG_MAX_LENGTH = 128
# The longest reference that could be valid (name:tag@sha512:hex); longer input
# is refused before any pattern runs on it.
REFERENCE_MAX_LENGTH = NAME_MAX_LENGTH + 1 + TAG_MAX_LENGTH + 1 + len("sha512:") + 128

# go-digest's registered algorithms and the hex length of each.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_HEX_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
_BARE_SHA256_HEX = re.compile(r"[a-f0-9]{64}")


class InvalidImageReference(ValueError):
    """An image reference that the Docker/OCI reference grammar rejects."""


class InvalidImageValues(ValueError):
    """Helm values that set an image, but not in a form that names one image."""


def _shown(text: str, limit: int = 120) -> str:
    """`text` quoted for a message, cut short so that huge input stays readable."""
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)


@dataclass(frozen=True)
class ImageRef:
    """A parsed, normalised image reference. Build one with `parse_image`."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`registry/repository`, e.g. `docker.io/library/nginx`."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The name as `docker` shows it: `nginx` for `docker.io/library/nginx`.

        Unlike `docker`, keeps `docker.io/` when the short form would read back as another
        registry (`docker.io/my.org/app` is not `my.org/app`).
        """
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        short = self.repository.removeprefix(OFFICIAL_REPOSITORY_PREFIX)
        if "/" not in short:
            return short
        first = self.repository.partition("/")[0]
        return self.name if "." in first or first == LOCALHOST else self.repository

    def normalized(self) -> str:
        """The full canonical form: `docker.io/library/nginx:1.25@sha256:...`."""
        return self.name + self._suffix()

    def familiar(self) -> str:
        """The short form `docker` shows: `nginx:1.25@sha256:...`."""
        return self.familiar_name + self._suffix()

    def short(self) -> str:
        """For people: the familiar form with the digest cut to 12 hex characters."""
        text = self.familiar_name + (f":{self.tag}" if self.tag else "")
        if self.digest:
            algorithm, _, hex_digits = self.digest.partition(":")
            text += f"@{algorithm}:{hex_digits[:12]}"
        return text

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag is not None else "") + (f"@{self.digest}" if self.digest is not None else "")

    def __str__(self) -> str:
        return self.normalized()


def _digest_problem(digest: str) -> str | None:
    """Why `digest` is not a valid `algorithm:hex` digest, or None when it is."""
    algorithm, colon, hex_digits = digest.partition(":")
    if not colon:
        return "a digest must look like sha256:<64 hex characters>"
    expected_length = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected_length is None:
        return f"unsupported digest algorithm {_shown(algorithm)} (expected one of sha256, sha384, sha512)"
    if len(hex_digits) != expected_length or not re.fullmatch(r"[a-fA-F0-9]*", hex_digits):
        return f"a {algorithm} digest needs exactly {expected_length} hex characters"
    if hex_digits != hex_digits.lower():
        return "digest hex must be lowercase"
    return None


def _split_registry(name: str) -> tuple[str, str]:
    """(registry, repository) with Docker Hub's defaults applied (splitDockerDomain)."""
    first, slash, rest = name.partition("/")
    if not slash:
        registry, repository = DEFAULT_REGISTRY, name
    elif first == LOCALHOST or "." in first or ":" in first or first.lower() != first:
        registry, repository = first, rest
    else:
        registry, repository = DEFAULT_REGISTRY, name
    if registry == LEGACY_DEFAULT_REGISTRY:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = OFFICIAL_REPOSITORY_PREFIX + repository
    return registry, repository


# Pure, and asked again about the same few references on every pod event of a target (ImageRef is
# frozen): remembered. Bounded, as references come from users' specs and the cluster.
@lru_cache(maxsize=4096)
def parse_image(ref: str) -> ImageRef:
    """Parse a Docker/OCI image reference into a normalised `ImageRef`.

    `nginx`, `nginx:1.25`, `nginx@sha256:...`, `nginx:1.25@sha256:...`,
    `localhost:5000/x`, `registry.example:5000/a/b:tag`, `[::1]:5000/x`.
    An untagged reference keeps `tag=None`: `latest` is not implied (see the
    module docstring for how untagged references compare).

    Raises `InvalidImageReference`, and nothing else, for any input that is
    not a valid reference.
    """
    if not isinstance(ref, str):
        raise InvalidImageReference(f"an image reference must be a string, not {type(ref).__name__}")
    if not ref:
        raise InvalidImageReference("empty image reference")
    if len(ref) > REFERENCE_MAX_LENGTH:
        raise InvalidImageReference(
            f"invalid image reference {_shown(ref)}: longer than any valid reference "
            f"({REFERENCE_MAX_LENGTH} characters)"
        )
    if _HEX_IDENTIFIER.fullmatch(ref):
        raise InvalidImageReference(
            f"invalid image reference {_shown(ref)}: a 64-character hex string is an image ID, not a repository name"
        )

    remainder, at, digest_text = ref.partition("@")
    digest: str | None = None
    if at:
        problem = _digest_problem(digest_text)
        if problem:
            raise InvalidImageReference(f"invalid image reference {_shown(ref)}: {problem}")
        digest = digest_text

    # The tag follows the last ':' after the last '/'; a ':' before a '/' is a registry port.
    name, tag = remainder, None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        name, tag = remainder[:colon], remainder[colon + 1 :]
        if not tag:
            raise InvalidImageReference(f"invalid image reference {_shown(ref)}: empty tag after ':'")
        if not _TAG.fullmatch(tag):
            raise InvalidImageReference(
                f"invalid image reference {_shown(ref)}: tag {_shown(tag)} must be 1-{TAG_MAX_LENGTH} of "
                "letters, digits, '_', '.' and '-', not starting with '.' or '-'"
            )
    if not name:
        raise InvalidImageReference(f"invalid image reference {_shown(ref)}: no repository name")

    registry, repository = _split_registry(name)
    if not _DOMAIN.fullmatch(registry):
        raise InvalidImageReference(f"invalid image reference {_shown(ref)}: bad registry {_shown(registry)}")
    for component in repository.split("/"):
        if _PATH_COMPONENT.fullmatch(component):
            continue
        if _PATH_COMPONENT.fullmatch(component.lower()):
            raise InvalidImageReference(f"invalid image reference {_shown(ref)}: repository name must be lowercase")
        raise InvalidImageReference(
            f"invalid image reference {_shown(ref)}: bad repository path component {_shown(component)} "
            "(lowercase letters and digits, separated by '.', '_', '__' or '-')"
        )
    if len(registry) + 1 + len(repository) > NAME_MAX_LENGTH:
        raise InvalidImageReference(
            f"invalid image reference {_shown(ref)}: the name is longer than {NAME_MAX_LENGTH} characters"
        )
    return ImageRef(registry=registry, repository=repository, tag=tag, digest=digest)


def digest_from_image_id(image_id: str) -> str | None:
    """The digest in a container status `imageID`, or None when it carries none.

    Accepts what kubelets report: `docker-pullable://repo@sha256:...`,
    `docker.io/library/nginx@sha256:...`, a bare `sha256:...` (which some
    runtimes report for an image without a repo digest: that is the image's
    config digest, so it will not equal a manifest digest), or `""` while a
    container is being created. Never raises.
    """
    if not isinstance(image_id, str):
        return None
    text = image_id.strip()
    scheme_end = text.find("://")
    if scheme_end != -1:
        text = text[scheme_end + 3 :]
    candidate = text.rpartition("@")[2]
    return candidate if _digest_problem(candidate) is None else None


# --- Helm values --------------------------------------------------------------------------


@dataclass(frozen=True)
class _ImageFields:
    """The validated, possibly partial {repository, tag, digest} of one values key."""

    key: str
    repository: str | None
    tag: str | None
    digest: str | None


def _lookup(values: Mapping[str, Any], key: str) -> Any:
    """The value at dotted `key`, None when absent; raises when a parent is not a mapping."""
    node: Any = values
    walked: list[str] = []
    for part in key.split("."):
        if node is None:
            return None
        if not isinstance(node, Mapping):
            parent = ".".join(walked) or "the values"
            raise InvalidImageValues(f"{parent} is a {type_name(node)}, not a mapping, so {key} cannot be read")
        node = node.get(part)
        walked.append(part)
    return node


def _unset(value: Any) -> bool:
    # Helm templates (`default`, `if`) treat null and "" as not set.
    return value is None or value == ""


def _tag_text(value: Any, where: str) -> str | None:
    """A tag as text. YAML reads unquoted `1234567` as an int and `1.25` as a float."""
    if _unset(value):
        return None
    if isinstance(value, bool):
        raise InvalidImageValues(f"{where} is a boolean ({str(value).lower()}), not a tag: quote it in YAML")
    if isinstance(value, int):
        if abs(value) >= 10**TAG_MAX_LENGTH:  # also keeps str() clear of its digit limit
            raise InvalidImageValues(f"{where} is a number too long to be a tag")
        text = str(value)
    elif isinstance(value, float):
        # Ambiguous: YAML already turned `1.10` into 1.1. str() is the best reading left.
        if not math.isfinite(value):
            raise InvalidImageValues(f"{where} is {value}, not a tag: quote it in YAML")
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise InvalidImageValues(f"{where} is a {type_name(value)}, not a tag")
    if not _TAG.fullmatch(text):
        raise InvalidImageValues(
            f"{where} {_shown(text)} is not a valid tag (1-{TAG_MAX_LENGTH} of letters, digits, "
            "'_', '.' and '-', not starting with '.' or '-')"
        )
    return text


def _digest_text(value: Any, where: str) -> str | None:
    """A digest; a bare 64-hex value is read as sha256 (some charts add the prefix themselves)."""
    if _unset(value):
        return None
    if not isinstance(value, str):
        raise InvalidImageValues(f"{where} is a {type_name(value)}, not a digest (sha256:<64 hex>)")
    if _BARE_SHA256_HEX.fullmatch(value):
        return "sha256:" + value
    problem = _digest_problem(value)
    if problem:
        raise InvalidImageValues(f"{where} {_shown(value)} is not a valid digest: {problem}")
    return value


def _repository_text(value: Any, where: str) -> str | None:
    if _unset(value):
        return None
    if not isinstance(value, str):
        raise InvalidImageValues(f"{where} is a {type_name(value)}, not a repository name")
    try:
        parsed = parse_image(value)
    except InvalidImageReference as exc:
        raise InvalidImageValues(f"{where} is not a valid repository: {exc}") from None
    if parsed.tag is not None or parsed.digest is not None:
        raise InvalidImageValues(
            f"{where} {_shown(value)} must be a repository only: put the tag in tag and the digest in digest"
        )
    return value


def _image_fields(values: Mapping[str, Any], key: str) -> _ImageFields | None:
    """The fields set at `key`; None when the key is absent or null."""
    node = _lookup(values, key)
    if node is None:
        return None
    if not isinstance(node, Mapping):
        raise InvalidImageValues(f"{key} is a {type_name(node)}, not a mapping with repository, tag and digest")
    return _ImageFields(
        key=key,
        repository=_repository_text(node.get("repository"), f"{key}.repository"),
        tag=_tag_text(node.get("tag"), f"{key}.tag"),
        digest=_digest_text(node.get("digest"), f"{key}.digest"),
    )


def _build_image(repository: str, tag: str | None, digest: str | None, where: str) -> ImageRef:
    if tag is None and digest is None:
        raise InvalidImageValues(f"{where} sets repository {_shown(repository)} but neither a tag nor a digest")
    text = repository + (f":{tag}" if tag is not None else "") + (f"@{digest}" if digest is not None else "")
    try:
        return parse_image(text)
    except InvalidImageReference as exc:  # defensive: each part was validated on its own
        raise InvalidImageValues(f"{where} does not make a valid image: {exc}") from None


def image_from_values(values: Mapping[str, Any], key: str) -> ImageRef | None:
    """The image that values key `key` (e.g. `controlPlane.image`) pins, or None when it is not set.

    "Not set" means the key is absent or null, or its mapping has no repository
    (null or empty): the caller then tries the next key. Raises
    `InvalidImageValues` when the key is set but malformed: not a mapping,
    repository not a valid name (or carrying a tag/digest), neither tag nor
    digest, a bad tag or digest.

    - `digest` may be given without the `sha256:` prefix (64 lowercase hex):
      it is read as sha256. Uppercase hex is refused, as runtimes refuse it.
    - `tag` may be an unquoted YAML number: an int becomes its decimal text;
      a float becomes `str(value)`, which cannot recover what was typed
      (`1.10` was already 1.1). Helm itself renders numbers of 7 or more digits
      as `1.234567e+06`, an invalid tag, so quote such tags in the values.
      Booleans (`true`, `yes`) are refused.
    - Empty strings count as not set, as in Helm's `default`.
    """
    fields = _image_fields(values, key)
    if fields is None or fields.repository is None:
        return None
    return _build_image(fields.repository, fields.tag, fields.digest, key)


def resolve_expected_image(target: Target, values: Mapping[str, Any] | None) -> ImageRef:
    """The image `target`'s pods must run after the rollback. Messages do not name the target:
    the caller prefixes them (`target NAME: ...`), once.

    `target.image` beats `target.imageValues`; it must pin a tag or a digest
    (else `InvalidImageReference`, as when it does not parse).

    With `imageValues`, each of repository, tag and digest comes from the first
    key that sets that field: the agents chart's own rule
    (`controllers.image.repository | default .Values.image.repository`, and
    the same for tag and digest). When the first key sets all three, that is
    simply "the first key that is set wins"; when it sets only some (say just
    a digest), the rest come from the later keys, as the chart renders them.
    Every key listed is validated, so a malformed fallback key is reported.

    Raises `InvalidImageValues` when no key sets a repository (the message
    names every key tried), when values are needed but `values` is None, or
    when a key is malformed.
    """
    if target.image is not None:
        image = parse_image(target.image)
        if image.tag is None and image.digest is None:
            raise InvalidImageReference(
                f"image {_shown(target.image)} pins neither a tag nor a digest, "
                "so there is nothing to verify (an untagged image is not read as :latest)"
            )
        return image

    keys = list(target.imageValues or [])
    if not keys:
        raise InvalidImageValues("neither image nor imageValues is set")
    tried = ", ".join(keys)
    if values is None:
        raise InvalidImageValues(f"the values are needed to read {tried}, but none were read")

    found = [fields for key in keys if (fields := _image_fields(values, key)) is not None]

    def first(field: str) -> tuple[str | None, str | None]:
        for fields in found:
            value = getattr(fields, field)
            if value is not None:
                return value, f"{fields.key}.{field}"
        return None, None

    repository, repository_key = first("repository")
    if repository is None or repository_key is None:
        raise InvalidImageValues(f"none of {tried} is set in the values (no repository)")
    tag, tag_key = first("tag")
    digest, digest_key = first("digest")
    where = ", ".join(dict.fromkeys(k.rpartition(".")[0] for k in (repository_key, tag_key, digest_key) if k))
    return _build_image(repository, tag, digest, where)


# --- Comparisons --------------------------------------------------------------------------


def template_image_matches(expected: ImageRef, actual: str) -> bool:
    """Whether a pod-template/container `image` string pins the expected image.

    Names are compared normalised (`nginx` == `docker.io/library/nginx`).
    - expected has a digest: `actual` must carry the same digest; tags are
      ignored on both sides (the runtime pulls by digest when one is given);
    - expected has only a tag: `actual` must have the same tag (whether or not
      it also has a digest); a digest-only `actual` does not match;
    - expected pins nothing: only an equally unpinned `actual` matches.
    An `actual` that does not parse never matches.
    """
    try:
        image = parse_image(actual)
    except InvalidImageReference:
        return False
    if image.name != expected.name:
        return False
    if expected.digest is not None:
        return image.digest == expected.digest
    if expected.tag is not None:
        return image.tag == expected.tag
    return image.tag is None and image.digest is None


def same_repository(expected: ImageRef, actual: str) -> bool:
    """Whether a container's `image` string names the expected image's repository (normalised,
    whatever its tag or digest): how a target's containers are told from its sidecars."""
    try:
        return parse_image(actual).name == expected.name
    except InvalidImageReference:
        return False


def digest_matches(expected: ImageRef, image_id: str) -> bool:
    """Whether a running container's `imageID` carries the expected digest.

    Only the digest is compared: the repository in an imageID is whichever
    name the runtime pulled the content under (a mirror, another tag), and the
    digest is what identifies the content. False when nothing is expected.
    """
    if expected.digest is None:
        return False
    return digest_from_image_id(image_id) == expected.digest
