"""The Helm values a rollback reverted to: a values file in git at a revision, or the inline Helm
values of an Argo CD history entry's source.

Git is driven through the real `git` binary with a local cache: one bare repository per
(repository URL, credentials) under the cache folder. The credentials are part of the cache key so
that a revision fetched with one Secret's credentials is never served, from cache, to a
verification that has other credentials or none (another namespace may not be allowed to read that
repository).

Secrets never reach argv, logs or messages: HTTPS username/password go to git through a GIT_ASKPASS
helper that reads them from the child's environment, an SSH key through a 0600 temporary file named
in GIT_SSH_COMMAND, and every URL in a message has its user info redacted.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback_verifier.api.models import ValuesFrom
from rollback_verifier.core.credentials import GitCredentials, redact_url, split_userinfo
from rollback_verifier.tools import find_tool
from rollback_verifier.values.source import ReadValues, ValuesRequest, ValuesUnavailable, load_values_yaml

logger = logging.getLogger(__name__)


# A values file larger than this is not a values file; refuse rather than load it into memory.
MAX_VALUES_FILE_BYTES = 8 * 1024 * 1024

_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SHORT_SHA = re.compile(r"[0-9a-f]{4,63}")
# What `git check-ref-format` forbids, plus a leading '-' so that nothing reads as an option.
_BAD_REVISION = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[-/.]|[/.]$|\.lock$")

# Git environment variables that would point our commands at another repository.
_FOREIGN_GIT_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
)
_ASKPASS_USERNAME_ENV = "RV_GIT_USERNAME"
_ASKPASS_PASSWORD_ENV = "RV_GIT_PASSWORD"  # noqa: S105 (the name of a variable, not a password)
# Answers git's "Username for ...:" and "Password for ...:" prompts from the environment, so that
# the secrets never appear in argv or in a file.
_ASKPASS_SCRIPT = f"""#!/bin/sh
case "$1" in
  [Uu]sername*) printf '%s\\n' "${_ASKPASS_USERNAME_ENV}" ;;
  *) printf '%s\\n' "${_ASKPASS_PASSWORD_ENV}" ;;
