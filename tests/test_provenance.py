"""results.json names the code that made a run: the commit when the package is tracked in a git
checkout (None otherwise, never an error) and the versions of the libraries that shape results."""
import os
import shutil
import subprocess

import pytest
import torch

from covid_tl.core.provenance import git_commit, package_versions

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="no git executable on this machine")


def git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout.strip()


@needs_git
def test_commit_of_a_tracked_package_dirty_when_edited_and_none_for_an_untracked_copy(tmp_path):
    package = tmp_path / "repo" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    git(tmp_path / "repo", "init", "-q")
    git(tmp_path / "repo", "add", "pkg/__init__.py")
    git(tmp_path / "repo", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    assert git_commit(package) == {"commit": git(package, "rev-parse", "HEAD"), "dirty": False}
    (package / "__init__.py").write_text("x = 2\n")
    assert git_commit(package)["dirty"] is True
    installed = tmp_path / "repo" / "venv" / "pkg"  # an installed copy inside the checkout, not tracked
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("x = 1\n")
    assert git_commit(installed) is None


@needs_git
def test_recording_the_commit_leaves_the_index_alone(tmp_path):
    """A plain `git status` refreshes a stale index under .git/index.lock (a user's own git
    command then fails); recording the commit must not write to .git at all."""
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "pkg/__init__.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    os.utime(repo / "pkg" / "__init__.py", (1, 1))  # same content, new stat: the index is stale
    index = (repo / ".git" / "index").read_bytes()
    assert git_commit(repo / "pkg")["dirty"] is False
    assert (repo / ".git" / "index").read_bytes() == index
    git(repo, "status", "--porcelain")  # the check above can fail: a plain status rewrites it
    assert (repo / ".git" / "index").read_bytes() != index


def test_no_checkout_gives_none_not_an_error(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    assert git_commit(tmp_path) is None


def test_versions_of_installed_and_missing_packages():
    versions = package_versions(("torch", "no-such-distribution-covid-tl"))
    assert torch.__version__.startswith(versions["torch"]) and versions["no-such-distribution-covid-tl"] is None
    assert versions["python"].count(".") == 2
