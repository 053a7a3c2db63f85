"""Bad input is a one-line error and exit code 2, never a traceback; `--from-ref` on a real git repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollback_verifier.cli import main as cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "lint-chart"
CONSOLE_SCRIPT = Path(sys.executable).with_name("rollback-verifier")
PREFIX = "rollback-verifier lint-chart: error: "


@pytest.fixture(autouse=True)
def _real_helm(helm_bin: str) -> str:
    return helm_bin


def run_cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), "lint-chart", *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=cwd,
        check=False,
        timeout=120,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith(PREFIX), line
    for text in expected:
        assert text in line, line
    return line


def test_not_a_chart(tmp_path: Path) -> None:
    case = FIXTURES / "no-change"
    done = run_cli(tmp_path, "--from", case / "old")
    assert_one_line_error(done, f"{tmp_path} is not a helm chart (no Chart.yaml)")
    done = run_cli(case / "new", "--from", tmp_path / "missing")
    assert_one_line_error(done, f"chart {tmp_path / 'missing'} does not exist")


def test_missing_values_file(tmp_path: Path) -> None:
    case = FIXTURES / "no-change"
    done = run_cli(case / "new", "--from", case / "old", "-f", tmp_path / "nope.yaml")
    assert_one_line_error(done, f"values file {tmp_path / 'nope.yaml'} does not exist")


def test_invalid_values_file(tmp_path: Path) -> None:
    case = FIXTURES / "no-change"
    bad = tmp_path / "bad.yaml"
    bad.write_text("replicas: [1\n")
    done = run_cli(case / "new", "--from", case / "old", "-f", bad)
    assert_one_line_error(done, f"values file {bad} is not valid YAML")


def test_chart_that_does_not_render_shows_helms_error() -> None:
    case = FIXTURES / "broken"
    done = run_cli(case / "new", "--from", case / "old")
    line = assert_one_line_error(done, f"helm cannot render {case / 'new'}", "Error:")
    assert "nil pointer evaluating interface {}.endpoint" in line
    assert "templates/settings.yaml" in line


def test_old_side_that_does_not_render(capsys: pytest.CaptureFixture[str]) -> None:
    case = FIXTURES / "broken"
    code = cli.main(["lint-chart", str(case / "old"), "--from", str(case / "new")])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(PREFIX + f"helm cannot render {case / 'new'}")


def test_bad_usage_is_exit_2() -> None:
    case = FIXTURES / "no-change"
    for args in (
        [case / "new"],  # neither --from nor --from-ref
        [case / "new", "--from", case / "old", "--from-ref", "HEAD"],
        [case / "new", "--from", case / "old", "--fail-on", "critical"],
        [case / "new", "--from", case / "old", "--output", "xml"],
    ):
        done = run_cli(*args)
        assert done.returncode == 2, args
        assert "Traceback" not in done.stderr
        assert "error:" in done.stderr


def test_helm_missing_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RV_BIN_DIR", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    case = FIXTURES / "no-change"
    code = cli.main(["lint-chart", str(case / "new"), "--from", str(case / "old")])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(PREFIX + "'helm' was not found")


# --- --from-ref ---------------------------------------------------------------------------------


@pytest.fixture
def git_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, git_bin: str) -> str:
    """An identity and no user/system config: works the same on a fresh machine."""
    for key, value in {
        "GIT_AUTHOR_NAME": "Lint Test",
        "GIT_AUTHOR_EMAIL": "lint@example.com",
        "GIT_COMMITTER_NAME": "Lint Test",
        "GIT_COMMITTER_EMAIL": "lint@example.com",
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
    }.items():
        monkeypatch.setenv(key, value)
    return git_bin


def git(git_bin: str, repo: Path, *args: str) -> str:
    done = subprocess.run([git_bin, "-C", str(repo), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def make_repo(git_bin: str, root: Path, case: str) -> Path:
    """A repo whose deploy/chart is the case's old chart at tag `v1`, and its new chart in the work tree."""
    repo = root / "repo"
    chart = repo / "deploy" / "chart"
    shutil.copytree(FIXTURES / case / "old", chart)
    git(git_bin, repo.parent, "init", "-q", str(repo))
    git(git_bin, repo, "add", "-A")
    git(git_bin, repo, "commit", "-q", "-m", "chart v1")
    git(git_bin, repo, "tag", "v1")
    shutil.rmtree(chart)
    shutil.copytree(FIXTURES / case / "new", chart)
    return repo


def test_from_ref_compares_the_committed_chart_with_the_work_tree(git_env: str, tmp_path: Path) -> None:
    repo = make_repo(git_env, tmp_path, "selector-changed")
    done = run_cli(repo / "deploy" / "chart", "--from-ref", "v1", "-o", "json")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert [f["rule"] for f in document["findings"]] == ["selector-changed"]
    assert document["old"] == {"chart": str(repo / "deploy" / "chart"), "ref": "v1"}


def test_from_ref_with_a_relative_path_and_a_commit_id(git_env: str, tmp_path: Path) -> None:
    repo = make_repo(git_env, tmp_path, "crd-field-removed")
    commit = git(git_env, repo, "rev-parse", "HEAD")
    git(git_env, repo, "add", "-A")
    git(git_env, repo, "commit", "-q", "-m", "chart v2")
    done = run_cli("deploy/chart", "--from-ref", commit, "-o", "json", cwd=repo)
    assert done.returncode == 1, done.stderr
    assert [f["rule"] for f in json.loads(done.stdout)["findings"]] == ["crd-field-removed"]
    # and against itself (HEAD is the new chart): nothing changed
    same = run_cli("deploy/chart", "--from-ref", "HEAD", cwd=repo)
    assert same.returncode == 0, same.stderr
    assert same.stdout.splitlines()[-1] == "0 findings; none at or above high: OK (exit 0)"


def test_old_chart_at_a_ref_that_does_not_render(git_env: str, tmp_path: Path) -> None:
    repo = make_repo(git_env, tmp_path, "broken")  # the work tree now holds the broken chart
    git(git_env, repo, "add", "-A")
    git(git_env, repo, "commit", "-q", "-m", "broken chart")
    shutil.rmtree(repo / "deploy" / "chart")
    shutil.copytree(FIXTURES / "broken" / "old", repo / "deploy" / "chart")
    done = run_cli("deploy/chart", "--from-ref", "HEAD", cwd=repo)
    line = assert_one_line_error(done, "helm cannot render deploy/chart at HEAD: Error:")
    assert "lint-chart-ref-" not in line


def test_unknown_git_ref(git_env: str, tmp_path: Path) -> None:
    repo = make_repo(git_env, tmp_path, "no-change")
    done = run_cli(repo / "deploy" / "chart", "--from-ref", "no-such-tag")
    assert_one_line_error(done, "git ref 'no-such-tag' does not exist in", str(repo))
    done = run_cli(repo / "deploy" / "chart", "--from-ref", "--output=json")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_chart_missing_at_the_ref(git_env: str, tmp_path: Path) -> None:
    repo = make_repo(git_env, tmp_path, "no-change")
    other = repo / "charts" / "other"
    shutil.copytree(FIXTURES / "no-change" / "new", other)
    done = run_cli(other, "--from-ref", "v1")
    assert_one_line_error(done, "charts/other does not exist at git ref 'v1'")


def test_from_ref_outside_a_git_repository(git_env: str, tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(FIXTURES / "no-change" / "new", chart)
    done = run_cli(chart, "--from-ref", "HEAD")
    assert_one_line_error(done, f"{chart} is not inside a git repository")
