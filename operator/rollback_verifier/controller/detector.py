"""The shell of detection: on each Application event, judge the history entries not judged yet and
create one RollbackVerification per rollback. Git work runs in worker threads; each Application is
handled by one coroutine at a time; creation is idempotent by name (history id)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from rollback_verifier.api.models import Target
from rollback_verifier.api.settings import Settings, WatchedApplication
from rollback_verifier.controller.metrics import Metrics
from rollback_verifier.controller.workers import Pools, Workers
from rollback_verifier.core.credentials import GitCredentials
from rollback_verifier.core.detection import (
    APPLICATION_LABEL,
    STRATEGIES,
    HistoryEntry,
    Images,
    Lookups,
    Rollback,
    history_entries,
    to_examine,
    verification_manifest,
    verifications_to_prune,
)
from rollback_verifier.core.images import InvalidImageReference, InvalidImageValues, resolve_expected_image
from rollback_verifier.values.git import GitValuesReader, application_repo_url
from rollback_verifier.values.resolution import read_values, values_sources
from rollback_verifier.values.source import ValuesRequest, ValuesUnavailable

log = logging.getLogger(__name__)


class DetectionStore(Protocol):
    """What detection reads and writes through the API (blocking: called in the API pool)."""

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str]: ...
    def create_verification(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """The object created; None when one of that name exists already."""
        ...

    def list_verifications(self, namespace: str | None, label_selector: str = "") -> list[dict[str, Any]]: ...
    def delete_verification(self, namespace: str, name: str, uid: str) -> None: ...


class Detector:
    def __init__(
        self,
        kube: DetectionStore,
        metrics: Metrics,
        reader: GitValuesReader | None,
        settings: Settings,
        workers: Pools | None = None,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.now = now  # wall time, for the lookback window
        # Git reads in the git pool, API calls in the API pool: detection never delays status writes.
        self.workers: Pools = workers or Workers(budget_seconds=reader.timeout_seconds if reader else 60.0)
        self.metrics = metrics
        self.reader = reader
        self.sources = values_sources(reader)
        self.settings = settings
        self.watched = {(a.namespace, a.name): a for a in settings.detection.applications}
        self._decided: dict[str, set[int]] = defaultdict(set)  # Application uid -> history ids judged
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._images: dict[tuple[str, str], Images | None] = {}  # (app uid, revision) -> images
        self._warned: set[str] = set()

    def check_configured(self, present: list[str], namespace: str) -> None:
        """Say clearly, once, which configured Applications do not exist (only when detection is on:
        otherwise the settings' Applications are not used)."""
        if not self.settings.detection.enabled:
            return
        for ns, name in self.watched:
            if ns == namespace and name not in present:
                log.warning(
                    "detection: Application %s/%s from the settings does not exist (yet); "
                    "rollbacks of it are detected once it appears",
                    ns,
                    name,
                )

    async def on_application(self, app: Mapping[str, Any]) -> None:
        if not self.settings.detection.enabled:
            return
        meta = app.get("metadata") or {}
        watched = self.watched.get((meta.get("namespace", ""), meta.get("name", "")))
        if watched is None:
            return
        uid = str(meta.get("uid"))
        async with self._locks[uid]:
            entries = history_entries(app)
            decided = self._decided[uid]
            for index in to_examine(entries, decided, self.now(), self.settings.detection.lookbackSeconds):
                rollback = await self._judge(app, watched, entries, index)
                decided.add(entries[index].id)
                if rollback is not None:
                    await self._create(watched, rollback, meta.get("namespace", ""))
            # Forget what Argo CD truncated from history: memory stays bounded however long it runs.
            decided &= {e.id for e in entries}
            revisions = {e.revision for e in entries}
            for key in [k for k in self._images if k[0] == uid and k[1] not in revisions]:
                del self._images[key]

    async def _judge(
        self, app: Mapping[str, Any], watched: WatchedApplication, entries: list[HistoryEntry], index: int
    ) -> Rollback | None:
        if index < 1:  # the first entry has nothing before it to go back to
            return None
        lookups: Lookups | None = None
        repo_url: str | None = None
        for strategy in STRATEGIES:
            if not strategy.reads_git:
                found = strategy.judge(entries, index, Lookups())
            else:
                if lookups is None:  # the Secret is read only when a strategy needs git
                    repo_url = self._repo_url(app, watched)
                    lookups = await self._lookups(app, watched, repo_url)
                found = await self.workers.git(repo_url or "", strategy.judge, entries, index, lookups, bounded=False)
            if found is not None:
                return found
        return None

    async def _lookups(self, app: Mapping[str, Any], watched: WatchedApplication, repo_url: str | None) -> Lookups:
        credentials = await self.workers.api(self._credentials, watched)
        uid = str((app.get("metadata") or {}).get("uid"))
        is_ancestor = None
        if repo_url and self.reader is not None:
            reader, url = self.reader, repo_url

            def is_ancestor(older: str, newer: str) -> bool | None:
                try:
                    return reader.is_ancestor(url, older, newer, credentials)
                except ValuesUnavailable as exc:
                    self._warn_once(f"ancestry:{older}", f"detection: cannot compare revisions in git: {exc}")
                    return None

        return Lookups(
            is_ancestor=is_ancestor,
            images_of=lambda e: self._images_of(uid, e, watched, repo_url, credentials),
        )

    def _repo_url(self, app: Mapping[str, Any], watched: WatchedApplication) -> str | None:
        git = watched.valuesFrom.git
        if git is not None and git.repoURL:
            return git.repoURL
        try:
            return application_repo_url(app, watched.name)
        except ValuesUnavailable:
            return None  # ancestry is skipped; the git source says why when content needs it

    def _credentials(self, watched: WatchedApplication) -> GitCredentials | None:
        git = watched.valuesFrom.git
        if git is None or git.credentialsSecretRef is None:
            return None
        try:
            data = self.kube.read_secret_data(watched.verificationNamespace, git.credentialsSecretRef.name)
            return GitCredentials.from_secret_data(data)
        except (LookupError, ValueError) as exc:
            self._warn_once(f"secret:{git.credentialsSecretRef.name}", f"detection: {exc}")
            return None

    def _images_of(
        self,
        uid: str,
        entry: HistoryEntry,
        watched: WatchedApplication,
        repo_url: str | None,
        credentials: GitCredentials | None,
    ) -> Images | None:
        """The images an entry's values pin, per target; None when they cannot be resolved (cached)."""
        key = (uid, entry.revision)
        if key in self._images:
            return self._images[key]
        images: Images | None = None
        try:
            request = ValuesRequest(
                watched.valuesFrom,
                entry.revision,
                watched.name,
                entry=entry,
                repo_url=repo_url,
                credentials=credentials,
            )
            values = read_values(self.sources, request).values
            images = tuple(str(resolve_expected_image(t, values)) for t in _targets(watched))
        except (ValuesUnavailable, InvalidImageValues, InvalidImageReference) as exc:
            self._warn_once(f"values:{entry.revision}", f"detection: no images for revision {entry.revision}: {exc}")
        self._images[key] = images
        return images

    async def _create(self, watched: WatchedApplication, rollback: Rollback, app_namespace: str) -> None:
        manifest = verification_manifest(watched, rollback, app_namespace)
        name = manifest["metadata"]["name"]
        try:
            created = await self.workers.api(self.kube.create_verification, watched.verificationNamespace, manifest)
        except Exception as exc:  # e.g. RBAC or a missing namespace: say so, do not retry in a loop
            log.error(
                "detection: cannot create RollbackVerification %s/%s: %s", watched.verificationNamespace, name, exc
            )
            return
        if created is None:
            log.debug("detection: %s/%s exists already", watched.verificationNamespace, name)
            return
        self.metrics.detected.labels(watched.name, rollback.detected_by.value).inc()
        await self._prune(watched)
        log.info(
            "detection: %s rolled back from %s to %s (%s): created %s/%s",
            watched.name,
            rollback.previous.revision[:12],
            rollback.entry.revision[:12],
            rollback.detected_by.value,
            watched.verificationNamespace,
            name,
        )

    async def _prune(self, watched: WatchedApplication) -> None:
        """Keep the newest `historyLimit` detected verifications of the Application (api.md retention)."""
        ns = watched.verificationNamespace
        try:
            items = await self.workers.api(self.kube.list_verifications, ns, f"{APPLICATION_LABEL}={watched.name}")
            for name, uid in verifications_to_prune(items, watched.historyLimit):
                await self.workers.api(self.kube.delete_verification, ns, name, uid)
                log.info("detection: deleted %s/%s, beyond the history limit of %s", ns, name, watched.historyLimit)
        except Exception as exc:  # e.g. RBAC without delete: say so; the next rollback tries again
            log.warning("detection: cannot prune the verifications of %s in %s: %s", watched.name, ns, exc)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)


def _targets(watched: WatchedApplication) -> list[Target]:
    return [t.model_copy(update={"namespace": t.namespace or watched.verificationNamespace}) for t in watched.targets]
