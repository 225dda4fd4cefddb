"""What produced a run: package versions and the git commit of the code, recorded in
results.json so that a report can say which code and libraries made each row."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions change results: the framework, the models, the metrics, us.
PACKAGES = ("torch", "pytorch-lightning", "timm", "torchmetrics", "grad-cam", "covid-tl")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None where it is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(folder: Path, *args: str) -> str | None:
    try:
        # --no-optional-locks: `status` would otherwise refresh the index under .git/index.lock,
        # failing a user's own git command that runs meanwhile.
        done = subprocess.run(["git", "--no-optional-locks", "-C", str(folder), *args], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git on the machine, or it hangs
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(folder: Path | None = None) -> dict[str, Any] | None:
    """{"commit", "dirty"} of the checkout this package is tracked in; None when it is not.

    The package file must be tracked, so an installed copy inside some other repository (a
    virtual environment in a project folder) is not credited with that repository's commit.
    """
    folder = folder or Path(__file__).resolve().parent
    if _git(folder, "ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    commit = _git(folder, "rev-parse", "HEAD")
    if not commit:
        return None
    changes = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(changes) if changes is not None else None}


def provenance() -> dict[str, Any]:
    """results.json's record of the code: {"versions": {...}, "git": {...} or None}."""
    return {"versions": package_versions(), "git": git_commit()}