esac
"""


# --- Git ----------------------------------------------------------------------------------

_LOCKS_GUARD = threading.Lock()
_FOLDER_LOCKS: dict[Path, threading.Lock] = {}


def _folder_lock(folder: Path) -> threading.Lock:
    """One lock per cache folder, shared by every reader in this process."""
    with _LOCKS_GUARD:
        return _FOLDER_LOCKS.setdefault(folder, threading.Lock())


class _GitTimeout(Exception):
    pass


@dataclass(frozen=True)
class _GitResult:
    returncode: int
    stdout: bytes
    stderr: str


class GitValuesReader:
    """Reads files at revisions of git repositories, through a local cache of fetched revisions.

    - A full commit SHA already in the cache is read with no network access.
    - Any other revision (branch, tag, `HEAD`, short SHA) is fetched fresh every time: a moved
      branch is never served stale, and a deleted one is reported as missing.
    - A full SHA not in the cache is fetched by SHA, or, when the server refuses that, by fetching
      all branches and tags.
    - Every call finishes within about `timeout_seconds` (waiting for another thread on the same
      repository included); a hung remote ends in ValuesUnavailable.
    - Thread-safe: one lock per cache folder.
    """

    def __init__(
        self,
        cache_dir: Path,
        git: str | None = None,
        timeout_seconds: float = 60,
        protocols: tuple[str, ...] = ("https", "http", "ssh", "file"),
    ) -> None:
        self.cache_dir = Path(cache_dir)
        # git's own allow-list (GIT_ALLOW_PROTOCOL), behind the trust rules: no ext::, fd::, git://.
        self.protocols = protocols
        self.git = git or find_tool("git")
        self.timeout_seconds = timeout_seconds
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._askpass = self._install_askpass()
        self._salt = self._credentials_salt()

    # Public API

    def read_values(
        self, repo_url: str, revision: str, path: str, credentials: GitCredentials | None = None
    ) -> dict[str, Any]:
        """The YAML mapping in `path` at `revision`. An empty file is `{}` (as Helm reads it)."""
        clean_path = _clean_path(path)
        with self._session(repo_url, credentials) as session:
            sha = session.resolve(revision)
            text = session.read_file(sha, clean_path, revision)
        where = f"{clean_path} at revision {_shown_revision(revision, sha)} of {session.shown_url}"
        return load_values_yaml(text, where)

    def resolve(self, repo_url: str, revision: str, credentials: GitCredentials | None = None) -> str:
        """The full commit SHA that `revision` names."""
        with self._session(repo_url, credentials) as session:
            return session.resolve(revision)

    def is_ancestor(self, repo_url: str, older: str, newer: str, credentials: GitCredentials | None = None) -> bool:
        """Whether `older` is an ancestor of (or the same commit as) `newer`."""
        with self._session(repo_url, credentials) as session:
            older_sha = session.resolve(older)
            newer_sha = session.resolve(newer)
            result = session.git("merge-base", "--is-ancestor", older_sha, newer_sha, check=False)
            if result.returncode in (0, 1):
                return result.returncode == 0
            raise ValuesUnavailable(
                f"cannot tell whether {older} is an ancestor of {newer} in {session.shown_url}: "
                f"{session.redact(result.stderr)}"
            )

    # Set-up

    def _install_askpass(self) -> Path:
        script = self.cache_dir / ".rv-git-askpass"
        if not script.is_file() or script.read_text() != _ASKPASS_SCRIPT:
            temporary = script.with_name(f"{script.name}.{os.getpid()}.{threading.get_ident()}")
            temporary.write_text(_ASKPASS_SCRIPT)
            temporary.chmod(0o700)
            temporary.replace(script)
        return script

    def _credentials_salt(self) -> bytes:
        """A random key, kept in the cache, so folder names reveal nothing about the credentials."""
        salt_file = self.cache_dir / ".rv-credentials-salt"
        with contextlib.suppress(FileExistsError):
            descriptor = os.open(salt_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(secrets.token_bytes(32))
        salt = salt_file.read_bytes()
        if len(salt) != 32:  # a write cut short: start over with a fresh salt
            salt = secrets.token_bytes(32)
            salt_file.write_bytes(salt)
        return salt

    def _cache_folder(self, url: str, credentials: GitCredentials | None) -> Path:
        material = credentials._fingerprint_material() if credentials else b""
        fingerprint = hmac.new(self._salt, material, hashlib.sha256).hexdigest() if material else "anonymous"
        key = hashlib.sha256(f"{url}\n{fingerprint}".encode()).hexdigest()[:32]
        return self.cache_dir / f"{key}.git"

    @contextlib.contextmanager
    def _session(self, repo_url: str, credentials: GitCredentials | None) -> Iterator[_GitSession]:
        deadline = time.monotonic() + self.timeout_seconds
        if not isinstance(repo_url, str) or not repo_url.strip():
            raise ValuesUnavailable("no git repository URL was given")
        shown_url = redact_url(repo_url)
        if repo_url.startswith("-") or any(c in repo_url for c in "\0\n\r"):
            raise ValuesUnavailable(f"{shown_url!r} is not a git repository URL")
        url, url_user, url_password = split_userinfo(repo_url.strip())
        username = credentials.username if credentials and credentials.username else url_user
        password = credentials.password if credentials and credentials.password else url_password
        effective = GitCredentials(
            url=credentials.url if credentials else None,
            username=username,
            password=password,
            ssh_private_key=credentials.ssh_private_key if credentials else None,
            insecure=credentials.insecure if credentials else False,
        )
        has_secrets = bool(username or password or effective.ssh_private_key or effective.insecure)
        folder = self._cache_folder(url, effective if has_secrets else None)

        lock = _folder_lock(folder)
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise ValuesUnavailable(
                f"timed out after {self.timeout_seconds:g}s waiting for another read of {shown_url}"
            )
        key_file: Path | None = None
        try:
            if effective.ssh_private_key:
                key_file = _write_private_key(effective.ssh_private_key)
            env = self._environment(effective, key_file)
            session = _GitSession(
                git=self.git,
                folder=folder,
                url=url,
                shown_url=shown_url,
                env=env,
                deadline=deadline,
                timeout_seconds=self.timeout_seconds,
                secret_values=tuple(s for s in (password, effective.ssh_private_key) if s),
                insecure=effective.insecure,
            )
            session.ensure_repository()
            yield session
        finally:
            if key_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    key_file.unlink()
            lock.release()

    def _environment(self, credentials: GitCredentials, key_file: Path | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_GIT_VARIABLES}
        env.pop(_ASKPASS_USERNAME_ENV, None)
        env.pop(_ASKPASS_PASSWORD_ENV, None)
        env.update(
            GIT_TERMINAL_PROMPT="0",  # fail instead of prompting
            GIT_ASKPASS=str(self._askpass),
            GIT_ALLOW_PROTOCOL=":".join(self.protocols),
            LC_ALL="C",  # stable, English messages
            # A remote that stops sending ends the transfer early, on every transport: http(s) below
            # 1 KB/s for 30 s, ssh after two unanswered keepalives (below); the deadline kills the rest.
            GIT_HTTP_LOW_SPEED_LIMIT="1000",
            GIT_HTTP_LOW_SPEED_TIME="30",
        )
        if credentials.username:
            env[_ASKPASS_USERNAME_ENV] = credentials.username
        if credentials.password:
            env[_ASKPASS_PASSWORD_ENV] = credentials.password
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(self.timeout_seconds))}"]
        ssh += ["-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=2"]
        if key_file is not None:
            ssh += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
        if credentials.insecure:
            ssh += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        return env


def _write_private_key(key: str) -> Path:
    descriptor, name = tempfile.mkstemp(prefix="rv-ssh-key-")  # created 0600
    with os.fdopen(descriptor, "w") as stream:
        stream.write(key if key.endswith("\n") else key + "\n")  # ssh rejects a key without it
    return Path(name)


class _GitSession:
    """git commands on one cache folder, under its lock, within one deadline."""

    def __init__(
        self,
        *,
        git: str,
        folder: Path,
        url: str,
        shown_url: str,
        env: dict[str, str],
        deadline: float,
        timeout_seconds: float,
        secret_values: tuple[str, ...],
        insecure: bool,
    ) -> None:
        self._git = git
        self.folder = folder
        self.url = url
        self.shown_url = shown_url
        self._env = env
        self._deadline = deadline
        self._timeout_seconds = timeout_seconds
        self._secrets = secret_values
        self._insecure = insecure

    def redact(self, text: str) -> str:
        text = redact_url(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text.strip()

    def git(self, *args: str, check: bool = True, network: bool = False) -> _GitResult:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _GitTimeout
        config = ["-c", "credential.helper="]  # no stored credentials read, none written
        if network and self._insecure:
            config += ["-c", "http.sslVerify=false"]
        argv = [self._git, *config, f"--git-dir={self.folder}", *args]
        logger.debug("git %s (%s)", args[0], self.shown_url)
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env,
            start_new_session=True,  # so that a timeout can kill git's helpers (remote-http, ssh) too
        )
        try:
            stdout, stderr = process.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise _GitTimeout from None
        result = _GitResult(process.returncode, stdout, stderr.decode("utf-8", "replace"))
        if check and result.returncode != 0:
            raise ValuesUnavailable(f"git {args[0]} failed for {self.shown_url}: {self._git_error(result)}")
        return result

    def _git_error(self, result: _GitResult) -> str:
        """git's own explanation: its first `fatal:`/`error:` line (later lines are generic advice)."""
        lines = [line.strip() for line in self.redact(result.stderr).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
        if errors:
            return errors[0]
        return lines[-1] if lines else f"exit status {result.returncode}"

    def ensure_repository(self) -> None:
        if (self.folder / "HEAD").is_file():
            return
        try:
            subprocess.run(
                [self._git, "init", "--quiet", "--bare", str(self.folder)],
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=True,
                timeout=max(1.0, self._deadline - time.monotonic()),
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise ValuesUnavailable(f"cannot create the git cache for {self.shown_url}: {exc}") from None

    def _timed_out(self, doing: str) -> ValuesUnavailable:
        return ValuesUnavailable(
            f"timed out after {self._timeout_seconds:g}s {doing} {self.shown_url} (is the remote reachable?)"
        )

    def _has_commit(self, sha: str) -> bool:
        return self.git("cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode == 0

    def _fetch(self, *refspecs: str, prune: bool = False) -> _GitResult:
        options = ["--quiet", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head"]
        if prune:
            options.append("--prune")
        return self.git("fetch", *options, "--", self.url, *refspecs, check=False, network=True)

    def _fetch_branches_and_tags(self, revision: str, include_head: bool = False) -> None:
        refspecs = ["+refs/heads/*:refs/rv/heads/*", "+refs/tags/*:refs/rv/tags/*"]
        if include_head:
            refspecs.append("+HEAD:refs/rv/HEAD")
        result = self._fetch(*refspecs, prune=True)
        if result.returncode != 0:
            raise ValuesUnavailable(
                f"cannot fetch revision {revision} from {self.shown_url}: {self._git_error(result)}"
            )

    def _lookup(self, revision: str) -> str | None:
        if revision == "HEAD":
            candidates = ["refs/rv/HEAD"]
        elif revision.startswith("refs/heads/"):
            candidates = ["refs/rv/heads/" + revision.removeprefix("refs/heads/")]
        elif revision.startswith("refs/tags/"):
            candidates = ["refs/rv/tags/" + revision.removeprefix("refs/tags/")]
        else:
            candidates = [f"refs/rv/heads/{revision}", f"refs/rv/tags/{revision}"]
            if _SHORT_SHA.fullmatch(revision):
                candidates.append(revision)
        for candidate in candidates:
            result = self.git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", check=False)
            if result.returncode == 0:
                return result.stdout.decode().strip()
        return None

    def resolve(self, revision: str) -> str:
        """The full SHA of `revision`, fetching only when the cache cannot answer."""
        revision = revision.strip() if isinstance(revision, str) else ""
        if not revision:
            raise ValuesUnavailable(f"no revision was given to read from {self.shown_url}")
        if _BAD_REVISION.search(revision) or len(revision) > 256:
            raise ValuesUnavailable(f"{revision[:80]!r} is not a valid git revision")
        try:
            if _FULL_SHA.fullmatch(revision.lower()):
                sha = revision.lower()
                if self._has_commit(sha):
                    logger.debug("revision %s of %s served from the cache", sha, self.shown_url)
                else:
                    self._fetch_commit(sha)
            else:
                self._fetch_branches_and_tags(revision, include_head=revision == "HEAD")
                found = self._lookup(revision)
                if found is None:
                    raise ValuesUnavailable(
                        f"revision {revision} not found in {self.shown_url} (no branch, tag or commit by that name)"
                    )
                sha = found
            # A ref per resolved commit keeps it from garbage collection once no branch holds it.
            self.git("update-ref", f"refs/rv/commits/{sha}", sha)
        except _GitTimeout:
            raise self._timed_out(f"fetching revision {revision} from") from None
        return sha

    def _fetch_commit(self, sha: str) -> None:
        logger.debug("fetching commit %s from %s", sha, self.shown_url)
        by_sha = self._fetch(f"+{sha}:refs/rv/commits/{sha}")
        if by_sha.returncode == 0 and self._has_commit(sha):
            return
        # Not every server lets a client fetch a commit by SHA: fetch everything, then look.
        logger.debug("fetch by SHA refused (%s); fetching branches and tags", self._git_error(by_sha))
        self._fetch_branches_and_tags(sha)
        if not self._has_commit(sha):
            raise ValuesUnavailable(f"revision {sha} not found in {self.shown_url}")

    def read_file(self, sha: str, path: str, revision: str) -> str:
        where = f"at revision {_shown_revision(revision, sha)} of {self.shown_url}"
        spec = f"{sha}:{path}"
        try:
            kind = self.git("cat-file", "-t", spec, check=False)
            if kind.returncode != 0:
                raise ValuesUnavailable(f"{path} does not exist {where}")
            object_type = kind.stdout.decode().strip()
            if object_type != "blob":
                raise ValuesUnavailable(f"{path} {where} is a {object_type}, not a file")
            size = int(self.git("cat-file", "-s", spec).stdout.decode().strip())
            if size > MAX_VALUES_FILE_BYTES:
                raise ValuesUnavailable(f"{path} {where} is {size} bytes, too large for a values file")
            content = self.git("cat-file", "blob", spec).stdout
        except _GitTimeout:
            raise self._timed_out(f"reading {path} from") from None
        try:
            return content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValuesUnavailable(f"{path} {where} is not UTF-8 text") from None


def _shown_revision(revision: str, sha: str) -> str:
    revision = revision.strip()
    return sha if revision.lower() == sha else f"{revision} ({sha})"


def _clean_path(path: str) -> str:
    """A repository-relative path; refuses what could name something outside the tree."""
    if not isinstance(path, str) or not path.strip():
        raise ValuesUnavailable("no values file path was given")
    parts = [p for p in path.strip().split("/") if p not in ("", ".")]
    if not parts or ".." in parts or any(c in path for c in "\0\n\r"):
        raise ValuesUnavailable(f"{path!r} is not a file path inside the repository")
    return "/".join(parts)


def application_repo_url(application: Mapping[str, Any] | None, app_name: str) -> str:
    """The repository valuesFrom.git reads when it names none: the Application's source repoURL."""
    if not application:
        raise ValuesUnavailable(
            f"valuesFrom.git has no repoURL and the Application {app_name} was not found to take it from"
        )
    spec = application.get("spec") or {}
    if spec.get("sources") and not spec.get("source"):
        raise ValuesUnavailable(
            f"the Application {app_name} has multiple sources: set valuesFrom.git.repoURL to say which one"
        )
    url = (spec.get("source") or {}).get("repoURL")
    if not url:
        raise ValuesUnavailable(f"the Application {app_name} has no source.repoURL")
    return str(url)


class GitSource:
    """valuesFrom.git: a values file at the revision, read with `reader` (None: git cannot be read here)."""

    def __init__(self, reader: GitValuesReader | None) -> None:
        self.reader = reader

    def serves(self, values_from: ValuesFrom | None) -> bool:
        return values_from is not None and values_from.git is not None

    def read(self, request: ValuesRequest) -> ReadValues:
        git = request.values_from.git if request.values_from else None
        if git is None:
            raise ValuesUnavailable("valuesFrom names no git source")
        if request.entry is not None and len(request.entry.revisions) != 1:
            raise ValuesUnavailable("no single git source to read values from")
        if self.reader is None:
            raise ValuesUnavailable("git values cannot be read here")
        if not request.repo_url:
            raise ValuesUnavailable("no git repository URL was given")
        revision = request.entry.revision if request.entry else request.revision or "HEAD"
        values = self.reader.read_values(request.repo_url, revision, git.path, request.credentials)
        return ReadValues(values, revision, f"{git.path} at {revision[:12]}")
