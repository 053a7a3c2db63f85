"""Image references, expected images from Helm values, and image comparisons."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from rollback_verifier.api.models import Target
from rollback_verifier.core.images import (
    REFERENCE_MAX_LENGTH,
    ImageRef,
    InvalidImageReference,
    InvalidImageValues,
    digest_from_image_id,
    digest_matches,
    image_from_values,
    parse_image,
    resolve_expected_image,
    same_repository,
    template_image_matches,
)
from tests.properties import examples

HEX_A = "a" * 64
HEX_B = "b" * 64
DIGEST_A = f"sha256:{HEX_A}"
DIGEST_B = f"sha256:{HEX_B}"
SHA512 = "sha512:" + "c" * 128
# The images the agents design doc says GitOps pins.
CONTROL_PLANE_DIGEST = "sha256:e24ef112b615401150220dc303553f47a3cefe793c0c6c28781e9575b98ab9ae"
CONTROLLERS_DIGEST = "sha256:96e72f5e649b1738ba4a48f9e786f5cdcb2ad5d63838d4009f5c71c80c2e6809"


# --- parse_image ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", None, None),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        (f"nginx@{DIGEST_A}", "docker.io", "library/nginx", None, DIGEST_A),
        (f"nginx:1.25@{DIGEST_A}", "docker.io", "library/nginx", "1.25", DIGEST_A),
        ("library/nginx", "docker.io", "library/nginx", None, None),
        ("docker.io/nginx", "docker.io", "library/nginx", None, None),
        ("docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", None),
        ("index.docker.io/nginx", "docker.io", "library/nginx", None, None),
        ("index.docker.io/org/app:v1", "docker.io", "org/app", "v1", None),
        ("org/app", "docker.io", "org/app", None, None),
        ("org/team/app:1", "docker.io", "org/team/app", "1", None),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/app", "localhost:5000", "app", None, None),
        ("localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", None),
        ("registry.example:5000/a/b:tag", "registry.example:5000", "a/b", "tag", None),
        (f"registry.example.com/team/app@{SHA512}", "registry.example.com", "team/app", None, SHA512),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", None, None),
        ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
        ("[2001:db8::1]/app", "[2001:db8::1]", "app", None, None),
        ("Registry.Example.com/app", "Registry.Example.com", "app", None, None),
        ("Upper/app", "Upper", "app", None, None),  # an uppercase first segment is a registry
        ("foo:5000", "docker.io", "library/foo", "5000", None),  # a single segment: 5000 is a tag
        ("my_org/app__x-y.z--w:V1_2.3-rc", "docker.io", "my_org/app__x-y.z--w", "V1_2.3-rc", None),
        ("a/b/c/d/e:1", "docker.io", "a/b/c/d/e", "1", None),
        ("nginx:" + "t" * 128, "docker.io", "library/nginx", "t" * 128, None),
        ("nginx:_private", "docker.io", "library/nginx", "_private", None),
        (
            f"registry.ide-newton.ts.net/lab/jangar-control-plane:5b72ee1e@{CONTROL_PLANE_DIGEST}",
            "registry.ide-newton.ts.net",
            "lab/jangar-control-plane",
            "5b72ee1e",
            CONTROL_PLANE_DIGEST,
        ),
    ],
)
def test_parse_image_valid(ref: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    assert parse_image(ref) == ImageRef(registry, repository, tag, digest)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "empty image reference"),
        ("NGINX", "must be lowercase"),
        ("docker.io/Library/nginx", "must be lowercase"),
        ("registry.example/Team/app:1", "must be lowercase"),
        ("nginx:", "empty tag"),
        ("nginx:-bad", "tag '-bad'"),
        ("nginx:.bad", "tag '.bad'"),
        ("nginx:bad+tag", "tag 'bad+tag'"),
        ("nginx:" + "t" * 129, "tag"),
        ("nginx@sha256:abc", "exactly 64 hex"),
        ("nginx@sha256:" + "A" * 64, "lowercase"),
        ("nginx@sha256:" + "g" * 64, "exactly 64 hex"),
        ("nginx@sha256:" + "a" * 65, "exactly 64 hex"),
        ("nginx@sha512:" + "a" * 64, "exactly 128 hex"),
        ("nginx@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("nginx@" + HEX_A, "sha256:<64 hex"),
        (f"nginx@{DIGEST_A}@{DIGEST_B}", "hex"),
        ("nginx@", "sha256:<64 hex"),
        (HEX_A, "image ID"),
        ("-nginx", "bad repository path component '-nginx'"),
        ("nginx//x", "bad repository path component ''"),
        ("foo/bar/", "bad repository path component ''"),
        ("a..b", "bad repository path component"),
        ("a___b", "bad repository path component"),
        (" nginx", "bad repository path component"),
        ("nginx ", "bad repository path component"),
        ("nginx\n", "bad repository path component"),
        ("ngi nx:1", "bad repository path component"),
        ("https://registry.example/app", "bad registry 'https:'"),
        ("localhost:abc/x", "bad registry 'localhost:abc'"),
        ("ex_ample.com/x", "bad registry 'ex_ample.com'"),
        ("-registry.example/x", "bad registry"),
        ("registry.example:/x", "bad registry"),
        ("/nginx", "bad repository path component ''"),
        (":tag", "no repository name"),
        (f"@{DIGEST_A}", "no repository name"),
        ("nginx:1.25:2", "bad repository path component 'nginx:1.25'"),
        ("registry.example/" + "a" * 240, "longer than 255"),
        ("a" * 250, "longer than 255"),  # docker.io/library/ makes it too long
        ("a" * (REFERENCE_MAX_LENGTH + 1), "longer than any valid reference"),
        ("ñginx", "bad repository path component"),
    ],
)
def test_parse_image_invalid(ref: str, message: str) -> None:
    with pytest.raises(InvalidImageReference) as caught:
        parse_image(ref)
    assert message in str(caught.value)


def test_parse_image_rejects_non_strings_with_its_own_error() -> None:
    with pytest.raises(InvalidImageReference, match="must be a string"):
        parse_image(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidImageReference, match="must be a string"):
        parse_image(b"nginx")  # type: ignore[arg-type]


def test_invalid_errors_are_value_errors() -> None:
    assert issubclass(InvalidImageReference, ValueError)
    assert issubclass(InvalidImageValues, ValueError)


def test_a_huge_reference_is_named_briefly_in_the_message() -> None:
    with pytest.raises(InvalidImageReference) as caught:
        parse_image("x" * 5000)
    assert len(str(caught.value)) < 300


def test_string_forms() -> None:
    official = parse_image(f"nginx:1.25@{DIGEST_A}")
    assert official.name == "docker.io/library/nginx"
    assert official.familiar_name == "nginx"
    assert str(official) == official.normalized() == f"docker.io/library/nginx:1.25@{DIGEST_A}"
    assert official.familiar() == f"nginx:1.25@{DIGEST_A}"
    assert official.short() == "nginx:1.25@sha256:aaaaaaaaaaaa"

    hub_org = parse_image("org/app")
    assert str(hub_org) == "docker.io/org/app"
    assert hub_org.familiar() == "org/app"
    assert hub_org.short() == "org/app"

    private = parse_image(f"localhost:5000/a/b@{DIGEST_B}")
    assert private.familiar_name == private.name == "localhost:5000/a/b"
    assert private.short() == "localhost:5000/a/b@sha256:bbbbbbbbbbbb"
    assert str(parse_image("nginx")) == "docker.io/library/nginx"  # untagged stays untagged


def test_untagged_is_not_latest() -> None:
    assert parse_image("nginx").tag is None
    assert parse_image("nginx") != parse_image("nginx:latest")


# --- properties ---------------------------------------------------------------------------

_REFERENCE_ALPHABET = "abcxyzAZ0189:/@._-[]sha256 \n\tñ"


@examples(500)
@given(st.one_of(st.text(max_size=300), st.text(alphabet=_REFERENCE_ALPHABET, max_size=120)))
def test_parse_image_only_returns_or_raises_invalid_reference(text: str) -> None:
    try:
        image = parse_image(text)
    except InvalidImageReference:
        return
    assert isinstance(image, ImageRef)
    assert parse_image(str(image)) == image


_path_components = st.from_regex(r"[a-z0-9]{1,8}(?:(?:\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}", fullmatch=True)
_registries = st.one_of(
    st.sampled_from(
        [
            "docker.io",
            "index.docker.io",
            "localhost",
            "localhost:5000",
            "registry.example:5000",
            "ghcr.io",
            "127.0.0.1:5000",
            "[::1]:5000",
            "Registry.Example.com",
            "Upper",
        ]
    ),
    st.from_regex(
        r"[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?){1,3}(?::[0-9]{1,5})?",
        fullmatch=True,
    ),
)
_tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True)
_digests = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text(alphabet="0123456789abcdef", min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)


@st.composite
def _reference_texts(draw: st.DrawFn) -> tuple[str, str, str, str | None, str | None]:
    registry = draw(_registries)
    repository = "/".join(draw(st.lists(_path_components, min_size=1, max_size=4)))
    tag = draw(st.none() | _tags)
    digest = draw(st.none() | _digests)
    text = f"{registry}/{repository}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    return text, registry, repository, tag, digest


@examples(300)
@given(_reference_texts())
def test_round_trip_of_valid_references(case: tuple[str, str, str, str | None, str | None]) -> None:
    text, registry, repository, tag, digest = case
    image = parse_image(text)
    assert parse_image(str(image)) == image
    assert parse_image(image.familiar()) == image
    assert (image.tag, image.digest) == (tag, digest)
    if registry in ("docker.io", "index.docker.io"):
        assert image.registry == "docker.io"
        assert image.repository in (repository, f"library/{repository}")
    else:
        assert (image.registry, image.repository) == (registry, repository)


@examples(300)
@given(st.one_of(st.text(max_size=300), st.text(alphabet=_REFERENCE_ALPHABET + "://", max_size=200)))
def test_digest_from_image_id_never_raises(text: str) -> None:
    digest = digest_from_image_id(text)
    assert digest is None or parse_image(f"x@{digest}").digest == digest


# --- digest_from_image_id -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_id", "digest"),
    [
        (f"docker-pullable://nginx@{DIGEST_A}", DIGEST_A),
        (f"docker-pullable://registry.example:5000/a/b@{DIGEST_A}", DIGEST_A),
        (f"docker.io/library/nginx@{DIGEST_A}", DIGEST_A),
        (f"registry.example/lab/jangar@{DIGEST_B}", DIGEST_B),
        (DIGEST_A, DIGEST_A),
        (f"docker://{DIGEST_A}", DIGEST_A),  # dockershim's image ID form
        (f"  {DIGEST_A}\n", DIGEST_A),
        (f"x@{SHA512}", SHA512),
        ("", None),
        ("nginx:1.25", None),
        ("docker-pullable://nginx:1.25", None),
        ("sha256:abc", None),
        ("sha256:" + "A" * 64, None),
        ("md5:" + "a" * 32, None),
        (HEX_A, None),
        (f"nginx@{DIGEST_A}@", None),
    ],
)
def test_digest_from_image_id(image_id: str, digest: str | None) -> None:
    assert digest_from_image_id(image_id) == digest


def test_digest_from_image_id_tolerates_non_strings() -> None:
    assert digest_from_image_id(None) is None  # type: ignore[arg-type]


# --- image_from_values --------------------------------------------------------------------


def _values(image: Any, key: str = "controlPlane.image") -> dict[str, Any]:
    values: dict[str, Any] = {}
    node = values
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = image
    return values


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (
            {"repository": "registry.example/lab/app", "tag": "v1", "digest": DIGEST_A},
            f"registry.example/lab/app:v1@{DIGEST_A}",
        ),
        ({"repository": "registry.example/lab/app", "tag": "v1"}, "registry.example/lab/app:v1"),
        ({"repository": "registry.example/lab/app", "digest": DIGEST_A}, f"registry.example/lab/app@{DIGEST_A}"),
        (
            {"repository": "registry.example/lab/app", "tag": "", "digest": DIGEST_A},
            f"registry.example/lab/app@{DIGEST_A}",
        ),
        ({"repository": "registry.example/lab/app", "tag": "v1", "digest": ""}, "registry.example/lab/app:v1"),
        ({"repository": "registry.example/lab/app", "tag": "v1", "digest": None}, "registry.example/lab/app:v1"),
        ({"repository": "nginx", "tag": "1.25"}, "docker.io/library/nginx:1.25"),
        ({"repository": "localhost:5000/app", "tag": "1"}, "localhost:5000/app:1"),
        # A digest without its algorithm is read as sha256.
        ({"repository": "app", "digest": HEX_A}, f"docker.io/library/app@{DIGEST_A}"),
        ({"repository": "app", "digest": SHA512}, f"docker.io/library/app@{SHA512}"),
        # YAML numbers as tags.
        ({"repository": "app", "tag": 1234567}, "docker.io/library/app:1234567"),
        ({"repository": "app", "tag": 0}, "docker.io/library/app:0"),
        ({"repository": "app", "tag": 1.25}, "docker.io/library/app:1.25"),
        ({"repository": "app", "tag": 1.10}, "docker.io/library/app:1.1"),  # what YAML left of "1.10"
        # Other keys of the mapping are ignored.
        (
            {"repository": "app", "tag": "1", "pullPolicy": "IfNotPresent", "pullSecrets": ["x"]},
            "docker.io/library/app:1",
        ),
    ],
)
def test_image_from_values(image: dict[str, Any], expected: str) -> None:
    result = image_from_values(_values(image), "controlPlane.image")
    assert result is not None
    assert str(result) == expected


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"controlPlane": None},
        {"controlPlane": {}},
        {"controlPlane": {"image": None}},
        {"controlPlane": {"image": {}}},
        {"controlPlane": {"image": {"repository": None, "tag": "v1"}}},
        {"controlPlane": {"image": {"repository": "", "tag": "v1", "digest": DIGEST_A}}},
        {"controlPlane": {"image": {"tag": "v1", "digest": DIGEST_A}}},
        {"controlPlane": {"image": {"pullPolicy": "Always"}}},
        {"image": {"repository": "app", "tag": "1"}},  # another key is not this key
    ],
)
def test_image_from_values_not_set(values: dict[str, Any]) -> None:
    assert image_from_values(values, "controlPlane.image") is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (_values("nginx:1.25"), "controlPlane.image is a string, not a mapping"),
        (_values(["nginx"]), "controlPlane.image is a list, not a mapping"),
        (_values(5), "controlPlane.image is a number, not a mapping"),
        ({"controlPlane": "x"}, "controlPlane is a string, not a mapping, so controlPlane.image cannot be read"),
        ({"controlPlane": ["x"]}, "controlPlane is a list"),
        (_values({"repository": "app"}), "controlPlane.image sets repository 'app' but neither a tag nor a digest"),
        (_values({"repository": "app", "tag": "", "digest": ""}), "neither a tag nor a digest"),
        (_values({"repository": "app", "tag": None, "digest": None}), "neither a tag nor a digest"),
        (_values({"repository": 5, "tag": "1"}), "controlPlane.image.repository is a number"),
        (_values({"repository": ["a"], "tag": "1"}), "controlPlane.image.repository is a list"),
        (_values({"repository": "nginx:1.25", "tag": "1"}), "must be a repository only"),
        (_values({"repository": f"nginx@{DIGEST_A}", "tag": "1"}), "must be a repository only"),
        (_values({"repository": "Registry/App", "tag": "1"}), "must be lowercase"),
        (_values({"repository": "bad repo", "tag": "1"}), "controlPlane.image.repository is not a valid repository"),
        (_values({"repository": "app", "tag": "bad tag"}), "controlPlane.image.tag 'bad tag' is not a valid tag"),
        (_values({"repository": "app", "tag": "-x"}), "is not a valid tag"),
        (_values({"repository": "app", "tag": "t" * 129}), "is not a valid tag"),
        (_values({"repository": "app", "tag": True}), "controlPlane.image.tag is a boolean (true)"),
        (_values({"repository": "app", "tag": -5}), "is not a valid tag"),
        (_values({"repository": "app", "tag": 10**200}), "too long to be a tag"),
        (_values({"repository": "app", "tag": math.nan}), "quote it in YAML"),
        (_values({"repository": "app", "tag": math.inf}), "quote it in YAML"),
        (_values({"repository": "app", "tag": ["1"]}), "controlPlane.image.tag is a list"),
        (
            _values({"repository": "app", "digest": "sha256:abc"}),
            "controlPlane.image.digest 'sha256:abc' is not a valid digest",
        ),
        (_values({"repository": "app", "digest": "sha256:" + "A" * 64}), "lowercase"),
        (_values({"repository": "app", "digest": "A" * 64}), "not a valid digest"),
        (_values({"repository": "app", "digest": f" {DIGEST_A}"}), "not a valid digest"),
        (_values({"repository": "app", "digest": "md5:" + "a" * 32}), "unsupported digest algorithm"),
        (_values({"repository": "app", "digest": 12}), "controlPlane.image.digest is a number"),
        # Invalid tag or digest even with no repository: the key is set, but wrong.
        (_values({"tag": "bad tag"}), "is not a valid tag"),
        (_values({"repository": "registry.example/" + "a" * 240, "tag": "1"}), "longer than 255"),
    ],
)
def test_image_from_values_malformed(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidImageValues) as caught:
        image_from_values(values, "controlPlane.image")
    assert message in str(caught.value)


def test_image_from_values_non_mapping_values() -> None:
    with pytest.raises(InvalidImageValues, match="the values is a list"):
        image_from_values(["x"], "image")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("yaml_tag", "expected_tag"),
    [
        ("1.25", "1.25"),  # a float
        ("1234567", "1234567"),  # an int
        ("5b72ee1e", "5b72ee1e"),  # a string
        ("'1.10'", "1.10"),  # quoted: exact
        ("1.10", "1.1"),  # unquoted: YAML lost the zero (documented)
        ("0x1f", "31"),  # YAML 1.1 hex int; Helm's parser agrees
    ],
)
def test_image_from_values_yaml_tags(yaml_tag: str, expected_tag: str) -> None:
    values = yaml.safe_load(f"image:\n  repository: app\n  tag: {yaml_tag}\n")
    image = image_from_values(values, "image")
    assert image is not None
    assert image.tag == expected_tag


@pytest.mark.parametrize("yaml_tag", ["true", "yes", "on", "no"])
def test_image_from_values_yaml_boolean_tags_are_refused(yaml_tag: str) -> None:
    values = yaml.safe_load(f"image:\n  repository: app\n  tag: {yaml_tag}\n")
    with pytest.raises(InvalidImageValues, match="quote it in YAML"):
        image_from_values(values, "image")


_yamlish = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["app", "nginx", "registry.example/app", DIGEST_A, HEX_A, "v1", "", "1.25"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["repository", "tag", "digest", "image", "x"]), children, max_size=4)
    ),
    max_leaves=12,
)
_image_values_keys = st.sampled_from(["image", "controllers.image", "controlPlane.image", "a.b.c"])


@examples(400)
@given(
    st.dictionaries(st.sampled_from(["image", "controllers", "controlPlane", "a"]), _yamlish, max_size=3),
    _image_values_keys,
)
def test_image_from_values_only_raises_invalid_values(values: dict[str, Any], key: str) -> None:
    try:
        result = image_from_values(values, key)
    except InvalidImageValues:
        return
    assert result is None or parse_image(str(result)) == result


@examples(300)
@given(
    st.dictionaries(st.sampled_from(["image", "controllers", "controlPlane"]), _yamlish, max_size=3),
    st.lists(_image_values_keys, min_size=1, max_size=3),
)
def test_resolve_expected_image_only_raises_invalid_values(values: dict[str, Any], keys: list[str]) -> None:
    target = Target(name="t", imageValues=keys)
    try:
        result = resolve_expected_image(target, values)
    except InvalidImageValues:
        return
    assert result.tag is not None or result.digest is not None


@examples(200)
@given(
    st.sampled_from(["registry.example/lab/app", "nginx", "localhost:5000/a/b"]),
    st.none() | _tags,
    st.none() | _digests,
)
def test_image_from_values_builds_repository_tag_digest(repository: str, tag: str | None, digest: str | None) -> None:
    fields = {"repository": repository, "tag": tag, "digest": digest}
    if tag is None and digest is None:
        with pytest.raises(InvalidImageValues):
            image_from_values({"image": fields}, "image")
        return
    image = image_from_values({"image": fields}, "image")
    assert image is not None
    assert image == parse_image(repository + (f":{tag}" if tag else "") + (f"@{digest}" if digest else ""))


# --- resolve_expected_image ---------------------------------------------------------------

AGENTS_VALUES = yaml.safe_load(
    f"""
