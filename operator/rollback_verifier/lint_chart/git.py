"""A chart folder as it was at a git ref, extracted with real git (`git archive`) into a temp folder."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from rollback_verifier.lint_chart.model import InputError

GIT_TIMEOUT_SECONDS = 120


def _git(git: str, repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            [git, "-C", str(repo), *args], capture_output=True, timeout=GIT_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise InputError(f"git {args[0]} did not finish in {GIT_TIMEOUT_SECONDS}s") from None
    except OSError as exc:
        raise InputError(f"cannot run git ({git}): {exc}") from None


def _first_line(raw: bytes) -> str:
    lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[0] if lines else "(no output)"


def locate(git: str, chart: Path) -> tuple[Path, PurePosixPath]:
    """The repository holding `chart` and the chart's path inside it."""
    if not chart.exists():
        raise InputError(f"chart {chart} does not exist")
    folder = chart if chart.is_dir() else chart.parent
    done = _git(git, folder, "rev-parse", "--show-toplevel")
    if done.returncode != 0:
        raise InputError(f"{chart} is not inside a git repository: {_first_line(done.stderr)}")
    top = Path(done.stdout.decode().strip()).resolve()
    try:
        inside = chart.resolve().relative_to(top)
    except ValueError:
        raise InputError(f"{chart} is outside its git repository {top}") from None
    return top, PurePosixPath(inside.as_posix())


def resolve_ref(git: str, repo: Path, ref: str) -> str:
    """The commit `ref` names, or an InputError."""
    done = _git(git, repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if done.returncode != 0 or not done.stdout.strip():
        raise InputError(f"git ref {ref!r} does not exist in {repo}")
    return done.stdout.decode().strip()


@contextmanager
def chart_at_ref(git: str, chart: Path, ref: str) -> Iterator[Path]:
    """The folder `chart` as committed at `ref`, in a temporary folder that lives as long as the context."""
    repo, inside = locate(git, chart)
    commit = resolve_ref(git, repo, ref)
    target = f"{commit}:{inside}" if str(inside) != "." else f"{commit}:"
    if _git(git, repo, "cat-file", "-e", target).returncode != 0:
        raise InputError(f"{inside} does not exist at git ref {ref!r}")
    pathspec = [] if str(inside) == "." else ["--", str(inside)]
    done = _git(git, repo, "archive", "--format=tar", commit, *pathspec)
    if done.returncode != 0:
        raise InputError(f"git archive of {inside} at {ref!r} failed: {_first_line(done.stderr)}")
    with tempfile.TemporaryDirectory(prefix="lint-chart-ref-") as tmp:
        try:
            with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
                archive.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise InputError(f"cannot extract {inside} at {ref!r}: {exc}") from None
        yield Path(tmp) / inside
