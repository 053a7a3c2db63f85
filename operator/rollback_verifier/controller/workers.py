"""Where blocking calls run: API calls and git reads in thread pools of their own, never a shared one.

A remote that accepts connections and never answers holds a git thread until the reader's deadline.
Were status writes in the same pool (asyncio's default one), every verification of every namespace
would wait behind it. So:
- API calls (status writes, the fresh reads before a verdict, Secrets) have their own pool;
- git reads have another, entered at most `per_repository` at a time for one repository (the others
  wait in the event loop, holding no thread), and each read, its wait for a thread included, ends
  within `budget_seconds`: a queue of hanging remotes delays another read by that much at most.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

T = TypeVar("T")

API_THREADS = 16
GIT_THREADS = 16  # threads wait on git subprocesses: cheap, and more hanging remotes fit before others queue
GIT_READS_PER_REPOSITORY = 2


class Pools(Protocol):
    """Where blocking calls run: what Workers offers (the unit tests pass one that calls inline)."""

    async def api(self, fn: Callable[..., T], *args: object) -> T: ...
    async def git(self, repository: str, fn: Callable[..., T], *args: object, bounded: bool = True) -> T: ...


class GitBusy(Exception):
    """A git read did not finish (its wait for a thread included) within its budget."""


class Workers:
    def __init__(
        self,
        *,
        budget_seconds: float,
        api_threads: int = API_THREADS,
        git_threads: int = GIT_THREADS,
        per_repository: int = GIT_READS_PER_REPOSITORY,
    ) -> None:
        self.budget_seconds = budget_seconds
        self.per_repository = per_repository
        self._api = ThreadPoolExecutor(api_threads, thread_name_prefix="rv-api")
        self._git = ThreadPoolExecutor(git_threads, thread_name_prefix="rv-git")
        # repository -> (gate, number of readers holding or waiting for it); dropped at zero.
        self._gates: dict[str, tuple[asyncio.Semaphore, int]] = {}

    async def api(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._api, functools.partial(fn, *args))

    async def git(self, repository: str, fn: Callable[..., T], *args: object, bounded: bool = True) -> T:
        """Run a git read for `repository`; GitBusy when it took longer than the budget (`bounded`; a
        caller that makes many reads in one call, each bounded by the reader's deadline, opts out)."""
        gate, users = self._gates.get(repository) or (asyncio.Semaphore(self.per_repository), 0)
        self._gates[repository] = (gate, users + 1)
        loop = asyncio.get_running_loop()

        async def gated() -> T:
            async with gate:
                return await loop.run_in_executor(self._git, functools.partial(fn, *args))

        try:
            return await asyncio.wait_for(gated(), timeout=self.budget_seconds if bounded else None)
        except TimeoutError:
            # A read still running goes on in its thread until the reader's own deadline kills git;
            # one still queued is cancelled before it starts.
            raise GitBusy(
                f"no answer within {self.budget_seconds:g}s from {repository or 'the repository'}"
                " (is the remote reachable?)"
            ) from None
        finally:
            gate, users = self._gates[repository]
            if users <= 1:
                del self._gates[repository]
            else:
                self._gates[repository] = (gate, users - 1)

    def shutdown(self) -> None:
        self._api.shutdown(wait=False, cancel_futures=True)
        self._git.shutdown(wait=False, cancel_futures=True)