image:
  repository: registry.ide-newton.ts.net/lab/jangar
  tag: 5b72ee1e
  digest: {CONTROLLERS_DIGEST}
  pullPolicy: IfNotPresent
controlPlane:
  image:
    repository: registry.ide-newton.ts.net/lab/jangar-control-plane
    tag: 5b72ee1e
    digest: {CONTROL_PLANE_DIGEST}
controllers:
  enabled: true
"""
)
CONTROL_PLANE = Target(name="agents", imageValues=["controlPlane.image"])
CONTROLLERS = Target(name="agents-controllers", imageValues=["controllers.image", "image"])


def test_agents_defaults() -> None:
    assert str(resolve_expected_image(CONTROL_PLANE, AGENTS_VALUES)) == (
        f"registry.ide-newton.ts.net/lab/jangar-control-plane:5b72ee1e@{CONTROL_PLANE_DIGEST}"
    )
    # controllers.image is not set: the controllers use image.*
    assert str(resolve_expected_image(CONTROLLERS, AGENTS_VALUES)) == (
        f"registry.ide-newton.ts.net/lab/jangar:5b72ee1e@{CONTROLLERS_DIGEST}"
    )


def test_first_key_that_is_set_wins() -> None:
    values = {
        **AGENTS_VALUES,
        "controllers": {"image": {"repository": "registry.example/ctl", "tag": "c1", "digest": DIGEST_A}},
    }
    assert str(resolve_expected_image(CONTROLLERS, values)) == f"registry.example/ctl:c1@{DIGEST_A}"


@pytest.mark.parametrize(
    ("controllers_image", "expected"),
    [
        (None, f"registry.ide-newton.ts.net/lab/jangar:5b72ee1e@{CONTROLLERS_DIGEST}"),
        ({}, f"registry.ide-newton.ts.net/lab/jangar:5b72ee1e@{CONTROLLERS_DIGEST}"),
        ({"repository": "", "tag": ""}, f"registry.ide-newton.ts.net/lab/jangar:5b72ee1e@{CONTROLLERS_DIGEST}"),
        # The chart takes each field from controllers.image when set, else from image.
        ({"digest": DIGEST_A}, f"registry.ide-newton.ts.net/lab/jangar:5b72ee1e@{DIGEST_A}"),
        ({"tag": "c1"}, f"registry.ide-newton.ts.net/lab/jangar:c1@{CONTROLLERS_DIGEST}"),
        ({"repository": "registry.example/ctl"}, f"registry.example/ctl:5b72ee1e@{CONTROLLERS_DIGEST}"),
        ({"repository": "registry.example/ctl", "tag": "c1"}, f"registry.example/ctl:c1@{CONTROLLERS_DIGEST}"),
    ],
)
def test_controllers_fields_fall_back_to_image_one_by_one(
    controllers_image: dict[str, Any] | None, expected: str
) -> None:
    values = {**AGENTS_VALUES, "controllers": {"enabled": True, "image": controllers_image}}
    assert str(resolve_expected_image(CONTROLLERS, values)) == expected


def test_none_of_the_keys_is_set_names_every_key() -> None:
    with pytest.raises(InvalidImageValues) as caught:
        resolve_expected_image(CONTROLLERS, {"controllers": {"image": {"tag": "1"}}})
    assert "none of controllers.image, image is set in the values" in str(caught.value)
    with pytest.raises(InvalidImageValues, match=r"none of controlPlane\.image is set"):
        resolve_expected_image(CONTROL_PLANE, {})


def test_values_needed_but_absent() -> None:
    with pytest.raises(InvalidImageValues) as caught:
        resolve_expected_image(CONTROLLERS, None)
    message = str(caught.value)
    # The caller names the target (`target agents-controllers: ...`), once: the message itself does not.
    assert "agents-controllers" not in message
    assert "controllers.image, image" in message
    assert "none were read" in message


def test_a_malformed_fallback_key_is_reported() -> None:
    values = {**AGENTS_VALUES, "controllers": {"image": "registry.example/ctl:1"}}
    with pytest.raises(InvalidImageValues, match=r"controllers\.image is a string"):
        resolve_expected_image(CONTROLLERS, values)
    values = {"controllers": {"image": {"repository": "a", "tag": "1"}}, "image": {"repository": "b", "tag": True}}
    with pytest.raises(InvalidImageValues, match=r"image\.tag is a boolean"):
        resolve_expected_image(CONTROLLERS, values)


def test_repository_without_tag_or_digest_anywhere() -> None:
    values = {"controllers": {"image": {"repository": "registry.example/ctl"}}, "image": {"pullPolicy": "x"}}
    with pytest.raises(InvalidImageValues, match=r"controllers\.image sets repository .* neither a tag nor a digest"):
        resolve_expected_image(CONTROLLERS, values)


def test_explicit_image_beats_values() -> None:
    target = Target(name="agents", image=f"registry.example/x:1@{DIGEST_B}", imageValues=["controlPlane.image"])
    assert resolve_expected_image(target, AGENTS_VALUES) == parse_image(f"registry.example/x:1@{DIGEST_B}")
    assert resolve_expected_image(target, None) == parse_image(f"registry.example/x:1@{DIGEST_B}")
    tag_only = Target(name="agents", image="registry.example/x:1")
    assert resolve_expected_image(tag_only, None).tag == "1"


def test_explicit_image_must_parse_and_pin_something() -> None:
    with pytest.raises(InvalidImageReference, match="pins neither a tag nor a digest"):
        resolve_expected_image(Target(name="agents", image="registry.example/x"), AGENTS_VALUES)
    with pytest.raises(InvalidImageReference, match="must be lowercase"):
        resolve_expected_image(Target(name="agents", image="registry.example/X:1"), AGENTS_VALUES)


def test_a_target_without_image_or_image_values() -> None:
    # The API model refuses such a target; a hand-built one still gets a clear error.
    target = Target.model_construct(name="odd", image=None, imageValues=None, containers=None, namespace=None)
    with pytest.raises(InvalidImageValues, match=r"^neither image nor imageValues is set$"):
        resolve_expected_image(target, {})


# --- template_image_matches / digest_matches ----------------------------------------------

PINNED = parse_image(f"registry.example/lab/app:v1@{DIGEST_A}")
TAG_ONLY = parse_image("registry.example/lab/app:v1")
OFFICIAL = parse_image(f"docker.io/library/nginx:1.25@{DIGEST_A}")


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        (PINNED, f"registry.example/lab/app:v1@{DIGEST_A}", True),
        (PINNED, f"registry.example/lab/app@{DIGEST_A}", True),
        (PINNED, f"registry.example/lab/app:other@{DIGEST_A}", True),  # the digest decides
        (PINNED, "registry.example/lab/app:v1", False),  # the template does not pin the digest
        (PINNED, f"registry.example/lab/app:v1@{DIGEST_B}", False),
        (PINNED, f"registry.example/lab/other:v1@{DIGEST_A}", False),
        (PINNED, f"other.example/lab/app:v1@{DIGEST_A}", False),
        (PINNED, "", False),
        (PINNED, "NOT A REFERENCE", False),
        (OFFICIAL, f"nginx@{DIGEST_A}", True),
        (OFFICIAL, f"index.docker.io/library/nginx:1.25@{DIGEST_A}", True),
        (OFFICIAL, f"docker.io/nginx@{DIGEST_A}", True),
        (OFFICIAL, f"library/nginx:1.25@{DIGEST_A}", True),
        (OFFICIAL, f"other/nginx@{DIGEST_A}", False),
        (TAG_ONLY, "registry.example/lab/app:v1", True),
        (TAG_ONLY, f"registry.example/lab/app:v1@{DIGEST_B}", True),  # tag expected: tags compared
        (TAG_ONLY, f"registry.example/lab/app@{DIGEST_A}", False),  # which tag? cannot tell
        (TAG_ONLY, "registry.example/lab/app:v2", False),
        (TAG_ONLY, "registry.example/lab/app", False),
        (parse_image("nginx:latest"), "nginx", False),  # untagged is not :latest
        (parse_image("nginx:latest"), "nginx:latest", True),
        (parse_image("nginx"), "docker.io/library/nginx", True),
        (parse_image("nginx"), "nginx:latest", False),
        (parse_image("nginx"), f"nginx@{DIGEST_A}", False),
    ],
)
def test_template_image_matches(expected: ImageRef, actual: str, matches: bool) -> None:
    assert template_image_matches(expected, actual) is matches


@pytest.mark.parametrize(
    ("expected", "image_id", "matches"),
    [
        (PINNED, f"docker-pullable://registry.example/lab/app@{DIGEST_A}", True),
        (PINNED, f"registry.example/lab/app@{DIGEST_A}", True),
        (PINNED, DIGEST_A, True),
        (PINNED, f"mirror.example/cache/app@{DIGEST_A}", True),  # the digest identifies the content
        (PINNED, f"registry.example/lab/app@{DIGEST_B}", False),
        (PINNED, "", False),
        (PINNED, "garbage", False),
        (TAG_ONLY, f"registry.example/lab/app@{DIGEST_A}", False),  # nothing to verify
    ],
)
def test_digest_matches(expected: ImageRef, image_id: str, matches: bool) -> None:
    assert digest_matches(expected, image_id) is matches


@pytest.mark.parametrize(
    ("ref", "familiar"),
    [
        ("docker.io/my.org/app", "docker.io/my.org/app"),  # "my.org/app" would be registry my.org
        ("docker.io/localhost/app", "docker.io/localhost/app"),
        ("docker.io/library/nginx", "nginx"),
        ("docker.io/org/app", "org/app"),
    ],
)
def test_familiar_form_reads_back_as_the_same_image(ref: str, familiar: str) -> None:
    image = parse_image(ref)
    assert image.familiar() == familiar
    assert parse_image(familiar) == image


def test_same_repository_tells_containers_from_sidecars() -> None:
    expected = parse_image(f"registry.example/lab/jangar:1@{DIGEST_B}")
    assert same_repository(expected, "registry.example/lab/jangar:2")
    assert same_repository(expected, f"registry.example/lab/jangar@{DIGEST_B}")
    assert not same_repository(expected, "registry.example/lab/log-shipper:3.0")
    assert not same_repository(expected, "registry.example/lab/jangar-control-plane:1")
    assert same_repository(parse_image("nginx:1.25"), "docker.io/library/nginx:1.27")
    assert not same_repository(expected, "NOT AN IMAGE")
