"""What ``pip install sagaloom`` puts into site-packages: one package, and the ``saga`` command."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests._helpers import ROOT

pytestmark = pytest.mark.slow  # builds a wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "sagaloom"
    skip = shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".sagaloom", "__pycache__"
    )
    shutil.copytree(ROOT, source, ignore=skip)  # no stale build/ from an earlier build
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("sagaloom-*.whl")
    return built


def test_the_wheel_installs_sagaloom_and_nothing_else_at_top_level(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"sagaloom", next(t for t in top if t.endswith(".dist-info"))}
    for package in (
        "sagaloom/client/__init__.py",
        "sagaloom/worker/__init__.py",
        "sagaloom/_runtime/_workflow.py",
    ):
        assert package in names
    assert "sagaloom/py.typed" in names
    # The reference application stays in the repository.
    assert not [n for n in names if n.startswith(("workflows/", "workers/", "services/", "bench/"))]


def test_the_wheel_declares_the_saga_command(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    [entry_points] = [n for n in archive.namelist() if n.endswith("entry_points.txt")]
    assert "saga = sagaloom._cli:main" in archive.read(entry_points).decode()


def test_the_release_builds_a_wheel_and_an_sdist_that_twine_check_passes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """CONTRIBUTING.md's release step: ``python -m build`` then ``twine check dist/*``; both
    files carry the version written in ``sagaloom/_wire/_release.py``, and the README renders."""
    import sagaloom

    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("release") / "sagaloom"
    skip = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", ".sagaloom", "__pycache__"
    )
    shutil.copytree(ROOT, source, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    built = sorted(p.name for p in out.iterdir())
    version = sagaloom.__version__
    assert built == [f"sagaloom-{version}-py3-none-any.whl", f"sagaloom-{version}.tar.gz"]
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(out.iterdir()))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout
