"""The values pipeline: which source serves a valuesFrom, and what each source reads from a request."""

from __future__ import annotations

from typing import Any

import pytest

from rollback_verifier.api.models import ValuesFrom
from rollback_verifier.core.credentials import GitCredentials
from rollback_verifier.core.detection import HistoryEntry
from rollback_verifier.values.git import GitSource, GitValuesReader, application_repo_url
from rollback_verifier.values.helm_history import HelmHistorySource
from rollback_verifier.values.resolution import read_values, values_sources
from rollback_verifier.values.source import ReadValues, ValuesRequest, ValuesUnavailable

GIT = ValuesFrom.model_validate({"git": {"path": "values.yaml"}})
HISTORY_VALUES = ValuesFrom.model_validate({"applicationHelmValues": True})


def entry(id_: int, revision: str, tag: str) -> HistoryEntry:
    return HistoryEntry(id_, (revision,), None, {"helm": {"valuesObject": {"image": {"tag": tag}}}})


class RecordingReader(GitValuesReader):
    """A GitValuesReader that answers from a dict instead of running git (the git side has its own
    integration tests against real repositories)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, GitCredentials | None]] = []

    def read_values(
        self, repo_url: str, revision: str, path: str, credentials: GitCredentials | None = None
    ) -> dict[str, Any]:
        self.calls.append((repo_url, revision, path, credentials))
        return {"image": {"tag": f"at-{revision}"}}


def test_each_values_from_is_served_by_exactly_one_registered_source() -> None:
    sources = values_sources(None)
    for values_from in (None, GIT, HISTORY_VALUES):
        assert sum(s.serves(values_from) for s in sources) == 1


def test_the_history_source_reads_the_newest_entry_of_the_revision_asked_for() -> None:
    history = [entry(1, "a", "one"), entry(2, "b", "two"), entry(3, "a", "three")]
    read = read_values(values_sources(None), ValuesRequest(None, "a", "agents", history=history))
    assert read == ReadValues({"image": {"tag": "three"}}, "a", "Helm values of history entry 3")
    newest = read_values(values_sources(None), ValuesRequest(HISTORY_VALUES, None, "agents", history=history))
    assert newest.description == "Helm values of history entry 3"


def test_the_history_source_reads_the_entry_it_is_given_not_a_later_one_of_the_same_revision() -> None:
    history = [entry(1, "a", "one"), entry(2, "b", "two"), entry(3, "a", "three")]
    read = HelmHistorySource().read(ValuesRequest(None, "a", "agents", entry=history[0], history=history))
    assert read.values == {"image": {"tag": "one"}}


@pytest.mark.parametrize(
    ("history", "revision", "message"),
    [
        ([], None, "the Application agents has no sync history to read Helm values from"),
        ([entry(1, "a", "one")], "nope", "the Application agents has no history entry for revision nope"),
    ],
)
def test_the_history_source_says_which_entry_is_missing(
    history: list[HistoryEntry], revision: str | None, message: str
) -> None:
    with pytest.raises(ValuesUnavailable, match=message):
        HelmHistorySource().read(ValuesRequest(None, revision, "agents", history=history))


def test_the_git_source_reads_the_entry_revision_else_the_revision_else_head() -> None:
    reader = RecordingReader()
    source = GitSource(reader)
    credentials = GitCredentials(username="u", password="p")
    base = ValuesRequest(GIT, "r1", "agents", repo_url="https://git.example/r", credentials=credentials)
    assert source.read(base) == ReadValues({"image": {"tag": "at-r1"}}, "r1", "values.yaml at r1")
    source.read(ValuesRequest(GIT, None, "agents", repo_url="https://git.example/r"))
    source.read(ValuesRequest(GIT, "r1", "agents", entry=entry(4, "r4", "x"), repo_url="https://git.example/r"))
    assert [c[1] for c in reader.calls] == ["r1", "HEAD", "r4"]
    assert reader.calls[0] == ("https://git.example/r", "r1", "values.yaml", credentials)


@pytest.mark.parametrize(
    ("reader", "request_", "message"),
    [
        (None, ValuesRequest(GIT, "r", repo_url="https://git.example/r"), "git values cannot be read here"),
        (RecordingReader(), ValuesRequest(GIT, "r"), "no git repository URL was given"),
        (
            RecordingReader(),
            ValuesRequest(GIT, "a,b", entry=HistoryEntry(1, ("a", "b"), None, {}), repo_url="https://git.example/r"),
            "no single git source to read values from",
        ),
    ],
)
def test_the_git_source_says_what_it_lacks(
    reader: GitValuesReader | None, request_: ValuesRequest, message: str
) -> None:
    with pytest.raises(ValuesUnavailable, match=message):
        GitSource(reader).read(request_)


@pytest.mark.parametrize(
    ("application", "message"),
    [
        (None, "was not found to take it from"),
        ({"spec": {"sources": [{"repoURL": "https://a"}]}}, "has multiple sources"),
        ({"spec": {"source": {}}}, "has no source.repoURL"),
    ],
)
def test_the_default_repository_is_the_applications_single_source(application: Any, message: str) -> None:
    assert application_repo_url({"spec": {"source": {"repoURL": "https://a"}}}, "agents") == "https://a"
    with pytest.raises(ValuesUnavailable, match=message):
        application_repo_url(application, "agents")
