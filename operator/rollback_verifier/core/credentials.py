"""Repository credentials in Argo CD's repository-Secret format, and the redaction of URLs' user
info: pure, so that the trust rules (core) and the git source (values) share them."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]*)@")
_HTTP_SCHEMES = ("http://", "https://")


def redact_url(text: str) -> str:
    """`text` with the user info of every URL hidden.

    For http(s) the whole user info goes (a token is often given as the user name); for other
    schemes (ssh://git@host) only a password after ':' is hidden.
    """

    def hide(match: re.Match[str]) -> str:
        scheme, userinfo = match.group("scheme"), match.group("userinfo")
        if scheme.lower() in _HTTP_SCHEMES:
            return f"{scheme}***@"
        user, colon, _ = userinfo.partition(":")
        return f"{scheme}{user}:***@" if colon else match.group(0)

    return _URL_USERINFO.sub(hide, text)


@dataclass(frozen=True, repr=False)
class GitCredentials:
    """Repository credentials in Argo CD's repository-Secret format. Never shows its secrets."""

    url: str | None = None
    username: str | None = None
    password: str | None = None
    ssh_private_key: str | None = None
    insecure: bool = False

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> GitCredentials:
        """From a Secret's `.data` (base64 values): keys `url`, `username`, `password`,
        `sshPrivateKey`, `insecure` ("true" skips TLS / host key verification). Other keys of the
        format (`type`, `project`, `name`, `proxy`, `githubApp*`, ...) are ignored.

        Raises ValueError naming the key (never its value) when a value is not base64 UTF-8 text.
        """

        def decoded(key: str) -> str | None:
            raw = data.get(key)
            if raw is None or raw == "":
                return None
            try:
                return base64.b64decode(raw, validate=True).decode("utf-8")
            except (binascii.Error, ValueError, TypeError):
                raise ValueError(f"the Secret's key {key} is not base64-encoded UTF-8 text") from None

        insecure = (decoded("insecure") or "").strip().lower() == "true"
        return cls(
            url=decoded("url"),
            username=decoded("username"),
            password=decoded("password"),
            ssh_private_key=decoded("sshPrivateKey"),
            insecure=insecure,
        )

    def _fingerprint_material(self) -> bytes:
        parts = (self.username or "", self.password or "", self.ssh_private_key or "", str(self.insecure))
        return "\0".join(parts).encode()

    def __repr__(self) -> str:
        def state(value: str | None) -> str:
            return "<set>" if value else "<unset>"

        url = redact_url(self.url) if self.url else None
        return (
            f"GitCredentials(url={url!r}, username={self.username!r}, password={state(self.password)}, "
            f"ssh_private_key={state(self.ssh_private_key)}, insecure={self.insecure})"
        )

    __str__ = __repr__


def split_userinfo(repo_url: str) -> tuple[str, str | None, str | None]:
    """(URL without user info, user, password) for http(s) URLs; other URLs are left alone."""
    lowered = repo_url.lower()
    if not lowered.startswith(_HTTP_SCHEMES):
        return repo_url, None, None
    scheme_end = repo_url.index("://") + 3
    authority_end = len(repo_url)
    for separator in "/?#":
        found = repo_url.find(separator, scheme_end)
        if found != -1:
            authority_end = min(authority_end, found)
    authority = repo_url[scheme_end:authority_end]
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return repo_url, None, None
    user, colon, password = userinfo.partition(":")
    clean = repo_url[:scheme_end] + host + repo_url[authority_end:]
    return clean, unquote(user) or None, unquote(password) if colon else None
