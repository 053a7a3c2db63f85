"""GitValuesReader against real git repositories: local paths, file://, an authenticated smart-HTTP
server (git http-backend behind Basic auth) and a fake ssh. No cluster."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rollback_verifier.core.credentials import GitCredentials, redact_url
from rollback_verifier.values import git as values_git
from rollback_verifier.values.git import GitValuesReader
from rollback_verifier.values.source import ValuesUnavailable

pytestmark = pytest.mark.timeout(180)

VALUES_PATH = "argocd/applications/agents/values.yaml"
USERNAME = "rv-reader"
PASSWORD = "s3cr3t-Pa55w0rd-xyz"


def _values_yaml(tag: str) -> str:
    return f"image:\n  repository: registry.example/lab/jangar\n  tag: {tag}\ncontrollers:\n  enabled: true\n"


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git config, a committer identity: works on a fresh machine."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(name, "Rollback Verifier Tests")
    for name in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(name, "tests@rollback-verifier.invalid")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS", "GIT_ASKPASS"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Origin:
    path: Path
    git_bin: str
    revisions: list[str]  # commit SHAs, oldest first

    def git(self, *args: str) -> str:
        result = subprocess.run([self.git_bin, "-C", str(self.path), *args], check=True, capture_output=True, text=True)
        return result.stdout.strip()

    def commit_values(self, tag: str, message: str) -> str:
        target = self.path / VALUES_PATH
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_values_yaml(tag))
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", message)
        sha = self.git("rev-parse", "HEAD")
        self.revisions.append(sha)
        return sha


@pytest.fixture
def origin(tmp_path: Path, git_bin: str, isolated_git: None) -> Origin:
    """A repository with two commits changing the agents values, a tag, and a side branch."""
    path = tmp_path / "origin"
    subprocess.run([git_bin, "init", "--quiet", "-b", "main", str(path)], check=True)
    repo = Origin(path, git_bin, [])
    repo.commit_values("v1", "deploy v1")
    repo.git("tag", "release-1")
    repo.commit_values("v2", "deploy v2")
    return repo


@pytest.fixture
def reader(tmp_path: Path, git_bin: str) -> GitValuesReader:
    return GitValuesReader(tmp_path / "cache", git=git_bin, timeout_seconds=30)


def _tag(values: dict[str, Any]) -> str:
    return str(values["image"]["tag"])


# --- reading ------------------------------------------------------------------------------


def test_read_by_full_sha_and_by_branch(origin: Origin, reader: GitValuesReader) -> None:
    first, second = origin.revisions
    url = str(origin.path)
    assert _tag(reader.read_values(url, first, VALUES_PATH)) == "v1"
    assert _tag(reader.read_values(url, second, VALUES_PATH)) == "v2"
    assert _tag(reader.read_values(url, "main", VALUES_PATH)) == "v2"
    assert _tag(reader.read_values(url, "refs/heads/main", VALUES_PATH)) == "v2"
    assert _tag(reader.read_values(url, "release-1", VALUES_PATH)) == "v1"
    assert _tag(reader.read_values(url, "refs/tags/release-1", VALUES_PATH)) == "v1"
    assert _tag(reader.read_values(url, "HEAD", VALUES_PATH)) == "v2"
    assert _tag(reader.read_values(url, first[:10], VALUES_PATH)) == "v1"  # a short SHA
    assert _tag(reader.read_values(url, first.upper(), VALUES_PATH)) == "v1"
    assert _tag(reader.read_values(url, first, "/" + VALUES_PATH)) == "v1"
    assert _tag(reader.read_values(url, first, "./" + VALUES_PATH)) == "v1"
    assert reader.read_values(url, first, VALUES_PATH) == {
        "image": {"repository": "registry.example/lab/jangar", "tag": "v1"},
        "controllers": {"enabled": True},
    }


def test_file_url(origin: Origin, reader: GitValuesReader) -> None:
    assert _tag(reader.read_values(origin.path.as_uri(), origin.revisions[0], VALUES_PATH)) == "v1"


def test_resolve(origin: Origin, reader: GitValuesReader) -> None:
    first, second = origin.revisions
    url = str(origin.path)
    assert reader.resolve(url, "main") == second
    assert reader.resolve(url, "release-1") == first
    assert reader.resolve(url, first[:8]) == first
    assert reader.resolve(url, first) == first


def test_is_ancestor_both_ways(origin: Origin, reader: GitValuesReader) -> None:
    first, second = origin.revisions
    url = str(origin.path)
    assert reader.is_ancestor(url, first, second) is True
    assert reader.is_ancestor(url, second, first) is False
    assert reader.is_ancestor(url, first, first) is True
    assert reader.is_ancestor(url, "release-1", "main") is True
    origin.git("checkout", "--quiet", "-b", "side", first)
    side = origin.commit_values("side", "a side branch")
    assert reader.is_ancestor(url, side, second) is False
    assert reader.is_ancestor(url, second, side) is False


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image: [unclosed\n", "is not valid YAML"),
        ("- a\n- b\n", "is not a YAML mapping (it holds a list)"),
        ("just a string\n", "is not a YAML mapping (it holds a string)"),
        ("a: 1\n---\nb: 2\n", "is not valid YAML"),
        ("a: !!python/object:os.system x\n", "is not valid YAML"),  # safe_load: no arbitrary objects
    ],
)
def test_a_file_that_is_not_a_values_mapping(
    origin: Origin, reader: GitValuesReader, content: str, message: str
) -> None:
    (origin.path / VALUES_PATH).write_text(content)
    origin.git("commit", "--quiet", "-am", "break the values")
    sha = origin.git("rev-parse", "HEAD")
    with pytest.raises(ValuesUnavailable) as caught:
        reader.read_values(str(origin.path), sha, VALUES_PATH)
    assert message in str(caught.value)
    assert VALUES_PATH in str(caught.value)
    assert sha in str(caught.value)


def test_an_empty_file_is_empty_values(origin: Origin, reader: GitValuesReader) -> None:
    (origin.path / VALUES_PATH).write_text("")
    origin.git("commit", "--quiet", "-am", "empty")
    assert reader.read_values(str(origin.path), "main", VALUES_PATH) == {}


# --- what is missing ----------------------------------------------------------------------


def test_missing_file(origin: Origin, reader: GitValuesReader) -> None:
    first = origin.revisions[0]
    with pytest.raises(ValuesUnavailable) as caught:
        reader.read_values(str(origin.path), first, "argocd/applications/agents/missing.yaml")
    message = str(caught.value)
    assert "argocd/applications/agents/missing.yaml does not exist" in message
    assert first in message
    assert str(origin.path) in message

    with pytest.raises(ValuesUnavailable) as caught:
        reader.read_values(str(origin.path), "main", "argocd/applications/agents")
    assert "argocd/applications/agents" in str(caught.value)
    assert "is a tree, not a file" in str(caught.value)
    assert "main (" in str(caught.value)


def test_a_file_added_later_is_missing_at_the_older_revision(origin: Origin, reader: GitValuesReader) -> None:
    (origin.path / "new.yaml").write_text("a: 1\n")
    origin.git("add", "new.yaml")
    origin.git("commit", "--quiet", "-m", "new file")
    assert reader.read_values(str(origin.path), "main", "new.yaml") == {"a": 1}
    with pytest.raises(ValuesUnavailable, match=r"new\.yaml does not exist"):
        reader.read_values(str(origin.path), origin.revisions[0], "new.yaml")


@pytest.mark.parametrize("path", ["", "  ", "../outside.yaml", "a/../../b.yaml", "/"])
def test_paths_outside_the_tree(origin: Origin, reader: GitValuesReader, path: str) -> None:
    with pytest.raises(ValuesUnavailable):
        reader.read_values(str(origin.path), "main", path)


def test_missing_revision(origin: Origin, reader: GitValuesReader) -> None:
    url = str(origin.path)
    absent_sha = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(ValuesUnavailable) as caught:
        reader.read_values(url, absent_sha, VALUES_PATH)
    assert f"revision {absent_sha} not found in {url}" in str(caught.value)
    with pytest.raises(ValuesUnavailable) as caught:
        reader.read_values(url, "no-such-branch", VALUES_PATH)
    assert f"revision no-such-branch not found in {url}" in str(caught.value)
    with pytest.raises(ValuesUnavailable, match="revision abcdef12 not found"):
        reader.resolve(url, "abcdef12")


@pytest.mark.parametrize(
    "revision", ["", "--upload-pack=touch /tmp/pwned", "main..other", "a b", "main:x", "HEAD~1", "-x", "a\nb"]
)
def test_revisions_that_are_refused(origin: Origin, reader: GitValuesReader, revision: str) -> None:
    with pytest.raises(ValuesUnavailable):
        reader.read_values(str(origin.path), revision, VALUES_PATH)


def test_unreachable_repository_path(tmp_path: Path, reader: GitValuesReader) -> None:
    missing = str(tmp_path / "does-not-exist")
    with pytest.raises(ValuesUnavailable) as caught:
        reader.read_values(missing, "main", VALUES_PATH)
    message = str(caught.value)
    assert "cannot fetch revision main" in message
    assert missing in message
    assert "does not appear to be a git repository" in message
    with pytest.raises(ValuesUnavailable, match="cannot fetch revision 0123456789abcdef"):
        reader.read_values(missing, "0123456789abcdef0123456789abcdef01234567", VALUES_PATH)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_unreachable_http_remote(reader: GitValuesReader) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/x.git"
    with pytest.raises(ValuesUnavailable) as caught:
        reader.read_values(url, "main", VALUES_PATH)
    message = str(caught.value)
    assert f"cannot fetch revision main from {url}" in message
    assert "Failed to connect" in message or "Couldn't connect" in message


def test_a_hung_remote_times_out(tmp_path: Path, git_bin: str) -> None:
    # Accepts connections (the kernel does, through the backlog) and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x.git"
        reader = GitValuesReader(tmp_path / "cache", git=git_bin, timeout_seconds=2)
        started = time.monotonic()
        with pytest.raises(ValuesUnavailable) as caught:
            reader.read_values(url, "main", VALUES_PATH)
        elapsed = time.monotonic() - started
    assert "timed out after 2s" in str(caught.value)
    assert url in str(caught.value)
    assert elapsed < 10


def test_bad_repository_urls(reader: GitValuesReader) -> None:
    with pytest.raises(ValuesUnavailable, match="no git repository URL"):
        reader.read_values("", "main", VALUES_PATH)
    with pytest.raises(ValuesUnavailable, match="is not a git repository URL"):
        reader.read_values("--upload-pack=touch /tmp/pwned", "main", VALUES_PATH)


# --- the cache ----------------------------------------------------------------------------


def test_cached_shas_are_read_without_the_origin(origin: Origin, reader: GitValuesReader) -> None:
    first, second = origin.revisions
    url = str(origin.path)
    assert _tag(reader.read_values(url, "main", VALUES_PATH)) == "v2"  # fetches every branch
    shutil.rmtree(origin.path)
    # Both commits came with that fetch, and a full SHA in the cache needs no network.
    assert _tag(reader.read_values(url, first, VALUES_PATH)) == "v1"
    assert _tag(reader.read_values(url, second, VALUES_PATH)) == "v2"
    assert reader.is_ancestor(url, first, second) is True
    # A branch name is never served from the cache: it needs the origin.
    with pytest.raises(ValuesUnavailable, match="cannot fetch revision main"):
        reader.read_values(url, "main", VALUES_PATH)


def test_a_sha_fetched_by_sha_is_cached(origin: Origin, reader: GitValuesReader) -> None:
    first = origin.revisions[0]
    url = str(origin.path)
    assert _tag(reader.read_values(url, first, VALUES_PATH)) == "v1"
    shutil.rmtree(origin.path)
    assert _tag(reader.read_values(url, first, VALUES_PATH)) == "v1"


def test_a_second_reader_on_the_same_cache_uses_it(origin: Origin, tmp_path: Path, git_bin: str) -> None:
    url = str(origin.path)
    GitValuesReader(tmp_path / "cache", git=git_bin).read_values(url, "main", VALUES_PATH)
    shutil.rmtree(origin.path)
    again = GitValuesReader(tmp_path / "cache", git=git_bin)  # e.g. after an operator restart
    assert _tag(again.read_values(url, origin.revisions[0], VALUES_PATH)) == "v1"


def test_a_moved_branch_is_fetched_again(origin: Origin, reader: GitValuesReader) -> None:
    url = str(origin.path)
    assert _tag(reader.read_values(url, "main", VALUES_PATH)) == "v2"
    third = origin.commit_values("v3", "deploy v3")
    assert _tag(reader.read_values(url, "main", VALUES_PATH)) == "v3"
    assert reader.resolve(url, "main") == third
    # ... and moved back (a force-push of a rollback).
    origin.git("reset", "--quiet", "--hard", origin.revisions[0])
    assert _tag(reader.read_values(url, "main", VALUES_PATH)) == "v1"


def test_a_deleted_branch_is_not_served_stale(origin: Origin, reader: GitValuesReader) -> None:
    url = str(origin.path)
    origin.git("branch", "feature", origin.revisions[0])
    assert _tag(reader.read_values(url, "feature", VALUES_PATH)) == "v1"
    origin.git("branch", "--quiet", "-D", "feature")
    with pytest.raises(ValuesUnavailable, match="revision feature not found"):
        reader.read_values(url, "feature", VALUES_PATH)


def test_fetch_by_sha_refused_falls_back_to_branches(
    origin: Origin, reader: GitValuesReader, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Protocol v0 with uploadpack.allowReachableSHA1InWant off (the default) refuses a want of a
    # commit that is not a branch or tag tip: the older commit here.
    origin.git("tag", "--delete", "release-1")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.version")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "0")
    caplog.set_level(logging.DEBUG, logger=values_git.__name__)
    assert _tag(reader.read_values(origin.path.as_uri(), origin.revisions[0], VALUES_PATH)) == "v1"
    assert "fetch by SHA refused" in caplog.text


def test_concurrent_reads(origin: Origin, reader: GitValuesReader) -> None:
    first, second = origin.revisions
    url = str(origin.path)
    cases = [(first, "v1"), (second, "v2"), ("main", "v2"), ("release-1", "v1")] * 6
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda case: _tag(reader.read_values(url, case[0], VALUES_PATH)), cases))
    assert results == [expected for _, expected in cases]


def test_concurrent_readers_of_different_repositories(
    origin: Origin, tmp_path: Path, git_bin: str, reader: GitValuesReader
) -> None:
    other = Origin(tmp_path / "other", git_bin, [])
    subprocess.run([git_bin, "init", "--quiet", "-b", "main", str(other.path)], check=True)
    other.commit_values("other-1", "other")
    jobs = [(str(origin.path), "v2"), (str(other.path), "other-1")] * 8
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda job: _tag(reader.read_values(job[0], "main", VALUES_PATH)), jobs))
    assert results == [expected for _, expected in jobs]


def test_waiting_for_a_busy_repository_is_bounded(origin: Origin, tmp_path: Path, git_bin: str) -> None:
    reader = GitValuesReader(tmp_path / "cache", git=git_bin, timeout_seconds=1)
    url = str(origin.path)
    with reader._session(url, None):  # another thread's read, holding the repository's lock
        outcome: list[BaseException] = []

        def read() -> None:
            try:
                reader.read_values(url, "main", VALUES_PATH)
            except BaseException as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=read)
        waiter.start()
        waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ValuesUnavailable)
    assert "waiting for another read" in str(outcome[0])


# --- credentials --------------------------------------------------------------------------


def _secret_data(**fields: str) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in fields.items()}


def test_credentials_from_an_argo_cd_repository_secret() -> None:
    credentials = GitCredentials.from_secret_data(
        _secret_data(
            url="https://git.example/gitops.git",
            username=USERNAME,
            password=PASSWORD,
            insecure="true",
            type="git",
            project="default",
        )
    )
    assert credentials == GitCredentials(
        url="https://git.example/gitops.git", username=USERNAME, password=PASSWORD, insecure=True
    )
    ssh = GitCredentials.from_secret_data(_secret_data(sshPrivateKey="-----BEGIN KEY-----\nabc\n"))
    assert ssh.ssh_private_key == "-----BEGIN KEY-----\nabc\n"
    assert ssh.insecure is False
    assert GitCredentials.from_secret_data({}) == GitCredentials()
    assert GitCredentials.from_secret_data(_secret_data(insecure="false")).insecure is False


def test_credentials_never_show_their_secrets() -> None:
    credentials = GitCredentials(
        url=f"https://{USERNAME}:{PASSWORD}@git.example/x.git",
        username=USERNAME,
        password=PASSWORD,
        ssh_private_key="PRIVATE-KEY-MATERIAL",
    )
    for text in (repr(credentials), str(credentials), f"{credentials}", f"{credentials!r}"):
        assert PASSWORD not in text
        assert "PRIVATE-KEY-MATERIAL" not in text
        assert "password=<set>" in text
        assert "ssh_private_key=<set>" in text
    assert "password=<unset>" in repr(GitCredentials())


def test_a_secret_value_that_is_not_base64() -> None:
    with pytest.raises(ValueError, match="key password is not base64") as caught:
        GitCredentials.from_secret_data({"password": "not base64 %%%"})
    assert "%%%" not in str(caught.value)
    with pytest.raises(ValueError, match="key username is not base64-encoded UTF-8"):
        GitCredentials.from_secret_data({"username": base64.b64encode(b"\xff\xfe").decode()})


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("https://user:pass@git.example/x.git", "https://***@git.example/x.git"),
        ("https://ghp_token@github.com/org/x", "https://***@github.com/org/x"),
        (
            "fatal: unable to access 'http://u:p@h:80/x/': refused",
            "fatal: unable to access 'http://***@h:80/x/': refused",
        ),
        ("ssh://git@git.example/x.git", "ssh://git@git.example/x.git"),
        ("ssh://git:pw@git.example/x.git", "ssh://git:***@git.example/x.git"),
        ("git@github.com:org/x.git", "git@github.com:org/x.git"),
        ("https://git.example/x.git", "https://git.example/x.git"),
    ],
)
def test_redact_url(text: str, redacted: str) -> None:
    assert redact_url(text) == redacted


# --- an authenticated smart-HTTP remote ---------------------------------------------------


class _GitHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, project_root: Path, backend: str) -> None:
        super().__init__(("127.0.0.1", 0), _GitHttpHandler)
        self.project_root = project_root
        self.backend = backend
        self.authorization = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()


class _GitHttpHandler(BaseHTTPRequestHandler):
    """git http-backend as a CGI, behind HTTP Basic auth."""

    server: _GitHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        if self.headers.get("Authorization") != self.server.authorization:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self._body()
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(self.server.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": USERNAME,
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        result = subprocess.run(
            [self.server.backend], input=body, env=env, capture_output=True, timeout=60, check=False
        )
        # The CGI headers end at the first blank line, whichever line ending the backend used.
        ends = [i for i in (result.stdout.find(b"\r\n\r\n"), result.stdout.find(b"\n\n")) if i != -1]
        separator = b"\r\n\r\n" if ends and result.stdout.find(b"\r\n\r\n") == min(ends) else b"\n\n"
        head, _, payload = result.stdout.partition(separator)
        head = head.replace(b"\r\n", b"\n")
        headers = [line.split(b":", 1) for line in head.split(b"\n") if b":" in line]
        status = next((int(v.strip().split()[0]) for k, v in headers if k.lower() == b"status"), 200)
        self.send_response(status)
        for key, value in headers:
            if key.lower() != b"status":
                self.send_header(key.decode(), value.strip().decode())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def http_remote(origin: Origin, tmp_path: Path, git_bin: str) -> Iterator[str]:
    """The origin, as a bare repository served over smart HTTP with Basic auth; yields its URL."""
    root = tmp_path / "served"
    root.mkdir()
    subprocess.run([git_bin, "clone", "--quiet", "--bare", str(origin.path), str(root / "gitops.git")], check=True)
    exec_path = subprocess.run([git_bin, "--exec-path"], check=True, capture_output=True, text=True).stdout
    server = _GitHttpServer(root, str(Path(exec_path.strip()) / "git-http-backend"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/gitops.git"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def recorded_argv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of every process started while the test runs."""
    started: list[list[str]] = []
    real_popen = subprocess.Popen

    def recording_popen(args: Any, *rest: Any, **options: Any) -> Any:
        started.append([str(a) for a in args] if isinstance(args, list | tuple) else [str(args)])
        return real_popen(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    return started


def _assert_no_password(texts: list[str]) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode() not in text


def test_http_with_the_right_credentials(
    origin: Origin,
    http_remote: str,
    reader: GitValuesReader,
    recorded_argv: list[list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = GitCredentials(username=USERNAME, password=PASSWORD)
    first, second = origin.revisions
    assert _tag(reader.read_values(http_remote, first, VALUES_PATH, credentials)) == "v1"
    assert _tag(reader.read_values(http_remote, "main", VALUES_PATH, credentials)) == "v2"
    assert reader.is_ancestor(http_remote, first, second, credentials) is True
    assert any("fetch" in argv for argv in recorded_argv)
    _assert_no_password([" ".join(argv) for argv in recorded_argv] + [caplog.text])


def test_http_credentials_in_the_url(
    origin: Origin, http_remote: str, reader: GitValuesReader, recorded_argv: list[list[str]]
) -> None:
    url = http_remote.replace("http://", f"http://{USERNAME}:{PASSWORD}@")
    assert _tag(reader.read_values(url, origin.revisions[0], VALUES_PATH)) == "v1"
    _assert_no_password([" ".join(argv) for argv in recorded_argv])

    wrong = http_remote.replace("http://", f"http://{USERNAME}:wrong-{PASSWORD}@")
    with pytest.raises(ValuesUnavailable) as caught:
        reader.read_values(wrong, "main", VALUES_PATH)
    _assert_no_password([str(caught.value)])
    assert "http://***@127.0.0.1" in str(caught.value)


def test_http_with_wrong_or_no_credentials(
    http_remote: str,
    reader: GitValuesReader,
    recorded_argv: list[list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = GitCredentials(username=USERNAME, password="wrong-" + PASSWORD)
    with pytest.raises(ValuesUnavailable) as caught:
        reader.read_values(http_remote, "main", VALUES_PATH, wrong)
    message = str(caught.value)
    assert "cannot fetch revision main" in message
    assert "Authentication failed" in message
    assert http_remote in message
    _assert_no_password([message, caplog.text] + [" ".join(argv) for argv in recorded_argv])
    assert "wrong-" + PASSWORD not in message + caplog.text

    with pytest.raises(ValuesUnavailable, match="cannot fetch revision main"):
        reader.read_values(http_remote, "main", VALUES_PATH)


def test_revisions_fetched_with_credentials_are_not_served_to_others(
    origin: Origin, http_remote: str, reader: GitValuesReader
) -> None:
    first = origin.revisions[0]
    credentials = GitCredentials(username=USERNAME, password=PASSWORD)
    assert _tag(reader.read_values(http_remote, first, VALUES_PATH, credentials)) == "v1"
    # The same SHA, now in a cache, but not in the cache of these callers.
    with pytest.raises(ValuesUnavailable):
        reader.read_values(http_remote, first, VALUES_PATH)
    with pytest.raises(ValuesUnavailable):
        reader.read_values(http_remote, first, VALUES_PATH, GitCredentials(username=USERNAME, password="nope"))
    # ... while the right credentials still read it.
    assert _tag(reader.read_values(http_remote, first, VALUES_PATH, credentials)) == "v1"


def test_cache_folder_names_reveal_nothing(
    origin: Origin, http_remote: str, reader: GitValuesReader, tmp_path: Path
) -> None:
    credentials = GitCredentials(username=USERNAME, password=PASSWORD)
    reader.read_values(http_remote, "main", VALUES_PATH, credentials)
    for path in (tmp_path / "cache").rglob("*"):
        assert PASSWORD not in str(path)
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert PASSWORD.encode() not in path.read_bytes()


# --- SSH ----------------------------------------------------------------------------------

_FAKE_SSH = """#!/bin/sh
# Records how git called ssh, and the key file it was given, then fails like an unreachable host.
log="$FAKE_SSH_LOG"
printf '%s\\n' "$*" >> "$log"
while [ $# -gt 0 ]; do
  if [ "$1" = "-i" ]; then
    stat -c '%a' "$2" >> "$log"
    cat "$2" >> "$log"
    echo "$2" >> "$log.keyfiles"
  fi
  shift
done
echo "ssh: connect to host 127.0.0.1 port 1: Connection refused" >&2
exit 255
"""


def test_ssh_key_goes_through_a_private_temporary_file(
    tmp_path: Path, reader: GitValuesReader, monkeypatch: pytest.MonkeyPatch, recorded_argv: list[list[str]]
) -> None:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    fake_ssh = bin_dir / "ssh"
    fake_ssh.write_text(_FAKE_SSH)
    fake_ssh.chmod(fake_ssh.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nUNIQUE-KEY-MATERIAL\n-----END OPENSSH PRIVATE KEY-----"
    credentials = GitCredentials(ssh_private_key=key, insecure=True)

    with pytest.raises(ValuesUnavailable) as caught:
        reader.read_values("ssh://git@127.0.0.1:1/gitops.git", "main", VALUES_PATH, credentials)
    message = str(caught.value)
    assert "cannot fetch revision main from ssh://git@127.0.0.1:1/gitops.git" in message
    assert "UNIQUE-KEY-MATERIAL" not in message

    recorded = log.read_text()
    assert "BatchMode=yes" in recorded
    assert "IdentitiesOnly=yes" in recorded
    assert "StrictHostKeyChecking=no" in recorded  # insecure: "true"
    assert "\n600\n" in recorded  # the key file was private
    assert "UNIQUE-KEY-MATERIAL" in recorded  # ... and held the key, with its final newline
    assert key + "\n" in recorded
    key_files = (tmp_path / "ssh.log.keyfiles").read_text().split()
    assert key_files
    assert not any(Path(name).exists() for name in key_files)  # removed afterwards
    assert not any("UNIQUE-KEY-MATERIAL" in " ".join(argv) for argv in recorded_argv)


def test_ssh_without_insecure_checks_host_keys(
    tmp_path: Path, reader: GitValuesReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(_FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    with pytest.raises(ValuesUnavailable):
        reader.read_values("git@127.0.0.1:gitops.git", "main", VALUES_PATH, GitCredentials(ssh_private_key="K"))
    recorded = log.read_text()
    assert "BatchMode=yes" in recorded
    assert "StrictHostKeyChecking=no" not in recorded


def test_git_itself_refuses_the_transports_it_is_not_allowed(origin: Origin, tmp_path: Path, git_bin: str) -> None:
    """Behind the trust rules, git's own allow-list: a reader without `file` cannot read a file:// URL."""
    reader = GitValuesReader(tmp_path / "strict-cache", git=git_bin, protocols=("https", "http", "ssh"))
    with pytest.raises(ValuesUnavailable, match="transport 'file' not allowed"):
        reader.read_values(origin.path.as_uri(), "main", VALUES_PATH)
    with pytest.raises(ValuesUnavailable, match="transport 'ext' not allowed"):
        reader.read_values("ext::sh -c id", "main", VALUES_PATH)
